import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EnvelopeNotFoundError, StoreUnavailableError } from '../../src/errors.js';
import { parseIndexName } from '../../src/names.js';
import { RedisStore } from '../../src/storage/redis.js';
import { type RedisServerHandle, startRedisServer } from '../../src/testing/redis-server.js';
import { sampleBlob } from '../helpers/blobs.js';
import { hasRedis } from '../helpers/services.js';
import { runStoreConformance } from './conformance.js';

const available = hasRedis();

describe.skipIf(!available)('Redis store against a real redis-server', () => {
  let server: RedisServerHandle;
  let prefixCounter = 0;
  beforeAll(async () => {
    server = await startRedisServer();
  });
  afterAll(async () => {
    await server?.stop();
  });

  runStoreConformance('redis', async () => {
    const keyPrefix = `t${prefixCounter++}:`;
    const store = new RedisStore({ url: server.url, keyPrefix });
    const raw = new Redis(server.url);
    return {
      store,
      another: async () => new RedisStore({ url: server.url, keyPrefix }),
      corrupt: async (index) => {
        await raw.hset(`${keyPrefix}${index}:kmsblob`, 'blob', Buffer.from('junk that is not an envelope'));
      },
      cleanup: async () => {
        await store.close();
        raw.disconnect();
      },
    };
  });

  const idx = parseIndexName('orders');

  it('accepts a caller-supplied client and leaves it open on close()', async () => {
    const client = new Redis(server.url);
    const store = new RedisStore({ client, keyPrefix: 'supplied:' });
    const blob = sampleBlob(idx);
    await store.create(idx, blob);
    expect(await store.get(idx)).toEqual(blob);
    await store.close();
    expect(await client.ping()).toBe('PONG');
    client.disconnect();
  });

  it('is binary-safe: NUL, 0xff and CRLF bytes round-trip', async () => {
    const store = new RedisStore({ url: server.url, keyPrefix: 'binary:' });
    const wrappedKek = new Uint8Array([0, 0xff, 13, 10, 0, 0x80, 0xfe, 36, 13, 10]);
    const blob = sampleBlob(idx, { wrappedKek, encryptionContext: { k$ü: 'v$\u00ff 日本' } });
    await store.push(idx, blob);
    expect(await store.get(idx)).toEqual(blob);
    await store.close();
  });

  it('a value of the wrong type or an inconsistent version field is MalformedEnvelopeError', async () => {
    const raw = new Redis(server.url);
    const store = new RedisStore({ url: server.url, keyPrefix: 'wrongtype:' });
    await raw.set('wrongtype:orders:kmsblob', 'a string, not a hash');
    await expect(store.get(idx)).rejects.toMatchObject({ code: 'KMS_ENVELOPE_MALFORMED' });
    await raw.del('wrongtype:orders:kmsblob');
    await store.create(idx, sampleBlob(idx));
    await raw.hset('wrongtype:orders:kmsblob', 'version', '7');
    await expect(store.get(idx)).rejects.toThrow(/version field/);
    await store.close();
    raw.disconnect();
  });

  it('a stopped server gives a retryable StoreUnavailableError, and the store recovers after restart', async () => {
    const store = new RedisStore({ url: server.url, keyPrefix: 'outage:', commandTimeoutMs: 1000 });
    await store.create(idx, sampleBlob(idx));
    await server.stop();
    const started = Date.now();
    const err = await store.get(idx).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StoreUnavailableError);
    expect((err as StoreUnavailableError).retryable).toBe(true);
    expect((err as Error).message).toMatch(/index "orders"/);
    await expect(store.push(idx, sampleBlob(idx, { version: 2 }))).rejects.toThrow(StoreUnavailableError);
    expect(Date.now() - started).toBeLessThan(10_000);

    await server.restart();
    // ioredis reconnects by itself; the data is gone (persistence is off).
    let recovered: unknown;
    for (let i = 0; i < 50; i++) {
      recovered = await store.get(idx).catch((e: unknown) => e);
      if (recovered instanceof EnvelopeNotFoundError) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(recovered).toBeInstanceOf(EnvelopeNotFoundError);
    const blob = sampleBlob(idx);
    await store.create(idx, blob);
    expect(await store.get(idx)).toEqual(blob);
    await store.close();
  });
});
