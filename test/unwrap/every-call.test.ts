/**
 * `readEnvelope: 'every-call'`: what the byte comparison and the shared read must guarantee. The
 * decoder is counted here (a module mock of storage/bind.js), so this file stands apart from
 * lease.test.ts.
 */
import { describe, expect, it, vi } from 'vitest';
import { KmsEnvelopeClient } from '../../src/client.js';
import { EnvelopeNotFoundError, MalformedEnvelopeError } from '../../src/errors.js';
import type { Kek } from '../../src/keys/kek.js';
import type { IndexName } from '../../src/names.js';
import { decodeStored } from '../../src/storage/bind.js';
import type { EnvelopeStore } from '../../src/storage/store.js';
import { faultClient } from './fault-provider.js';

vi.mock('../../src/storage/bind.js', async (importOriginal) => {
  const real = await importOriginal<typeof import('../../src/storage/bind.js')>();
  return { ...real, decodeStored: vi.fn(real.decodeStored) };
});

const decodes = vi.mocked(decodeStored);
const idx = 'idx' as IndexName;
const setup = () => faultClient({ cache: { readEnvelope: 'every-call' } });

/** The stored bytes of `idx` with one byte flipped near the end: no longer an envelope. */
async function corrupted(store: ReturnType<typeof setup>['store']): Promise<Buffer> {
  const bytes = Buffer.from(await store.getEncoded(idx));
  bytes[bytes.length - 3]! ^= 0xff;
  return bytes;
}

describe("readEnvelope: 'every-call' reads", () => {
  it('a hit compares bytes and decodes nothing; changed bytes are decoded once per call', async () => {
    const { client, controls, store } = setup();
    const kek = await client.createIndex('idx', { slot: 'a' });
    expect(await client.withKek('idx', (k) => k.equals(kek))).toBe(true); // the load decodes
    decodes.mockClear();
    for (let i = 0; i < 5; i++) (await client.unwrap('idx')).zero();
    expect(await client.withKek('idx', (k) => k.equals(kek))).toBe(true);
    expect(decodes).not.toHaveBeenCalled();
    // The same envelope rewritten (new timestamp): decoded once, then its bytes are the ones compared.
    const blob = await store.get(idx);
    await store.push(idx, { ...blob, updatedAt: blob.updatedAt + 1 });
    decodes.mockClear();
    for (let i = 0; i < 3; i++) (await client.unwrap('idx')).zero();
    expect(decodes).toHaveBeenCalledTimes(1);
    expect(controls.unwrapCalls).toBe(1);
  });

  it('the shared read is sent after every call that shares it started: a change made between two calls in one tick is seen by the later one', async () => {
    const { client, store } = setup();
    await client.createIndex('idx', { slot: 'a' });
    (await client.unwrap('idx')).zero();
    const junk = await corrupted(store);
    const first = client.unwrap('idx');
    store.putRawForTesting(idx, junk); // after the first call started, before the second
    const second = client.unwrap('idx');
    await expect(second).rejects.toThrow(MalformedEnvelopeError);
    // The first may see it too (its read happened after it started): either way, never stale junk.
    await first.then(
      (k) => k.zero(),
      (err: unknown) => expect(err).toBeInstanceOf(MalformedEnvelopeError),
    );
  });

  it('an index deleted by another process fails with EnvelopeNotFoundError at once, never a cached KEK', async () => {
    const { client, store, kms } = setup();
    await client.createIndex('idx', { slot: 'a' });
    (await client.unwrap('idx')).zero();
    await new KmsEnvelopeClient({ store, kms, cache: false }).delete('idx');
    await expect(client.unwrap('idx')).rejects.toThrow(EnvelopeNotFoundError);
    await expect(client.withKek('idx', (k) => k.length)).rejects.toThrow(EnvelopeNotFoundError);
    await expect(client.lease('idx')).rejects.toThrow(EnvelopeNotFoundError);
  });

  it('a corrupt envelope takes no lease on the cached KEK: clearing the cache still zeroes it', async () => {
    const { client, store } = setup();
    await client.createIndex('idx', { slot: 'a' });
    let cached: Kek | undefined;
    await client.withKek('idx', (k) => {
      cached = k;
    });
    store.putRawForTesting(idx, await corrupted(store));
    await expect(client.unwrap('idx')).rejects.toThrow(MalformedEnvelopeError);
    await expect(client.withKek('idx', (k) => k.length)).rejects.toThrow(MalformedEnvelopeError);
    expect(cached!.isZeroed).toBe(false);
    client.clearCache();
    expect(cached!.isZeroed).toBe(true);
  });

  it('a withKek fn that throws on a hit releases its lease', async () => {
    const { client } = setup();
    await client.createIndex('idx', { slot: 'a' });
    let cached: Kek | undefined;
    await expect(
      client.withKek('idx', (k) => {
        cached = k;
        throw new Error('the caller failed');
      }),
    ).rejects.toThrow('the caller failed');
    await expect(
      client.withKek('idx', () => {
        throw new Error('and again, on a hit');
      }),
    ).rejects.toThrow('and again, on a hit');
    client.clearCache();
    expect(cached!.isZeroed).toBe(true);
  });

  it('a plugin store (no getEncoded) whose get throws instead of rejecting still gives a rejected promise', async () => {
    const { kms } = setup();
    const broken: EnvelopeStore = {
      kind: 'plugin',
      description: 'throws synchronously',
      create: async () => {},
      push: async () => {},
      get: () => {
        throw new EnvelopeNotFoundError('no envelope stored', { index: idx });
      },
      delete: async () => {},
      close: async () => {},
    };
    const client = new KmsEnvelopeClient({ store: broken, kms, cache: { readEnvelope: 'every-call' } });
    let pending: Promise<unknown> | undefined;
    expect(() => {
      pending = client.unwrap('idx');
    }).not.toThrow();
    await expect(pending).rejects.toThrow(EnvelopeNotFoundError);
    await expect(client.withKek('idx', (k) => k.length)).rejects.toThrow(EnvelopeNotFoundError);
  });
});
