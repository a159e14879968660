import { describe, expect, it } from 'vitest';
import { generateRecipientKeyPair } from '../../providers/recipient.js';
import { KmsEnvelopeClient } from '../../src/client.js';
import { wrapBindingOf } from '../../src/envelope/wraps.js';
import {
  AllWrapsFailedError,
  InvalidArgumentError,
  KekMismatchError,
  KeyNotFoundError,
  RollbackError,
  SlotNotAllowedError,
} from '../../src/errors.js';
import { Kek } from '../../src/keys/kek.js';
import { parseIndexName, parseSlotName } from '../../src/names.js';
import { caught, faultSlots } from './helpers.js';

const IDX = parseIndexName('orders');

/** Slots a, b (fault-wrapped local) and `recovery` (recipient), over one memory store. */
async function setup(kind: 'x25519' | 'x25519-mlkem768' = 'x25519') {
  const pair = await generateRecipientKeyPair(kind);
  const { controls, providers, slots } = faultSlots(['a', 'b', 'c']);
  const { StorageConfig } = await import('../../src/storage/config.js');
  const store = StorageConfig.memory();
  const kms = {
    slots: { ...slots, recovery: { provider: 'recipient', options: { publicKey: pair.publicKey } } },
    providers,
  };
  const client = new KmsEnvelopeClient({ store, kms, cache: false, kmsCalls: { retries: 0 } });
  return { client, controls, store, kms, pair };
}

describe('break-glass recovery through a recipient slot', () => {
  it('a recipient wrap needs no allowPublicKeyWrap, is never tried on the request path, and recovers after every cloud slot is gone', async () => {
    const { client, controls, pair } = await setup('x25519-mlkem768');
    const kek = await client.createIndex('orders', { slots: ['a', 'b', 'recovery'] });
    const v1 = await client.getEnvelope('orders');
    expect(v1.wraps?.[1]).toMatchObject({
      kmsName: 'recovery',
      provider: 'recipient',
      keyId: pair.fingerprint,
    });
    controls.a!.fail = 'all';
    controls.b!.fail = 'all';
    const err = (await caught(client.unwrap('orders'))) as AllWrapsFailedError;
    expect(err.failures.map((f) => [f.slot, f.error.constructor])).toEqual([
      ['a', expect.anything()],
      ['b', expect.anything()],
      ['recovery', SlotNotAllowedError],
    ]);
    // Recovery re-wraps under a working slot (c) and keeps the break-glass slot.
    const next = await client.recover('orders', {
      privateKey: pair.privateKey,
      toSlots: ['c', 'recovery'],
      expectedKekCheck: v1.kekCheck!,
    });
    expect(next.version).toBe(2);
    expect([next.kmsName, ...next.wraps!.map((w) => w.kmsName)]).toEqual(['c', 'recovery']);
    expect(next.creationId).toEqual(v1.creationId);
    const got = await client.unwrap('orders');
    expect(got.equals(kek)).toBe(true);
    await client.close();
  });

  it('refuses a KEK check other than the one recorded, a wrong private key, and a forged recipient wrap', async () => {
    const { client, store, pair } = await setup();
    (await client.createIndex('orders', { slots: ['a', 'recovery'] })).zero();
    const v1 = await client.getEnvelope('orders');
    const other = await generateRecipientKeyPair('x25519');
    expect(
      await caught(
        client.recover('orders', {
          privateKey: pair.privateKey,
          expectedKekCheck: new Uint8Array(v1.kekCheck!.length),
        }),
      ),
    ).toBeInstanceOf(KekMismatchError);
    // A key of another recipient: the wrap names its own recipient's fingerprint.
    expect(await caught(client.recover('orders', { privateKey: other.privateKey }))).toBeInstanceOf(
      KeyNotFoundError,
    );
    // A store writer wraps a KEK of their own to the public key: the envelope's KEK check refuses it.
    const recipient = await client.kms.provider('recovery');
    const forged = await recipient.wrap(
      Kek.generate(),
      wrapBindingOf(IDX, parseSlotName('recovery'), v1, 2, 2),
    );
    await store.delete(IDX);
    await store.create(IDX, {
      ...v1,
      wraps: [{ ...v1.wraps![0]!, wrappedKek: new Uint8Array(forged.wrappedKek) }],
    });
    expect(await caught(client.recover('orders', { privateKey: pair.privateKey }))).toBeInstanceOf(
      KekMismatchError,
    );
    expect(client.stats().tampered).toBe(1);
    // Nothing changed in the store.
    expect((await client.getEnvelope('orders')).version).toBe(1);
    await client.close();
  });

  it('recover follows the rollback rules and needs a recipient wrap', async () => {
    const { client, pair } = await setup();
    (await client.createIndex('plain', { slots: ['a', 'b'] })).zero();
    expect(await caught(client.recover('plain', { privateKey: pair.privateKey }))).toBeInstanceOf(
      InvalidArgumentError,
    );
    (await client.createIndex('orders', { slots: ['a', 'recovery'] })).zero();
    const v1 = await client.getEnvelope('orders');
    await client.rotate('orders');
    await client.store.delete(IDX);
    await client.store.create(IDX, v1); // the old envelope replayed
    expect(await caught(client.recover('orders', { privateKey: pair.privateKey }))).toBeInstanceOf(
      RollbackError,
    );
    await client.close();
  });

  it('a threshold share held by the recipient joins online shares in recovery', async () => {
    const { client, controls, pair } = await setup();
    const kek = await client.createIndex('orders', { slots: ['a', 'b', 'recovery'], threshold: 2 });
    controls.a!.fail = 'all';
    // Online, only b works: 1 of 2 shares.
    expect(await caught(client.unwrap('orders'))).toBeInstanceOf(AllWrapsFailedError);
    const next = await client.recover('orders', {
      privateKey: pair.privateKey,
      toSlots: ['b', 'c', 'recovery'],
    });
    expect(next.threshold).toBe(2);
    expect((await client.unwrap('orders')).equals(kek)).toBe(true);
    await client.close();
  });

  it('a recipient slot cannot be the primary, nor the only online-less majority of a threshold', async () => {
    const { client } = await setup();
    expect(await caught(client.createIndex('x', { slot: 'recovery' }))).toBeInstanceOf(InvalidArgumentError);
    expect(await caught(client.createIndex('x', { slots: ['recovery', 'a'] }))).toBeInstanceOf(
      InvalidArgumentError,
    );
    expect(await caught(client.createIndex('x', { slots: ['a', 'recovery'], threshold: 2 }))).toBeInstanceOf(
      InvalidArgumentError,
    );
    await client.close();
  });
});
