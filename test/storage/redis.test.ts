import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeKmsBlob } from '../../src/envelope/codec.js';
import {
  EnvelopeNotFoundError,
  InvalidArgumentError,
  MalformedEnvelopeError,
  StoreUnavailableError,
} from '../../src/errors.js';
import { parseIndexName } from '../../src/names.js';
import { RedisStore } from '../../src/storage/redis.js';
import { type RedisServerHandle, startRedisServer } from '../../src/testing/redis-server.js';
import { sampleBlob } from '../helpers/blobs.js';
import { hasRedis } from '../helpers/services.js';
import { runStoreConformance } from './conformance.js';

const available = hasRedis();

it('the redis-server harness names how to install a missing binary', async () => {
  await expect(startRedisServer({ binary: '/nonexistent/redis-server' })).rejects.toThrow(
    /apt-get install redis-server/,
  );
});

it('a supplied client that answers with plain thenables (not native promises) works, errors mapped', async () => {
  const blob = sampleBlob('orders');
  const bytes = Buffer.from(encodeKmsBlob(blob));
  const thenable = <T>(settle: (resolve: (v: T) => void, reject: (e: unknown) => void) => void) => ({
    // biome-ignore lint/suspicious/noThenProperty: a deliberate thenable, as a RedisLike may return
    then: (resolve: (v: T) => void, reject: (e: unknown) => void) => settle(resolve, reject),
  });
  let fail = false;
  const client = {
    callBuffer: () =>
      thenable<Buffer | null>((resolve, reject) =>
        fail ? reject(new Error('connection lost')) : resolve(bytes),
      ),
  };
  const store = new RedisStore({
    client: client as unknown as ConstructorParameters<typeof RedisStore>[0]['client'],
  });
  const name = parseIndexName('orders');
  expect(await store.get(name)).toEqual(blob);
  fail = true;
  await expect(store.get(name)).rejects.toThrow(StoreUnavailableError);
});

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
        await raw.set(`${keyPrefix}{${index}}:kmsblob`, Buffer.from('junk that is not an envelope'));
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

  it('a value that is not an envelope is MalformedEnvelopeError, also for compare-and-set', async () => {
    const raw = new Redis(server.url);
    const store = new RedisStore({ url: server.url, keyPrefix: 'wrongtype:' });
    await raw.hset('wrongtype:{orders}:kmsblob', 'a', 'hash, not a string');
    await expect(store.get(idx)).rejects.toMatchObject({ code: 'KMS_ENVELOPE_MALFORMED' });
    await expect(store.push(idx, sampleBlob(idx), { expectedVersion: 1 })).rejects.toMatchObject({
      code: 'KMS_ENVELOPE_MALFORMED',
    });
    for (const junk of [
      '',
      'short',
      'x'.repeat(40),
      Buffer.from([255, 255, 255, 255, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9]),
    ]) {
      await raw.set('wrongtype:{orders}:kmsblob', junk);
      await expect(store.push(idx, sampleBlob(idx), { expectedVersion: 1 })).rejects.toThrow(
        /not an envelope|version conflict/,
      );
    }
    await store.close();
    raw.disconnect();
  });

  it('the stored value is exactly the envelope bytes (readable with a plain GET)', async () => {
    const raw = new Redis(server.url);
    const store = new RedisStore({ url: server.url, keyPrefix: 'plain:' });
    const blob = sampleBlob(idx, { version: 7 });
    await store.create(idx, blob);
    const { decodeKmsBlob } = await import('../../src/envelope/codec.js');
    expect(decodeKmsBlob((await raw.getBuffer('plain:{orders}:kmsblob'))!)).toEqual(blob);
    await store.push(idx, sampleBlob(idx, { version: 8 }), { expectedVersion: 7 });
    expect((await store.get(idx)).version).toBe(8);
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

  it('the key layout: <prefix>{<index>}:kmsblob and <prefix>{<index>}:records:<kind>, one Cluster slot per index', async () => {
    const raw = new Redis(server.url);
    const store = new RedisStore({ url: server.url, keyPrefix: 'layout:' });
    await store.create(idx, sampleBlob(idx));
    await store.putRecord(idx, 'dek', 'd1', new Uint8Array([1]));
    await store.putRecord(idx, 'meta', 'm1', new Uint8Array([2]));
    expect((await raw.keys('layout:*')).sort()).toEqual([
      'layout:{orders}:kmsblob',
      'layout:{orders}:records:dek',
      'layout:{orders}:records:meta',
    ]);
    expect(store.key(idx)).toBe('layout:{orders}:kmsblob');
    // Redis Cluster hashes the text between the first '{' and the first '}' after it.
    const hashTag = (key: string) => {
      const open = key.indexOf('{');
      const close = key.indexOf('}', open + 1);
      return open >= 0 && close > open + 1 ? key.slice(open + 1, close) : key;
    };
    for (const key of await raw.keys('layout:*')) expect(hashTag(key)).toBe('orders');
    await store.close();
    raw.disconnect();
  });

  it('stores whose prefixes differ never share a key: prefix "tn" + index "ab" vs prefix "tna" + index "b"', async () => {
    const tn = new RedisStore({ url: server.url, keyPrefix: 'tn' });
    const tna = new RedisStore({ url: server.url, keyPrefix: 'tna' });
    const ab = parseIndexName('ab');
    const b = parseIndexName('b');
    const blobAb = sampleBlob(ab);
    const blobB = sampleBlob(b);
    await tn.create(ab, blobAb);
    await tna.create(b, blobB); // under the old layout both were the key "tnab:kmsblob": EnvelopeExistsError
    expect(tn.key(ab)).not.toBe(tna.key(b));
    expect(tn.recordsKey(ab, 'dek')).not.toBe(tna.recordsKey(b, 'dek'));
    // One store's compare-and-set push and delete leave the other's envelope alone.
    await tna.push(b, sampleBlob(b, { version: 2 }), { expectedVersion: 1 });
    expect(await tn.get(ab)).toEqual(blobAb);
    await tna.delete(b);
    expect(await tn.get(ab)).toEqual(blobAb);
    await tn.putRecord(ab, 'dek', 'k', new Uint8Array([7]));
    expect(await tna.getRecord(b, 'dek', 'k')).toBeUndefined();
    await Promise.all([tn.close(), tna.close()]);
  });

  it('a keyPrefix with { or } is refused (InvalidArgumentError): the layout would not be injective', () => {
    for (const keyPrefix of ['{', '}', 'a{b', 'x}:', '{tenant}:'])
      expect(() => new RedisStore({ url: server.url, keyPrefix })).toThrow(InvalidArgumentError);
    expect(() => new RedisStore({ url: server.url, keyPrefix: 42 as unknown as string })).toThrow(
      InvalidArgumentError,
    );
    expect(new RedisStore({ url: server.url, keyPrefix: '' }).keyPrefix).toBe('');
  });

  it('a 1 MiB value planted by a store writer is refused by the server before it is sent (get, getEncoded, records)', async () => {
    const raw = new Redis(server.url);
    const store = new RedisStore({ url: server.url, keyPrefix: 'huge:' });
    const huge = Buffer.alloc(1024 * 1024, 0x41);
    await raw.set(store.key(idx), huge);
    await raw.hset(store.recordsKey(idx, 'dek'), 'big', huge, 'small', 'ok');
    const sent = async () => Number(/total_net_output_bytes:(\d+)/.exec(await raw.info('stats'))![1]);
    await store.get(parseIndexName('warm-up')).catch(() => {}); // connect and load the script first
    const before = await sent();
    for (const read of [() => store.get(idx), () => store.getEncoded(idx)]) {
      const err = await read().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(MalformedEnvelopeError);
      expect((err as Error).message).toMatch(/larger than 65536 bytes.*index "orders"/);
    }
    await expect(store.getRecord(idx, 'dek', 'big')).rejects.toThrow(/record is larger than 131072 bytes/);
    await expect(store.listRecords(idx, 'dek')).rejects.toThrow(MalformedEnvelopeError);
    expect(await store.getRecord(idx, 'dek', 'small')).toEqual(new Uint8Array(Buffer.from('ok')));
    // Four refusals and the INFO replies themselves: far below one copy of the value.
    expect((await sent()) - before).toBeLessThan(64 * 1024);
    // Records may be twice the envelope limit (as on disk); a larger one is refused on write too.
    const record = new Uint8Array(128 * 1024);
    await store.putRecord(idx, 'meta', 'pending', record);
    expect(await store.getRecord(idx, 'meta', 'pending')).toEqual(record);
    await expect(store.putRecord(idx, 'meta', 'over', new Uint8Array(128 * 1024 + 1))).rejects.toThrow(
      InvalidArgumentError,
    );
    // A plain push repairs it, as for any corrupt value.
    const blob = sampleBlob(idx);
    await store.push(idx, blob);
    expect(await store.get(idx)).toEqual(blob);
    await store.close();
    raw.disconnect();
  });

  it('compare-and-set refuses a stored envelope whose CRC32C trailer does not match (one byte flipped inside a string)', async () => {
    const raw = new Redis(server.url);
    const store = new RedisStore({ url: server.url, keyPrefix: 'crc:' });
    const blob = sampleBlob(idx, { keyId: 'local:0123456789abcdef' });
    await store.create(idx, blob);
    const stored = (await raw.getBuffer(store.key(idx)))!;
    const at = stored.indexOf('0123456789abcdef');
    expect(at).toBeGreaterThan(0);
    stored[at] = '1'.charCodeAt(0); // still a valid string, vtable and version: only the CRC tells
    await raw.set(store.key(idx), stored);
    const err = await store
      .push(idx, sampleBlob(idx, { version: 2 }), { expectedVersion: 1 })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(MalformedEnvelopeError);
    expect((err as Error).message).toMatch(/checksum check failed on the server.*index "orders"/);
    expect((await raw.getBuffer(store.key(idx)))!.equals(stored)).toBe(true); // nothing written
    await expect(store.get(idx)).rejects.toThrow(MalformedEnvelopeError);
    // A valid envelope of another index copied in is refused too (its CRC is right).
    await raw.set(store.key(idx), Buffer.from(encodeKmsBlob(sampleBlob('elsewhere'))));
    await expect(store.push(idx, sampleBlob(idx, { version: 2 }), { expectedVersion: 1 })).rejects.toThrow(
      /bound to another index/,
    );
    await store.close();
    raw.disconnect();
  });

  it('the harness stops idempotently and restarts on the same port', async () => {
    const own = await startRedisServer();
    const client = new Redis(own.url, { maxRetriesPerRequest: 1, lazyConnect: true });
    client.on('error', () => {});
    await own.stop();
    await own.stop();
    await own.restart();
    expect(await client.ping()).toBe('PONG');
    expect(own.url).toBe(`redis://127.0.0.1:${own.port}`);
    client.disconnect();
    await own.stop();
  });
});
