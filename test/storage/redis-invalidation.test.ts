/**
 * Cross-instance invalidation over a real redis-server: a change made by another instance (or by
 * any Redis client) evicts the index from this client's cache without a store read per request;
 * a lost subscription flushes the cache.
 */
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KmsEnvelopeClient } from '../../src/client.js';
import { EnvelopeNotFoundError, InvalidArgumentError } from '../../src/errors.js';
import { StorageConfig } from '../../src/storage/config.js';
import { indexOfEnvelopeKey, redisInvalidationFeed } from '../../src/storage/redis-invalidation.js';
import { type RedisServerHandle, startRedisServer } from '../../src/testing/redis-server.js';
import { deliversAgain, evictions } from '../helpers/invalidation.js';
import { hasRedis } from '../helpers/services.js';

it('envelope keys map back to their index under exactly one prefix', () => {
  expect(indexOfEnvelopeKey('kms:', 'kms:{orders}:kmsblob')).toBe('orders');
  expect(indexOfEnvelopeKey('kms:', 'kms:{orders}:records:dek')).toBeUndefined();
  expect(indexOfEnvelopeKey('kms:', 'kmsx:{orders}:kmsblob')).toBeUndefined();
  // Prefix `tn` and `tna` never share a key (the layout is injective), so neither feed hears the other.
  expect(indexOfEnvelopeKey('tn', 'tna{b}:kmsblob')).toBeUndefined();
  expect(indexOfEnvelopeKey('tna', 'tn{ab}:kmsblob')).toBeUndefined();
  expect(indexOfEnvelopeKey('kms:', 'kms:{../x}:kmsblob')).toBeUndefined();
  expect(() => redisInvalidationFeed({ url: 'http://x' })).toThrow(InvalidArgumentError);
  expect(() => redisInvalidationFeed({ url: 'redis://x', keyPrefix: 'a{' })).toThrow(InvalidArgumentError);
});

const available = hasRedis();

describe.skipIf(!available)('invalidation feed against a real redis-server', () => {
  let server: RedisServerHandle;
  let raw: Redis;
  beforeAll(async () => {
    server = await startRedisServer();
    raw = new Redis(server.url);
  });
  afterAll(async () => {
    raw?.disconnect();
    await server?.stop();
  });

  const master = () => `literal:${randomBytes(32).toString('base64url')}`;

  /**
   * Two instances over one Redis store: a writer, which first creates `indexes`, and a reader
   * whose cache listens (started after, so the creations' own invalidations are not in flight).
   */
  async function fleet(keyPrefix: string, indexes: string[]) {
    const slots = { dev: { provider: 'local', masterKey: master(), keyId: 'k' } };
    const kms = { slots, secrets: { allowLiteral: true } };
    const writer = new KmsEnvelopeClient({ store: StorageConfig.redis({ url: server.url, keyPrefix }), kms });
    const keks = [];
    for (const index of indexes) keks.push(await writer.createIndex(index, { slot: 'dev' }));
    const reader = new KmsEnvelopeClient({
      store: StorageConfig.redis({ url: server.url, keyPrefix }),
      kms,
      cache: { ttlMs: 600_000 },
      invalidation: redisInvalidationFeed({ url: server.url, keyPrefix }),
    });
    await reader.invalidationReady();
    return { writer, reader, keks };
  }

  it('a delete made through another instance is never served from the cache afterwards', async () => {
    const { writer, reader, keks } = await fleet('inv-a:', ['orders']);
    const kek = keks[0]!;
    expect((await reader.unwrap('orders')).equals(kek)).toBe(true);
    const hits = reader.stats().cacheHits;
    (await reader.unwrap('orders')).zero();
    expect(reader.stats().cacheHits).toBe(hits + 1); // cached: no store read
    await evictions(reader, 1, () => writer.delete('orders'));
    await expect(reader.unwrap('orders')).rejects.toThrow(EnvelopeNotFoundError);
    kek.zero();
    await writer.close();
    await reader.close();
  });

  it('a rotation by another instance, or a write by any Redis client, evicts the index', async () => {
    const { writer, reader } = await fleet('inv-b:', ['orders', 'billing']);
    (await reader.unwrap('orders')).zero();
    (await reader.unwrap('billing')).zero();
    await evictions(reader, 1, () => writer.rotate('orders'));
    const hits = reader.stats().cacheHits;
    (await reader.unwrap('billing')).zero(); // untouched: still cached
    expect(reader.stats().cacheHits).toBe(hits + 1);
    expect((await reader.getEnvelope('orders')).version).toBe(2);
    (await reader.unwrap('orders')).zero();
    // Any client: redis-cli, an operator, a store writer. The server reports the change itself.
    await evictions(reader, 1, () => raw.del('inv-b:{billing}:kmsblob'));
    await expect(reader.unwrap('billing')).rejects.toThrow(EnvelopeNotFoundError);
    await writer.close();
    await reader.close();
  });

  it('a killed subscriber connection flushes the cache, and the feed re-arms', async () => {
    const { writer, reader } = await fleet('inv-c:', ['orders', 'billing']);
    (await reader.unwrap('orders')).zero();
    (await reader.unwrap('billing')).zero();
    // A dropped subscription could miss changes: everything cached goes.
    await evictions(reader, 2, () => raw.call('CLIENT', 'KILL', 'TYPE', 'pubsub'));
    // Back: changes are delivered again once the feed re-armed (ioredis reconnects by itself).
    expect(await deliversAgain(reader, writer, 'orders', 5000)).toBe(true);
    await writer.close();
    await reader.close();
  });

  it('a feed that cannot connect is reported, and the client still works on its TTL', async () => {
    const reader = new KmsEnvelopeClient({
      store: StorageConfig.memory(),
      kms: { slots: { dev: { provider: 'local', masterKey: master() } }, secrets: { allowLiteral: true } },
      invalidation: redisInvalidationFeed({ url: 'redis://127.0.0.1:1' }),
    });
    await expect(reader.invalidationReady()).rejects.toBeDefined();
    (await reader.createIndex('orders', { slot: 'dev' })).zero();
    (await reader.unwrap('orders')).zero();
    await reader.close();
  });
});
