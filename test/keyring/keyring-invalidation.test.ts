/**
 * A long-lived IndexKeyring follows its client: an index deleted or changed by another instance
 * (the client's invalidation feed, over a real redis-server) or by this client drops the keys
 * the keyring opened; without a feed they are dropped at `maxAgeMs` (the client's cache TTL by
 * default); a dropped key stays usable by a caller holding it for `retireGraceMs`, then is
 * zeroed; a rotation survives its own invalidation and a `clearCache` in the middle.
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KmsEnvelopeClient } from '../../src/client.js';
import { InvalidArgumentError, UnknownKeyError } from '../../src/errors.js';
import { IndexKeyring } from '../../src/keyring/keyring.js';
import { StorageConfig } from '../../src/storage/config.js';
import { redisInvalidationFeed } from '../../src/storage/redis-invalidation.js';
import { type RedisServerHandle, startRedisServer } from '../../src/testing/redis-server.js';
import { encryptString } from '../../src/wire/fields.js';
import { hasRedis } from '../helpers/services.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const kms = () => ({
  slots: {
    dev: { provider: 'local', masterKey: `literal:${randomBytes(32).toString('base64url')}`, keyId: 'k' },
  },
  secrets: { allowLiteral: true },
});

/** Waits until `check` resolves true, or fails after `ms`. */
async function eventually(check: () => Promise<boolean>, ms: number, what: string): Promise<void> {
  const until = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > until) throw new Error(`${what}: not within ${ms} ms`);
    await sleep(5);
  }
}

const fails = (p: Promise<unknown>) =>
  p.then(
    () => false,
    () => true,
  );

describe('IndexKeyring on one client (disk store)', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'keyring-inv-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const client = (options: { cache?: false | { ttlMs: number } } = {}) =>
    new KmsEnvelopeClient({
      store: StorageConfig.disk(join(dir, randomBytes(4).toString('hex'))),
      kms: kms(),
      ...options,
    });

  it('onInvalidate: the index for invalidate, rotate and delete; undefined for clearCache and close; unsubscribe; a throwing listener is isolated', async () => {
    const c = client();
    (await c.createIndex('orders', { slot: 'dev' })).zero();
    const heard: (string | undefined)[] = [];
    const warnings: string[] = [];
    const onWarning = (w: Error) => warnings.push(w.message);
    process.on('warning', onWarning);
    const off = c.onInvalidate((index) => heard.push(index));
    const heardOrders: (string | undefined)[] = [];
    const offOrders = c.onInvalidate((index) => heardOrders.push(index), { index: 'orders' });
    expect(() => c.onInvalidate(() => {}, { index: '../x' })).toThrow(InvalidArgumentError);
    const offThrowing = c.onInvalidate(() => {
      throw new Error('listener bug holding secret-0xdeadbeef');
    });
    c.invalidate('orders');
    c.invalidate('billing');
    await c.rotate('orders');
    c.clearCache();
    await c.delete('orders');
    await sleep(10); // process warnings are emitted on the next tick
    expect(heard).toEqual(['orders', 'billing', 'orders', undefined, 'orders']);
    expect(heardOrders).toEqual(['orders', 'orders', undefined, 'orders']); // not billing
    expect(warnings.length).toBe(5);
    expect(warnings.join(' ')).not.toContain('secret-0xdeadbeef');
    off();
    offThrowing();
    offOrders();
    offOrders(); // twice is harmless
    c.invalidate('orders');
    expect(heard.length).toBe(5);
    expect(heardOrders.length).toBe(4);
    await c.close();
    process.off('warning', onWarning);
    expect(c.cacheTtlMs).toBe(60_000);
    expect(client({ cache: false }).cacheTtlMs).toBeUndefined();
    expect(client({ cache: { ttlMs: 1234 } }).cacheTtlMs).toBe(1234);
  });

  it('maxAgeMs and retireGraceMs are checked', () => {
    const c = client();
    for (const maxAgeMs of [0, -1, Number.NaN])
      expect(() => new IndexKeyring(c, 'orders', { maxAgeMs })).toThrow(InvalidArgumentError);
    for (const retireGraceMs of [-1, Number.POSITIVE_INFINITY, Number.NaN])
      expect(() => new IndexKeyring(c, 'orders', { retireGraceMs })).toThrow(InvalidArgumentError);
    expect(() => new IndexKeyring(c, 'orders', { maxAgeMs: Number.POSITIVE_INFINITY })).not.toThrow();
  });

  it('a DEK held across an invalidation works for the grace, then is zeroed; the keyring opens it again', async () => {
    const c = client();
    const keyring = await IndexKeyring.createIndex(c, 'orders', { slot: 'dev', retireGraceMs: 100 });
    const made = await keyring.createDek();
    const token = await keyring.encryptValue('v1');
    const held = await keyring.getDek(made.keyid);
    const callsBefore = c.stats().slots.dev?.kmsCalls ?? 0;
    c.invalidate('orders');
    // Within the grace the caller's key still works; the keyring itself already forgot it.
    expect(held.key.isZeroed).toBe(false);
    expect(encryptString('v2', held)).toMatch(/^\$/);
    const reopened = await keyring.getDek(made.keyid);
    expect(reopened).not.toBe(held);
    expect(c.stats().slots.dev?.kmsCalls ?? 0).toBeGreaterThan(callsBefore); // the KEK was unwrapped again
    await sleep(250);
    expect(held.key.isZeroed).toBe(true);
    expect(() => encryptString('v3', held)).toThrow(InvalidArgumentError);
    expect(reopened.key.isZeroed).toBe(false);
    expect(await keyring.decryptValue(token)).toBe('v1');
    // clearCache zeroes at once.
    await keyring.clearCache();
    expect(reopened.key.isZeroed).toBe(true);
    await c.close();
  });

  it('without a feed, keys are dropped at maxAgeMs: the client cache TTL by default', async () => {
    const dirStore = join(dir, 'shared-age');
    const slotKms = kms();
    const a = new KmsEnvelopeClient({ store: StorageConfig.disk(dirStore), kms: slotKms });
    const b = new KmsEnvelopeClient({
      store: StorageConfig.disk(dirStore),
      kms: slotKms,
      cache: { ttlMs: 300 },
    });
    const here = await IndexKeyring.createIndex(a, 'orders', { slot: 'dev', retireGraceMs: 0 });
    await here.createDek();
    const token = await here.encryptValue('secret value');
    const reader = new IndexKeyring(b, 'orders', { retireGraceMs: 0 }); // maxAge 300 ms, from b's TTL
    const held = await reader.activeDek();
    expect(await reader.decryptValue(token)).toBe('secret value');
    await a.delete('orders'); // another instance; b has no feed
    // Served from the keyring until the age (the documented bound), then refused: its DEK
    // record is gone. (Not asserted stale: on a loaded machine the delete may outlast 300 ms.)
    await eventually(() => fails(reader.decryptValue(token)), 2000, 'a deleted index refused');
    await expect(reader.decryptValue(token)).rejects.toThrow(UnknownKeyError);
    expect(held.key.isZeroed).toBe(true);
    await Promise.all([a.close(), b.close()]);
  });

  it('the age timer zeroes the keys of a keyring nobody uses again', async () => {
    const c = client();
    const keyring = await IndexKeyring.createIndex(c, 'orders', {
      slot: 'dev',
      maxAgeMs: 200,
      retireGraceMs: 0,
    });
    const made = await keyring.createDek();
    const held = await keyring.getDek(made.keyid);
    // Not touched again: only the timer can zero it.
    await sleep(1500);
    expect(held.key.isZeroed).toBe(true);
    await c.close();
  });

  it('a DEK created while the index changes is not cached: the caller has it for the grace, the keyring loads it again', async () => {
    const store = StorageConfig.memory();
    const c = new KmsEnvelopeClient({ store, kms: kms() });
    const keyring = await IndexKeyring.createIndex(c, 'orders', { slot: 'dev', retireGraceMs: 50 });
    const createRecord = store.createRecord.bind(store);
    store.createRecord = (...args: Parameters<typeof store.createRecord>) => {
      c.invalidate('orders'); // another instance changed the index while the record was written
      return createRecord(...args);
    };
    const made = await keyring.createDek();
    store.createRecord = createRecord;
    expect(made.key.isZeroed).toBe(false);
    const again = await keyring.getDek(made.keyid);
    expect(again).not.toBe(made);
    await sleep(200);
    expect(made.key.isZeroed).toBe(true);
    expect(again.key.isZeroed).toBe(false);
    await c.close();
  });

  it('a client cache TTL of 0 (no expiry) makes the keyring keep its keys until an invalidation', () => {
    expect(() => new IndexKeyring(client({ cache: { ttlMs: 0 } }), 'orders')).not.toThrow();
  });

  it('rotateKek survives its own invalidation and a clearCache in the middle, on a keyring kept for a long time', async () => {
    const c = client();
    const keyring = await IndexKeyring.createIndex(c, 'orders', {
      slot: 'dev',
      maxAgeMs: Number.POSITIVE_INFINITY,
      retireGraceMs: 0,
    });
    const tokens: string[] = [];
    for (let i = 0; i < 6; i++) {
      await keyring.createDek();
      tokens.push(await keyring.encryptValue(`value ${i}`));
    }
    const report = await keyring.rotateKek({
      batchSize: 2,
      onProgress: () => void keyring.clearCache(),
    });
    expect(report.rewrapped).toBe(6);
    for (let i = 0; i < 6; i++) expect(await keyring.decryptValue(tokens[i]!)).toBe(`value ${i}`);
    await c.close();
  });
});

it('keyrings nobody holds are collected, unsubscribed and their open keys retired: 200,000 of them leave the heap almost as it was', () => {
  const run = spawnSync(
    process.execPath,
    ['--expose-gc', '--import', 'tsx', join(import.meta.dirname, '../helpers/keyring-gc-worker.ts')],
    { encoding: 'utf8', timeout: 120_000 },
  );
  expect(run.status, run.stderr).toBe(0);
  const { growth, keptDropped, collectedZeroed } = JSON.parse(run.stdout.trim().split('\n').at(-1)!) as {
    growth: number;
    keptDropped: boolean;
    collectedZeroed: boolean;
  };
  // A listener left subscribed per keyring costs ~160 B: 200,000 of them about 32 MB.
  expect(growth).toBeLessThan(8 * 1024 * 1024);
  expect(keptDropped).toBe(true);
  expect(collectedZeroed).toBe(true);
});

describe.skipIf(!hasRedis())('IndexKeyring across instances (real redis-server, invalidation feed)', () => {
  let server: RedisServerHandle;
  beforeAll(async () => {
    server = await startRedisServer();
  });
  afterAll(async () => {
    await server?.stop();
  });

  it('an index deleted through another instance: the long-lived keyring here refuses it once the feed reports it, well before its max age', async () => {
    const keyPrefix = 'kr-inv:';
    const slotKms = kms();
    const writer = new KmsEnvelopeClient({
      store: StorageConfig.redis({ url: server.url, keyPrefix }),
      kms: slotKms,
    });
    const reader = new KmsEnvelopeClient({
      store: StorageConfig.redis({ url: server.url, keyPrefix }),
      kms: slotKms,
      cache: { ttlMs: 600_000 },
      invalidation: redisInvalidationFeed({ url: server.url, keyPrefix }),
    });
    await reader.invalidationReady();
    const owner = await IndexKeyring.createIndex(writer, 'orders', { slot: 'dev' });
    await owner.createDek();
    const token = await owner.encryptValue('payload');
    const keyring = new IndexKeyring(reader, 'orders', { retireGraceMs: 50 }); // max age 600 s
    const held = await keyring.activeDek();
    expect(await keyring.decryptValue(token)).toBe('payload');
    await writer.delete('orders');
    await eventually(() => fails(keyring.decryptValue(token)), 10_000, 'the feed reached the keyring');
    await expect(keyring.activeDek()).rejects.toThrow(UnknownKeyError);
    await eventually(async () => held.key.isZeroed, 1000, 'the held DEK zeroed after the grace');
    // A rotation elsewhere (rotateKek): the keyring drops the old KEK and opens the new one.
    const again = await IndexKeyring.createIndex(writer, 'billing', { slot: 'dev' });
    await again.createDek();
    const old = await again.encryptValue('before');
    const there = new IndexKeyring(reader, 'billing');
    expect(await there.decryptValue(old)).toBe('before');
    const calls = reader.stats().slots.dev?.kmsCalls ?? 0;
    await again.rotateKek();
    await eventually(
      async () =>
        (await there.decryptValue(old)) === 'before' && (reader.stats().slots.dev?.kmsCalls ?? 0) > calls,
      10_000,
      'the new KEK opened here',
    );
    expect(await there.decryptValue(await there.encryptValue('after'))).toBe('after');
    await Promise.all([writer.close(), reader.close()]);
  });
});
