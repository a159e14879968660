import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeKmsBlob } from '../../src/envelope/codec.js';
import type { KmsBlob } from '../../src/envelope/kms-blob.js';
import { parseIndexName } from '../../src/names.js';
import { RedisStore } from '../../src/storage/redis.js';
import { type RedisServerHandle, startRedisServer } from '../../src/testing/redis-server.js';
import { sampleBlob } from '../helpers/blobs.js';
import { runCliAsync } from '../helpers/cli.js';
import { hasRedis } from '../helpers/services.js';

const bytes = (text: string) => Buffer.from(text);

describe.skipIf(!hasRedis())('migrate-store: the Redis key layout before the hash tag, moved', () => {
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

  /** Writes an index as the store wrote it before: `<prefix><index>:kmsblob` and `<prefix><index>:<kind>`. */
  async function plantOld(
    prefix: string,
    index: string,
    records: { dek?: Record<string, string>; meta?: Record<string, string> } = {},
    blob: KmsBlob = sampleBlob(index),
  ): Promise<KmsBlob> {
    await raw.set(`${prefix}${index}:kmsblob`, Buffer.from(encodeKmsBlob(blob)));
    for (const kind of ['dek', 'meta'] as const) {
      const all = records[kind];
      if (all) await raw.hset(`${prefix}${index}:${kind}`, ...Object.entries(all).flat());
    }
    return blob;
  }

  const keys = async (prefix: string) => (await raw.keys(`${prefix}*`)).sort();

  it('old-layout envelopes and records move to the new keys, readable by the store; a second run is a no-op', async () => {
    const prefix = 'mig:';
    const a = await plantOld(prefix, 'orders', {
      dek: { d1: 'one', d2: '\u0000\r\n' },
      meta: { active: 'd2' },
    });
    const b = await plantOld(prefix, 'users.v2');
    const c = await plantOld(prefix, 'x-1', { meta: { kek: 'check' } });
    const store = new RedisStore({ url: server.url, keyPrefix: prefix });
    const progress: [number, number][] = [];
    const report = await store.migrateLegacyLayout({
      onProgress: (done, total) => progress.push([done, total]),
    });
    expect(report).toMatchObject({ complete: true, dryRun: false, found: 3, records: 4, problems: [] });
    expect([...report.migrated].sort()).toEqual(['orders', 'users.v2', 'x-1']);
    expect(progress).toEqual([
      [1, 3],
      [2, 3],
      [3, 3],
    ]);
    expect(await store.get(parseIndexName('orders'))).toEqual(a);
    expect(await store.get(parseIndexName('users.v2'))).toEqual(b);
    expect(await store.get(parseIndexName('x-1'))).toEqual(c);
    expect([...(await store.listRecords(parseIndexName('orders'), 'dek')).entries()]).toEqual([
      ['d1', new Uint8Array(bytes('one'))],
      ['d2', new Uint8Array(bytes('\u0000\r\n'))],
    ]);
    expect(await store.getRecord(parseIndexName('orders'), 'meta', 'active')).toEqual(
      new Uint8Array(bytes('d2')),
    );
    const after = await keys(prefix);
    expect(after).toEqual([
      'mig:{orders}:kmsblob',
      'mig:{orders}:records:dek',
      'mig:{orders}:records:meta',
      'mig:{users.v2}:kmsblob',
      'mig:{x-1}:kmsblob',
      'mig:{x-1}:records:meta',
    ]);
    const again = await store.migrateLegacyLayout();
    expect(again).toMatchObject({ complete: true, found: 0, migrated: [], records: 0, problems: [] });
    expect(await keys(prefix)).toEqual(after);
    await store.close();
  });

  it('--dry-run reports what would move and writes nothing', async () => {
    const prefix = 'dry:';
    await plantOld(prefix, 'orders', { dek: { d1: 'one' } });
    const before = await keys(prefix);
    const store = new RedisStore({ url: server.url, keyPrefix: prefix });
    const report = await store.migrateLegacyLayout({ dryRun: true });
    expect(report).toMatchObject({
      dryRun: true,
      complete: true,
      found: 1,
      migrated: ['orders'],
      records: 1,
    });
    expect(await keys(prefix)).toEqual(before);
    await store.close();
  });

  it('an interrupted run resumes: stopped between indexes, or killed halfway through one', async () => {
    const prefix = 'resume:';
    const names = ['a1', 'a2', 'a3', 'a4', 'a5'];
    const blobs = new Map<string, KmsBlob>();
    for (const name of names)
      blobs.set(name, await plantOld(prefix, name, { dek: { k1: `${name}-1`, k2: `${name}-2` } }));
    const store = new RedisStore({ url: server.url, keyPrefix: prefix });

    // Stopped (Ctrl-C in the CLI) after two indexes.
    const abort = new AbortController();
    const first = await store.migrateLegacyLayout({
      signal: abort.signal,
      onProgress: (done) => {
        if (done === 2) abort.abort();
      },
    });
    expect(first).toMatchObject({ complete: false, migrated: ['a1', 'a2'] });

    // A run killed halfway through a3: its envelope and one record copied, nothing deleted yet.
    await raw.set(`${prefix}{a3}:kmsblob`, (await raw.getBuffer(`${prefix}a3:kmsblob`))!);
    await raw.hset(`${prefix}{a3}:records:dek`, 'k1', 'a3-1');

    const second = await store.migrateLegacyLayout();
    expect(second).toMatchObject({
      complete: true,
      found: 3,
      migrated: ['a3', 'a4', 'a5'],
      records: 6,
      problems: [],
    });
    for (const name of names) {
      const index = parseIndexName(name);
      expect(await store.get(index)).toEqual(blobs.get(name));
      expect([...(await store.listRecords(index, 'dek')).keys()]).toEqual(['k1', 'k2']);
    }
    expect((await keys(prefix)).every((key) => key.startsWith(`${prefix}{`))).toBe(true);
    expect(await store.migrateLegacyLayout()).toMatchObject({ found: 0, migrated: [], problems: [] });
    await store.close();
  });

  it('a name the old layout made ambiguous is reported, not guessed (prefix "tn" + "ab" is prefix "tna" + "b")', async () => {
    // Under the old layout the store with prefix "tna" wrote index "b" at "tnab:kmsblob".
    const ofTna = await plantOld('tna', 'b', { dek: { k: 'of b' } });
    const tn = new RedisStore({ url: server.url, keyPrefix: 'tn' });
    const report = await tn.migrateLegacyLayout();
    expect(report.migrated).toEqual([]);
    expect(report.problems).toEqual([
      expect.objectContaining({ kind: 'foreign', key: 'tnab:kmsblob', index: 'ab' }),
    ]);
    expect(report.problems[0]!.detail).toMatch(/bound to index "b", not "ab"/);
    expect(await raw.exists('tn{ab}:kmsblob', 'tnab:kmsblob', 'tnab:dek')).toBe(2); // nothing moved
    // The prefix it belongs to moves it.
    const tna = new RedisStore({ url: server.url, keyPrefix: 'tna' });
    expect((await tna.migrateLegacyLayout()).migrated).toEqual(['b']);
    expect(await tna.get(parseIndexName('b'))).toEqual(ofTna);
    expect(await tna.getRecord(parseIndexName('b'), 'dek', 'k')).toEqual(new Uint8Array(bytes('of b')));
    await Promise.all([tn.close(), tna.close()]);
  });

  it('corrupt values, a new key that already holds another envelope, and orphan records are reported and left', async () => {
    const prefix = 'left:';
    await raw.set(`${prefix}junk:kmsblob`, 'not an envelope');
    await raw.set(`${prefix}huge:kmsblob`, Buffer.alloc(70 * 1024));
    await raw.hset(`${prefix}hash:kmsblob`, 'a', 'b');
    await plantOld(prefix, 'both');
    const newer = sampleBlob('both', { version: 2 });
    await raw.set(`${prefix}{both}:kmsblob`, Buffer.from(encodeKmsBlob(newer)));
    await raw.hset(`${prefix}lonely:dek`, 'k', 'v');
    await plantOld(prefix, 'fine');
    const store = new RedisStore({ url: server.url, keyPrefix: prefix });
    const report = await store.migrateLegacyLayout();
    expect(report.migrated).toEqual(['fine']);
    const byKey = Object.fromEntries(report.problems.map((p) => [p.key, p.kind]));
    expect(byKey).toEqual({
      'left:junk:kmsblob': 'unreadable',
      'left:huge:kmsblob': 'unreadable',
      'left:hash:kmsblob': 'unreadable',
      'left:{both}:kmsblob': 'conflict',
      'left:lonely:dek': 'orphan-records',
    });
    expect(await store.get(parseIndexName('both'))).toEqual(newer); // the newer one kept
    expect(await raw.exists(`${prefix}both:kmsblob`, `${prefix}junk:kmsblob`, `${prefix}lonely:dek`)).toBe(3);
    for (const problem of report.problems) expect(problem.detail).not.toMatch(/not an envelope"/);
    await store.close();
  });

  it('the CLI: progress on stderr, a summary, exit 0; then exit 1 when keys were left, listing each', async () => {
    const prefix = 'cli:';
    await plantOld(prefix, 'orders', { dek: { d: 'x' } });
    const ok = await runCliAsync(['--store', server.url, 'migrate-store', '--key-prefix', prefix]);
    expect(ok.code).toBe(0);
    expect(ok.stdout).toContain('moved 1 of 1 old-layout indexes (1 records)');
    expect(ok.stderr).toContain('migrate-store: 1/1 indexes');
    expect(await raw.exists('cli:{orders}:kmsblob', 'cli:orders:kmsblob')).toBe(1);

    await plantOld('cliab', 'c'); // "cliabc:kmsblob" also spells prefix "cli" + index "abc"
    const left = await runCliAsync([
      '--store',
      server.url,
      'migrate-store',
      '--key-prefix',
      'cli',
      '--dry-run',
    ]);
    expect(left.code).toBe(1);
    expect(left.stderr).toMatch(
      /left cliabc:kmsblob \(foreign\): the envelope is bound to index "c", not "abc"/,
    );
    expect(left.stdout).toContain('dry run: would move 0 of 1 old-layout indexes');
    const down = await runCliAsync(['--store', 'redis://user:s3cret-pw@127.0.0.1:1', 'migrate-store']);
    expect(down.code).toBe(10); // StoreUnavailableError: retry
    expect(down.stderr + down.stdout).not.toContain('s3cret-pw');
    const usage = await runCliAsync(['--store', 'memory:', 'migrate-store']);
    expect(usage.code).toBe(2);
    expect(usage.stderr).toMatch(/needs a Redis store/);
  }, 60_000);
});
