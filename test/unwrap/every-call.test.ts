/**
 * `readEnvelope: 'every-call'`: freshness, the byte comparison and the shared read. The decoder
 * is counted (a module mock of storage/bind.js that calls the real one).
 */
import { describe, expect, it, vi } from 'vitest';
import { KmsEnvelopeClient } from '../../src/client.js';
import { EnvelopeNotFoundError, MalformedEnvelopeError, UnwrapFailedError } from '../../src/errors.js';
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

describe("readEnvelope: 'every-call' freshness", () => {
  it('reads the envelope every call, reuses the KEK while it is unchanged, reloads when another process rotates', async () => {
    const { client, controls, store, kms } = setup();
    const kek = await client.createIndex('idx', { slot: 'a' });
    let reads = 0;
    let decodedReads = 0;
    const getEncoded = store.getEncoded.bind(store);
    store.getEncoded = (index) => {
      reads++;
      return getEncoded(index);
    };
    const get = store.get.bind(store);
    store.get = (index) => {
      decodedReads++;
      return get(index);
    };
    for (let i = 0; i < 3; i++) expect(await client.withKek('idx', (k) => k.equals(kek))).toBe(true);
    expect(reads).toBe(3);
    expect(decodedReads).toBe(0);
    expect(controls.unwrapCalls).toBe(1);
    // Another process rotates (a TTL-only cache would not see it for 60 s).
    const other = new KmsEnvelopeClient({ store, kms, cache: false });
    await other.rotate('idx', { toSlot: 'b' });
    const before = controls.unwrapCalls;
    expect((await client.unwrap('idx')).equals(kek)).toBe(true);
    expect(controls.unwrapCalls).toBe(before + 1);
    expect(await client.withKek('idx', (k) => k.equals(kek))).toBe(true);
    expect(controls.unwrapCalls).toBe(before + 1);
  });

  it('the same envelope rewritten in other bytes is still a hit (no KMS call); corrupt bytes are refused, never served from the cache', async () => {
    const { client, controls, store } = setup();
    const kek = await client.createIndex('idx', { slot: 'a' });
    expect(await client.withKek('idx', (k) => k.equals(kek))).toBe(true);
    const blob = await store.get('idx' as never);
    // Another writer pushes the very envelope again with a new timestamp: new bytes, same KEK.
    await store.push('idx' as never, { ...blob, updatedAt: blob.updatedAt + 10 });
    for (let i = 0; i < 2; i++) expect((await client.unwrap('idx')).equals(kek)).toBe(true);
    expect(controls.unwrapCalls).toBe(1);
    expect(client.stats()).toMatchObject({ cacheHits: 2, cacheMisses: 1 });
    // Bytes that are no envelope at all: the store's MalformedEnvelopeError, not the cached KEK.
    store.putRawForTesting(idx, await corrupted(store));
    await expect(client.withKek('idx', (k) => k.length)).rejects.toThrow(MalformedEnvelopeError);
    // Put back, it is a hit again.
    await store.push('idx' as never, blob);
    expect(await client.withKek('idx', (k) => k.equals(kek))).toBe(true);
    expect(controls.unwrapCalls).toBe(1);
  });

  it('a burst of unwraps in one tick shares one store read; a call made after that read was sent reads again and sees a rotation', async () => {
    const { client, controls, store, kms } = setup();
    const kek = await client.createIndex('idx', { slot: 'a' });
    await client.withKek('idx', (k) => k.length);
    let reads = 0;
    let hold: Promise<void> | undefined;
    const getEncoded = store.getEncoded.bind(store);
    store.getEncoded = async (index) => {
      reads++;
      const bytes = await getEncoded(index); // read now...
      await hold; // ...answer later
      return bytes;
    };
    const burst = await Promise.all(Array.from({ length: 64 }, () => client.unwrap('idx')));
    expect(reads).toBe(1);
    expect(burst.every((k) => k.equals(kek))).toBe(true);
    expect(controls.unwrapCalls).toBe(1);

    // A call whose read is already on its way when another process rotates...
    let answer!: () => void;
    hold = new Promise((r) => {
      answer = r;
    });
    const before = client.unwrap('idx');
    await new Promise((r) => setImmediate(r)); // its read has been sent (and done)
    await new KmsEnvelopeClient({ store, kms, cache: false }).rotate('idx', { toSlot: 'b' });
    const rotated = controls.unwrapCalls; // the rotation's own unwrap counted too
    // ...and a call made after the rotation: it must not share the earlier read.
    const after = client.unwrap('idx');
    answer();
    expect((await before).equals(kek)).toBe(true);
    expect((await after).equals(kek)).toBe(true);
    expect(reads).toBe(3);
    // The earlier call was served the old envelope's cached KEK; the later one unwrapped the new.
    expect(controls.unwrapCalls).toBe(rotated + 1);
    const { unwrapCalls } = controls;
    await client.withKek('idx', (k) => k.length);
    expect(controls.unwrapCalls).toBe(unwrapCalls);
  });

  it('a store without getEncoded (a plugin) is read with get, with the same results', async () => {
    const { store, kms } = setup();
    const plain: EnvelopeStore = {
      kind: 'plugin',
      description: 'a store without getEncoded',
      create: (index, blob) => store.create(index, blob),
      push: (index, blob, options) => store.push(index, blob, options),
      get: (index) => store.get(index),
      delete: (index) => store.delete(index),
      close: () => store.close(),
    };
    expect(plain.getEncoded).toBeUndefined();
    const client = new KmsEnvelopeClient({ store: plain, kms, cache: { readEnvelope: 'every-call' } });
    const kek = await client.createIndex('idx', { slot: 'a' });
    for (let i = 0; i < 3; i++) expect(await client.withKek('idx', (k) => k.equals(kek))).toBe(true);
    expect(client.stats()).toMatchObject({ cacheHits: 2, cacheMisses: 1 });
    await new KmsEnvelopeClient({ store, kms, cache: false }).rotate('idx', { toSlot: 'b' });
    expect((await client.unwrap('idx')).equals(kek)).toBe(true);
    expect(client.stats()).toMatchObject({ cacheHits: 2, cacheMisses: 2 });
  });

  it('a stored envelope whose context was changed fails to unwrap instead of serving the cached KEK', async () => {
    const { client, store } = setup();
    await client.createIndex('idx', { slot: 'a' });
    await client.withKek('idx', (k) => k.length);
    const blob = await store.get('idx' as never);
    await store.push('idx' as never, { ...blob, encryptionContext: { tenant: 'mallory' } });
    await expect(client.withKek('idx', (k) => k.length)).rejects.toThrow(UnwrapFailedError);
  });

  it('an evicted entry stays intact for a holder while a changed envelope is reloaded', async () => {
    const { client, store, kms } = setup();
    const kek = await client.createIndex('idx', { slot: 'a' });
    const lease = await client.lease('idx');
    await new KmsEnvelopeClient({ store, kms, cache: false }).rotate('idx', { toSlot: 'b' });
    expect(await client.withKek('idx', (k) => k !== lease.kek && k.equals(kek))).toBe(true);
    expect(lease.kek.isZeroed).toBe(false);
    lease.release();
  });
});
