import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { KmsEnvelopeClient } from '../../src/client.js';
import {
  DeadlineExceededError,
  InvalidArgumentError,
  ProviderUnavailableError,
  UnwrapFailedError,
} from '../../src/errors.js';
import type { Kek } from '../../src/keys/kek.js';
import { StorageConfig } from '../../src/storage/config.js';
import { faultClient } from './fault-provider.js';

const setup = faultClient;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('withKek: borrowing the cached KEK', () => {
  it('hands the shared cached KEK to fn (no copy, no provider call on a hit) and resolves to its result', async () => {
    const { client, controls } = setup();
    const kek = await client.createIndex('idx', { slot: 'a' });
    const seen: Kek[] = [];
    const first = await client.withKek('idx', (k) => {
      seen.push(k);
      return k.equals(kek);
    });
    const second = await client.withKek('idx', async (k) => {
      seen.push(k);
      await sleep(1);
      return 'async result';
    });
    expect(first).toBe(true);
    expect(second).toBe('async result');
    expect(seen[0]).toBe(seen[1]); // the same object: borrowed, not copied
    expect(seen[0]!.isZeroed).toBe(false); // still cached
    expect(controls.unwrapCalls).toBe(1);
    expect(client.stats()).toMatchObject({ cacheHits: 1, cacheMisses: 1 });
  });

  it('an invalidation while fn runs defers the zeroing until fn settles, then zeroes', async () => {
    const { client } = setup();
    const kek = await client.createIndex('idx', { slot: 'a' });
    let borrowed: Kek | undefined;
    await client.withKek('idx', async (k) => {
      borrowed = k;
      client.invalidate('idx');
      client.clearCache();
      await sleep(5);
      // Evicted meanwhile, but never zeroed or changed under the holder.
      expect(k.isZeroed).toBe(false);
      expect(k.equals(kek)).toBe(true);
    });
    expect(borrowed!.isZeroed).toBe(true);
  });

  it('an expiry while fn runs defers the zeroing too', async () => {
    const { client } = setup({ cache: { ttlMs: 30 } });
    const kek = await client.createIndex('idx', { slot: 'a' });
    let borrowed: Kek | undefined;
    await client.withKek('idx', async (k) => {
      borrowed = k;
      await sleep(120); // well past the TTL and the purge timer
      expect(k.isZeroed).toBe(false);
      expect(k.equals(kek)).toBe(true);
    });
    expect(borrowed!.isZeroed).toBe(true);
    expect(client.stats().cacheEvictions).toBe(1);
  });

  it('an entry nobody borrows is zeroed as soon as it is evicted', async () => {
    const { client } = setup();
    await client.createIndex('idx', { slot: 'a' });
    const borrowed = await client.withKek('idx', (k) => k);
    expect(borrowed.isZeroed).toBe(false); // still in the cache
    client.invalidate('idx');
    expect(borrowed.isZeroed).toBe(true);
  });

  it('releases the lease when fn throws or rejects, and passes the error on', async () => {
    const { client } = setup();
    await client.createIndex('idx', { slot: 'a' });
    let borrowed: Kek | undefined;
    await expect(
      client.withKek('idx', (k) => {
        borrowed = k;
        throw new Error('sync failure');
      }),
    ).rejects.toThrow('sync failure');
    await expect(
      client.withKek('idx', async () => {
        throw new Error('async failure');
      }),
    ).rejects.toThrow('async failure');
    client.invalidate('idx');
    expect(borrowed!.isZeroed).toBe(true); // no lease left dangling
  });

  it('1,000 concurrent cold withKek calls make one provider call; every fn sees the intact KEK', async () => {
    const { client, controls } = setup();
    const kek = await client.createIndex('idx', { slot: 'a' });
    controls.delayMs = 10;
    const results = await Promise.all(
      Array.from({ length: 1000 }, (_, i) =>
        client.withKek('idx', async (k) => {
          if (i === 0) client.invalidate('idx'); // evicted while the others still hold it
          await sleep(1);
          return !k.isZeroed && k.equals(kek);
        }),
      ),
    );
    expect(controls.unwrapCalls).toBe(1);
    expect(results.every(Boolean)).toBe(true);
    expect(client.stats()).toMatchObject({ unwraps: 1000, cacheMisses: 1000, coalesced: 999 });
  });

  it('errors reach every waiter and are not cached', async () => {
    const { client, controls } = setup();
    const kek = await client.createIndex('idx', { slot: 'a' });
    controls.fail = 'all';
    controls.delayMs = 5;
    const failed = await Promise.allSettled(
      Array.from({ length: 10 }, () => client.withKek('idx', (k) => k.length)),
    );
    expect(failed.every((r) => r.status === 'rejected' && r.reason instanceof ProviderUnavailableError)).toBe(
      true,
    );
    expect(controls.unwrapCalls).toBe(1);
    controls.fail = 'none';
    expect(await client.withKek('idx', (k) => k.equals(kek))).toBe(true);
    expect(controls.unwrapCalls).toBe(2);
  });

  it('with the cache off, fn gets a KEK of its own that is zeroed afterwards', async () => {
    const { client, controls } = setup({ cache: false });
    const kek = await client.createIndex('idx', { slot: 'a' });
    const own = await client.withKek('idx', (k) => {
      expect(k.equals(kek)).toBe(true);
      return k;
    });
    expect(own.isZeroed).toBe(true);
    await client.withKek('idx', (k) => k.length);
    expect(controls.unwrapCalls).toBe(2);
  });

  it('unwrap still returns a copy the caller owns: zeroing it leaves the cached KEK intact', async () => {
    const { client } = setup();
    const kek = await client.createIndex('idx', { slot: 'a' });
    const copy = await client.unwrap('idx');
    copy.zero();
    expect(await client.withKek('idx', (k) => k.equals(kek))).toBe(true);
  });
});

describe('lease: a handle on the cached KEK', () => {
  it('keeps the KEK intact until released; release is idempotent; kek throws after release', async () => {
    const { client, controls } = setup();
    const kek = await client.createIndex('idx', { slot: 'a' });
    const a = await client.lease('idx');
    const b = await client.lease('idx');
    expect(a.kek).toBe(b.kek);
    expect(controls.unwrapCalls).toBe(1);
    const shared = a.kek;
    client.clearCache();
    a.release();
    expect(shared.isZeroed).toBe(false); // b still holds it
    expect(b.kek.equals(kek)).toBe(true);
    b.release();
    b.release();
    expect(shared.isZeroed).toBe(true);
    expect(b.released).toBe(true);
    expect(() => b.kek).toThrow(InvalidArgumentError);
  });

  it('a lease taken while cached is not zeroed by releasing another holder early', async () => {
    const { client } = setup();
    await client.createIndex('idx', { slot: 'a' });
    const lease = await client.lease('idx');
    const other = await client.lease('idx');
    other.release();
    other.release(); // a double release must not count against the first lease
    client.invalidate('idx');
    expect(lease.kek.isZeroed).toBe(false);
    lease.release();
  });

  it('releases through Symbol.dispose', async () => {
    const { client } = setup();
    await client.createIndex('idx', { slot: 'a' });
    const lease = await client.lease('idx');
    const dispose = (Symbol as unknown as { dispose: symbol }).dispose;
    (lease as unknown as Record<symbol, () => void>)[dispose]!();
    expect(lease.released).toBe(true);
  });

  it('with the cache off the lease owns its KEK and zeroes it on release', async () => {
    const { client } = setup({ cache: false });
    await client.createIndex('idx', { slot: 'a' });
    const lease = await client.lease('idx');
    const own = lease.kek;
    lease.release();
    expect(own.isZeroed).toBe(true);
  });
});

describe('synchronous provider unwrap (local)', () => {
  const literal = () => `literal:${randomBytes(32).toString('base64url')}`;

  it('the client unwraps through unwrapSync, counts the KMS call, and honours an aborted signal', async () => {
    const client = new KmsEnvelopeClient({
      store: StorageConfig.memory(),
      cache: false,
      kms: { slots: { dev: { provider: 'local', masterKey: literal() } }, secrets: { allowLiteral: true } },
    });
    const kek = await client.createIndex('idx', { slot: 'dev' });
    expect((await client.unwrap('idx')).equals(kek)).toBe(true);
    expect(client.stats().slots.dev?.kmsCalls).toBe(2); // the wrap and the unwrap
    const aborted = new AbortController();
    aborted.abort();
    await expect(client.unwrap('idx', { signal: aborted.signal })).rejects.toThrow(DeadlineExceededError);
  });

  it('a tampered wrapped KEK fails with UnwrapFailedError, recorded under its code', async () => {
    const store = StorageConfig.memory();
    const client = new KmsEnvelopeClient({
      store,
      cache: false,
      kms: { slots: { dev: { provider: 'local', masterKey: literal() } }, secrets: { allowLiteral: true } },
    });
    await client.createIndex('idx', { slot: 'dev' });
    const blob = await store.get('idx' as never);
    const wrappedKek = new Uint8Array(blob.wrappedKek);
    wrappedKek[20]! ^= 1;
    await store.push('idx' as never, { ...blob, wrappedKek });
    await expect(client.unwrap('idx')).rejects.toThrow(UnwrapFailedError);
    expect(client.stats().slots.dev?.kmsErrors).toMatchObject({ KMS_ENVELOPE_UNWRAP_FAILED: 1 });
  });
});
