import { expect, it } from 'vitest';
import { createNoneProvider } from '../../providers/none.js';
import { InvalidArgumentError } from '../../src/errors.js';
import { Kek } from '../../src/keys/kek.js';
import { parseIndexName, parseSlotName } from '../../src/names.js';
import { runProviderConformance } from './conformance.js';

runProviderConformance(
  'none',
  async () => ({
    kms: { slots: { a: { provider: 'none' }, b: { provider: 'none' } } },
    wrongKeyKms: { slots: { a: { provider: 'none' }, b: { provider: 'none' } } },
    suppliesKek: true,
  }),
  { suppliesKek: true },
);

const ctx = { index: parseIndexName('i'), slot: parseSlotName('s'), encryptionContext: {} };

it('none stores no key bytes and needs the KEK on unwrap', async () => {
  const provider = createNoneProvider();
  const kek = Kek.generate();
  const wrapped = await provider.wrap(kek, ctx);
  expect(wrapped.wrappedKek).toHaveLength(0);
  await expect(provider.unwrap(wrapped, ctx)).rejects.toThrow(/pass the KEK/);
  await expect(
    provider.unwrap({ ...wrapped, wrappedKek: new Uint8Array([1]) }, { ...ctx, suppliedKek: kek }),
  ).rejects.toThrow(InvalidArgumentError);
  const back = await provider.unwrap(wrapped, { ...ctx, suppliedKek: kek });
  expect(back.equals(kek)).toBe(true);
  expect(back).not.toBe(kek);
});
