/**
 * Cross-instance invalidation, measured: 8 processes share one Redis store; one (this process)
 * rotates an index; the time until every other process has dropped its cached KEK (so its next
 * request reads the new envelope), p50 and p99 over the rotations. Beside it, the cost of a cached
 * hit with the feed on against one without it, and the store reads a hit costs (0).
 *
 * Run as part of `npm run bench` (section `invalidation`), or alone:
 * `BENCH_ONLY=invalidation npm run bench`.
 */
import { fork } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { asReference, type CaseResult, runCase } from '../src/bench/harness.js';
import { KmsEnvelopeClient } from '../src/client.js';
import type { KmsBlob } from '../src/envelope/kms-blob.js';
import type { IndexName } from '../src/names.js';
import { StorageConfig } from '../src/storage/config.js';
import { redisInvalidationFeed } from '../src/storage/redis-invalidation.js';
import type { EnvelopeStore } from '../src/storage/store.js';
import { startRedisServer } from '../src/testing/redis-server.js';
import type { InvalidationFeed, InvalidationListener } from '../src/unwrap/invalidation.js';

const READERS = 7;
const ROTATIONS = Number(process.env.BENCH_ROTATIONS ?? 200);
const KEY_PREFIX = 'bench-inv:';
const INDEX = 'orders';

/** Wall-clock milliseconds with sub-millisecond resolution, comparable across processes. */
const now = () => performance.timeOrigin + performance.now();

/** A feed that also reports to `onChanged` when the index changed. */
function observed(feed: InvalidationFeed, onChanged: (index: string) => void): InvalidationFeed {
  return {
    start: (listener: InvalidationListener) =>
      feed.start({
        changed: (index) => {
          listener.changed(index);
          onChanged(index);
        },
        lost: (reason) => listener.lost(reason),
      }),
    close: () => feed.close(),
  };
}

function kmsOf(masterKey: string) {
  return {
    slots: { dev: { provider: 'local', masterKey, keyId: 'bench' } },
    secrets: { allowLiteral: true },
  };
}

/** A reader process: caches the KEK, reports each eviction's time, unwraps again (re-caching). */
async function reader(url: string, masterKey: string): Promise<void> {
  let client!: KmsEnvelopeClient;
  const feed = observed(redisInvalidationFeed({ url, keyPrefix: KEY_PREFIX }), (index) => {
    if (index !== INDEX) return;
    // Serve the new version: the next request reads and unwraps the rotated envelope.
    client.unwrap(INDEX).then(
      (kek) => {
        kek.zero();
        process.send?.({ at: now() });
      },
      () => process.send?.({ at: now(), failed: true }),
    );
  });
  client = new KmsEnvelopeClient({
    store: StorageConfig.redis({ url, keyPrefix: KEY_PREFIX }),
    kms: kmsOf(masterKey),
    cache: { ttlMs: 3_600_000 },
    invalidation: feed,
  });
  await client.invalidationReady();
  (await client.unwrap(INDEX)).zero();
  process.send?.({ ready: true });
  process.on('disconnect', () => {
    void client.close().then(() => process.exit(0));
  });
}

const pct = (sorted: number[], p: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!;

/** The section's rows and notes. */
export async function invalidationCases(): Promise<{ rows: CaseResult[]; notes: string[] }> {
  let server: Awaited<ReturnType<typeof startRedisServer>>;
  try {
    server = await startRedisServer();
  } catch (err) {
    console.warn(`skipping invalidation cases: ${(err as Error).message} (apt-get install redis-server)`);
    return { rows: [], notes: [] };
  }
  const masterKey = `literal:${randomBytes(32).toString('base64url')}`;
  const writer = new KmsEnvelopeClient({
    store: StorageConfig.redis({ url: server.url, keyPrefix: KEY_PREFIX }),
    kms: kmsOf(masterKey),
  });
  const children: ReturnType<typeof fork>[] = [];
  try {
    (await writer.createIndex(INDEX, { slot: 'dev' })).zero();
    const self = fileURLToPath(import.meta.url);
    let waiting: ((at: number) => void)[] = [];
    let ready = 0;
    const allReady = new Promise<void>((resolve) => {
      for (let i = 0; i < READERS; i++) {
        const child = fork(self, ['reader', server.url, masterKey], { stdio: 'inherit' });
        children.push(child);
        child.on('message', (message: { ready?: boolean; at?: number }) => {
          if (message.ready && ++ready === READERS) resolve();
          if (message.at !== undefined) waiting.shift()?.(message.at);
        });
      }
    });
    await allReady;
    const lags: number[] = [];
    for (let round = 0; round < ROTATIONS; round++) {
      const seen = Array.from(
        { length: READERS },
        () => new Promise<number>((resolve) => waiting.push(resolve)),
      );
      const started = now();
      await writer.rotate(INDEX);
      const times = await Promise.all(seen);
      lags.push(Math.max(...times) - started);
      waiting = [];
    }
    lags.sort((a, b) => a - b);

    // The hit path with and without a feed, and the store reads a hit costs.
    let reads = 0;
    const counting = countingStore(StorageConfig.redis({ url: server.url, keyPrefix: KEY_PREFIX }), () => {
      reads++;
    });
    const withFeed = new KmsEnvelopeClient({
      store: counting,
      kms: kmsOf(masterKey),
      cache: { ttlMs: 3_600_000 },
      invalidation: redisInvalidationFeed({ url: server.url, keyPrefix: KEY_PREFIX }),
    });
    await withFeed.invalidationReady();
    // The same store wrapper, so the two clients differ by the feed alone.
    const without = new KmsEnvelopeClient({
      store: countingStore(StorageConfig.redis({ url: server.url, keyPrefix: KEY_PREFIX }), () => {}),
      kms: kmsOf(masterKey),
      cache: { ttlMs: 3_600_000 },
    });
    await withFeed.withKek(INDEX, () => 0);
    await without.withKek(INDEX, () => 0);
    const readsBefore = reads;
    const hit = await runCase({
      name: 'cached withKek(index, fn), invalidation feed on, vs the same client without a feed',
      ours: () => withFeed.withKek(INDEX, use),
      baseline: () => without.withKek(INDEX, use),
      target: { maxRatio: 1.1 },
    });
    const hitReads = reads - readsBefore;
    await withFeed.close();
    await without.close();
    return {
      rows: [
        hit,
        asReference({ ...hit, name: `${hit.name}: store reads during the timed hits = ${hitReads}` }),
      ],
      notes: [
        `invalidation over Redis, ${READERS + 1} processes (one rotates, ${READERS} serve): time from the start of a rotation until every other process served the new envelope, over ${ROTATIONS} rotations: p50 ${pct(lags, 0.5).toFixed(2)} ms, p99 ${pct(lags, 0.99).toFixed(2)} ms, max ${lags[lags.length - 1]!.toFixed(2)} ms (the TTL, 1 h here, would have been the bound without the feed)`,
        `store reads during the timed cached hits with the feed on: ${hitReads}`,
      ],
    };
  } finally {
    for (const child of children) child.disconnect();
    await writer.close();
    await server.stop();
  }
}

const use = () => 0;

/** `store` with every envelope read counted. */
function countingStore(store: EnvelopeStore, count: () => void): EnvelopeStore {
  return {
    kind: store.kind,
    description: store.description,
    create: (i: IndexName, b: KmsBlob) => store.create(i, b),
    push: (i, b, o) => store.push(i, b, o),
    get: (i) => {
      count();
      return store.get(i);
    },
    delete: (i) => store.delete(i),
    close: () => store.close(),
  };
}

if (process.argv[2] === 'reader') {
  await reader(process.argv[3]!, process.argv[4]!);
}
