import { randomBytes } from 'node:crypto';
import { expect, it } from 'vitest';
import { createLocalProvider, LOCAL_WRAPPED_LENGTH, localKeyFingerprint } from '../../providers/local.js';
import { ConfigError, UnwrapFailedError } from '../../src/errors.js';
import { Kek } from '../../src/keys/kek.js';
import { parseIndexName, parseSlotName } from '../../src/names.js';
import { KmsRegistry } from '../../src/providers/registry.js';
import { runProviderConformance } from './conformance.js';

const literal = (key: Buffer) => `literal:${key.toString('base64url')}`;

runProviderConformance('local', async () => {
  const key = randomBytes(32);
  const other = randomBytes(32);
  return {
    kms: {
      slots: {
        a: { provider: 'local', masterKey: literal(key) },
        b: { provider: 'local', masterKey: literal(key) },
      },
    },
    wrongKeyKms: {
      slots: {
        a: { provider: 'local', masterKey: literal(other) },
        b: { provider: 'local', masterKey: literal(other) },
      },
    },
  };
});

const ctx = { index: parseIndexName('i'), slot: parseSlotName('s'), encryptionContext: {} };

it('local wraps into nonce ‖ ciphertext ‖ tag and records the key id', async () => {
  const master = randomBytes(32);
  const provider = createLocalProvider({ masterKey: master });
  const wrapped = await provider.wrap(Kek.generate(), ctx);
  expect(wrapped.wrappedKek).toHaveLength(LOCAL_WRAPPED_LENGTH);
  expect(wrapped.keyId).toBe(localKeyFingerprint(master));
  expect(wrapped.keyId).not.toContain(master.toString('hex').slice(0, 16));
  const named = createLocalProvider({ masterKey: master, keyId: 'dev-key-1' });
  expect((await named.wrap(Kek.generate(), ctx)).keyId).toBe('dev-key-1');
  // An envelope recorded under another key id is refused by id before any decryption.
  await expect(named.unwrap(wrapped, ctx)).rejects.toThrow(/wrapped under master key/);
  // Truncated wrapped bytes fail cleanly.
  await expect(
    provider.unwrap({ ...wrapped, wrappedKek: wrapped.wrappedKek.subarray(0, 20) }, ctx),
  ).rejects.toThrow(UnwrapFailedError);
});

it('a local slot resolves its master key once and rejects keys of the wrong size', async () => {
  const env: NodeJS.ProcessEnv = { DEV_KEY: randomBytes(32).toString('base64') };
  const registry = new KmsRegistry({
    slots: { dev: { provider: 'local', masterKey: 'env:DEV_KEY' } },
    secrets: { env },
  });
  await registry.provider('dev');
  expect(env.DEV_KEY).toBeUndefined();
  const bad = new KmsRegistry({ slots: { dev: { provider: 'local', masterKey: literal(randomBytes(16)) } } });
  await expect(bad.provider('dev')).rejects.toThrow(ConfigError);
  expect(() => createLocalProvider({ masterKey: randomBytes(31) })).toThrow(ConfigError);
});
