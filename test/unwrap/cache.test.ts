import diagnosticsChannel from 'node:diagnostics_channel';
import { describe, expect, it } from 'vitest';
import { KmsEnvelopeClient } from '../../src/client.js';
import { EnvelopeNotFoundError, ProviderUnavailableError } from '../../src/errors.js';
import type { Kek } from '../../src/keys/kek.js';
import { Channels } from '../../src/unwrap/telemetry.js';
import { faultClient } from './fault-provider.js';

const setup = faultClient;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('KEK cache', () => {
  it('1,000 concurrent cold unwraps make exactly one provider call and resolve to equal keys', async () => {
    const { client, controls } = setup();
    const kek = await client.createIndex('idx', { slot: 'a' });
    controls.delayMs = 20;
    const keks = await Promise.all(Array.from({ length: 1000 }, () => client.unwrap('idx')));
    expect(controls.unwrapCalls).toBe(1);
    expect(keks.every((k) => k.equals(kek))).toBe(true);
    // Every caller missed; 999 of them joined the one load in flight.
    expect(client.stats()).toMatchObject({ cacheMisses: 1000, coalesced: 999, unwraps: 1000 });
  });

  it('hits need no provider call and hand out copies the caller may zero', async () => {
    const { client, controls } = setup();
    const kek = await client.createIndex('idx', { slot: 'a' });
    const first = await client.unwrap('idx');
    first.zero();
    const second = await client.unwrap('idx');
    expect(second.equals(kek)).toBe(true);
    expect(controls.unwrapCalls).toBe(1);
    expect(client.stats()).toMatchObject({ cacheHits: 1, cacheMisses: 1 });
  });

  it('expires after the TTL and then sees an envelope another process changed', async () => {
    const { client, controls, store, kms } = setup({ cache: { ttlMs: 1000 } });
    await client.createIndex('idx', { slot: 'a' });
    await client.unwrap('idx');
    const other = new KmsEnvelopeClient({ store, kms, cache: false });
    await other.rotate('idx', { toSlot: 'b' });
    await client.unwrap('idx');
    expect(controls.unwrapCalls).toBe(2); // 1 + the other client's rotation; ours was a hit
    await sleep(1100);
    await client.unwrap('idx');
    expect(controls.unwrapCalls).toBe(3);
  });

  it('drops a KEK after maxUses, and the least recently used beyond maxEntries — zeroing both', async () => {
    const evicted: unknown[] = [];
    const listener = (event: unknown) => evicted.push(event);
    diagnosticsChannel.subscribe(Channels.cache, listener);
    const { client, controls } = setup({ cache: { maxUses: 3, maxEntries: 2 } });
    for (const i of ['i1', 'i2', 'i3']) await client.createIndex(i, { slot: 'a' });
    const usedUp = await client.withKek('i1', (k) => k); // the cached KEK itself (1st use)
    for (let n = 0; n < 3; n++) await client.unwrap('i1');
    expect(controls.unwrapCalls).toBe(2); // the 4th use reloaded
    expect(usedUp.isZeroed).toBe(true); // dropped after maxUses: zeroed
    const lru = await client.withKek('i1', (k) => k);
    await client.unwrap('i2');
    await client.unwrap('i3'); // evicts i1 (least recently used)
    expect(lru.isZeroed).toBe(true); // evicted: zeroed
    await client.unwrap('i1');
    expect(controls.unwrapCalls).toBe(5);
    diagnosticsChannel.unsubscribe(Channels.cache, listener);
    expect(evicted).toEqual(
      expect.arrayContaining([
        { index: 'i1', reason: 'uses' },
        { index: 'i1', reason: 'evict' },
      ]),
    );
    expect(client.stats().cacheEvictions).toBeGreaterThanOrEqual(2);
  });

  it('rotate and delete through the client invalidate at once; invalidate() and clearCache() too', async () => {
    const { client, controls } = setup();
    const kek = await client.createIndex('idx', { slot: 'a' });
    await client.unwrap('idx');
    await client.rotate('idx', { toSlot: 'b' }); // unwraps once itself
    expect((await client.unwrap('idx')).equals(kek)).toBe(true);
    expect(controls.unwrapCalls).toBe(3);
    client.invalidate('idx');
    await client.unwrap('idx');
    client.clearCache();
    await client.unwrap('idx');
    expect(controls.unwrapCalls).toBe(5);
    await client.delete('idx');
    await expect(client.unwrap('idx')).rejects.toThrow(EnvelopeNotFoundError);
  });

  it('errors are not cached', async () => {
    const { client, controls } = setup();
    const kek = await client.createIndex('idx', { slot: 'a' });
    controls.fail = 'all';
    await expect(client.unwrap('idx')).rejects.toThrow(ProviderUnavailableError);
    controls.fail = 'none';
    expect((await client.unwrap('idx')).equals(kek)).toBe(true);
    expect(client.stats().errors).toMatchObject({ KMS_ENVELOPE_UNAVAILABLE: 1 });
  });

  it('tenants have separate partitions', async () => {
    const { client, controls } = setup();
    await client.createIndex('idx', { slot: 'a' });
    await client.unwrap('idx', { tenant: 't1' });
    await client.unwrap('idx', { tenant: 't2' });
    await client.unwrap('idx', { tenant: 't1' });
    expect(controls.unwrapCalls).toBe(2);
    client.invalidate('idx'); // every tenant's entry
    await client.unwrap('idx', { tenant: 't2' });
    expect(controls.unwrapCalls).toBe(3);
  });

  it('refresh-ahead reloads in the background before expiry; the hit returns at once', async () => {
    const { client, controls } = setup({ cache: { ttlMs: 300, refreshAheadMs: 250 } });
    await client.createIndex('idx', { slot: 'a' });
    const before = await client.withKek('idx', (k) => k);
    await sleep(80); // 220 ms left < 250
    controls.delayMs = 50;
    // A hit: served from the cache while the reload runs in the background.
    const hit = client.unwrap('idx');
    expect(client.stats()).toMatchObject({ cacheHits: 1, cacheMisses: 1 });
    (await hit).zero();
    await sleep(150);
    expect(controls.unwrapCalls).toBe(2);
    expect(before.isZeroed).toBe(true); // the entry the reload replaced is zeroed
  });

  it('the unwrap events carry no key bytes', async () => {
    const events: unknown[] = [];
    const listener = (e: unknown) => events.push(e);
    diagnosticsChannel.subscribe(Channels.unwrap, listener);
    diagnosticsChannel.subscribe(Channels.kms, listener);
    const { client } = setup();
    const kek: Kek = await client.createIndex('idx', { slot: 'a' });
    await client.unwrap('idx');
    diagnosticsChannel.unsubscribe(Channels.unwrap, listener);
    diagnosticsChannel.unsubscribe(Channels.kms, listener);
    expect(events.length).toBeGreaterThanOrEqual(2);
    const shown = JSON.stringify(events);
    for (const enc of ['hex', 'base64', 'base64url', 'latin1'] as const)
      expect(shown).not.toContain(kek.expose().toString(enc));
    expect(events).toContainEqual(
      expect.objectContaining({ index: 'idx', slot: 'a', provider: 'fault', cache: 'miss', outcome: 'ok' }),
    );
  });

  it('cache hits are published on the unwrap channel while someone subscribes, through every hit path', async () => {
    const { client } = setup();
    (await client.createIndex('idx', { slot: 'a' })).zero();
    (await client.unwrap('idx')).zero(); // the miss that fills the cache
    const events: Array<Record<string, unknown>> = [];
    const listener = (e: unknown) => events.push(e as Record<string, unknown>);
    diagnosticsChannel.subscribe(Channels.unwrap, listener);
    try {
      (await client.unwrap('idx')).zero();
      await client.withKek('idx', () => undefined);
      (await client.lease('idx')).release();
    } finally {
      diagnosticsChannel.unsubscribe(Channels.unwrap, listener);
    }
    expect(events).toEqual(
      Array.from({ length: 3 }, () => ({
        index: 'idx',
        slot: 'a',
        provider: 'fault',
        cache: 'hit',
        durationMs: 0,
        outcome: 'ok',
      })),
    );
    // Nobody subscribed: a hit publishes nothing (and the stats still count it).
    (await client.unwrap('idx')).zero();
    expect(events).toHaveLength(3);
    expect(client.stats().cacheHits).toBe(4);
  });

  it('an expired KEK is zeroed on time, even if its index is never asked for again', async () => {
    const reasons: unknown[] = [];
    const listener = (event: unknown) => reasons.push(event);
    diagnosticsChannel.subscribe(Channels.cache, listener);
    const { client } = setup({ cache: { ttlMs: 50 } });
    await client.createIndex('idx', { slot: 'a' });
    const cached = await client.withKek('idx', (k) => k);
    expect(cached.isZeroed).toBe(false);
    await sleep(150);
    expect(cached.isZeroed).toBe(true);
    diagnosticsChannel.unsubscribe(Channels.cache, listener);
    expect(reasons).toContainEqual({ index: 'idx', reason: 'expire' });
    expect(client.stats().cacheEvictions).toBe(1);
  });
});

describe('loads in flight when the cache is invalidated', () => {
  it('a delete while the KEK is being unwrapped: the waiter gets it, the cache does not keep it', async () => {
    const { client, controls } = setup();
    (await client.createIndex('idx', { slot: 'a' })).zero();
    controls.delayMs = 50;
    const inFlight = client.unwrap('idx');
    await sleep(10);
    await client.delete('idx'); // invalidates the index while the unwrap is still running
    (await inFlight).zero();
    controls.delayMs = 0;
    // Not served from the cache: the envelope is gone.
    await expect(client.unwrap('idx')).rejects.toThrow(EnvelopeNotFoundError);
    await client.close();
  });

  it('clearCache while loading: a borrowed KEK stays intact for its holder, then is zeroed, never cached', async () => {
    const { client, controls } = setup();
    (await client.createIndex('idx', { slot: 'a' })).zero();
    controls.delayMs = 50;
    let borrowed: Kek | undefined;
    const using = client.withKek('idx', async (kek) => {
      borrowed = kek;
      await sleep(20);
      return kek.isZeroed;
    });
    await sleep(10);
    client.clearCache();
    expect(await using).toBe(false); // intact while held
    expect(borrowed?.isZeroed).toBe(true); // zeroed after: it is in no cache
    const calls = controls.unwrapCalls;
    controls.delayMs = 0;
    (await client.unwrap('idx')).zero();
    expect(controls.unwrapCalls).toBe(calls + 1); // a new load, not a stale entry
    await client.close();
  });
});
