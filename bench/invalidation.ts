/**
 * Cross-instance invalidation, measured on single Redis, Redis Cluster and PostgreSQL: 8 processes
 * share one store; one (this process) rotates an index; the time until every other process has
 * dropped its cached KEK and served the new envelope, p50 and p99 over the rotations. Beside it,
 * per store, the cost of a cached hit with the feed on against one without it, and the store reads
 * a hit costs (0).
 *
 * Run as part of `npm run bench` (section `invalidation`), or alone:
 * `BENCH_ONLY=invalidation npm run bench`. A store whose server is missing is skipped.
 */
import { fork } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { asReference, type CaseResult, runCase } from '../src/bench/harness.js';
import { KmsEnvelopeClient } from '../src/client.js';
import type { KmsBlob } from '../src/envelope/kms-blob.js';
import type { IndexName } from '../src/names.js';
import { StorageConfig } from '../src/storage/config.js';
import { postgresInvalidationFeed } from '../src/storage/postgres-invalidation.js';
import { redisClusterInvalidationFeed } from '../src/storage/redis-cluster-invalidation.js';
import { redisInvalidationFeed } from '../src/storage/redis-invalidation.js';
import type { EnvelopeStore } from '../src/storage/store.js';
import { startPostgres } from '../src/testing/postgres-server.js';
import { startRedisCluster } from '../src/testing/redis-cluster.js';
import { startRedisServer } from '../src/testing/redis-server.js';
import type { InvalidationFeed, InvalidationListener } from '../src/unwrap/invalidation.js';

const READERS = 7;
const ROTATIONS = Number(process.env.BENCH_ROTATIONS ?? 200);
const KEY_PREFIX = 'bench-inv:';
const INDEX = 'orders';

/** Where the shared store is: passed to the reader processes in KE_BENCH_BACKEND (not argv). */
type Backend =
  | { readonly kind: 'redis'; readonly url: string }
  | { readonly kind: 'cluster'; readonly nodes: readonly { host: string; port: number }[] }
  | { readonly kind: 'postgres'; readonly connectionString: string };

const LABEL = { redis: 'Redis', cluster: 'Redis Cluster', postgres: 'PostgreSQL' } as const;

/** Wall-clock milliseconds with sub-millisecond resolution, comparable across processes. */
const now = () => performance.timeOrigin + performance.now();

/** A store on `backend` and what closes it (a Cluster client the store does not own). */
async function storeOf(backend: Backend): Promise<{ store: EnvelopeStore; close: () => void }> {
  if (backend.kind === 'redis') {
    return { store: StorageConfig.redis({ url: backend.url, keyPrefix: KEY_PREFIX }), close: () => {} };
  }
  if (backend.kind === 'postgres') {
    return { store: StorageConfig.postgres({ connectionString: backend.connectionString }), close: () => {} };
  }
  const { Cluster } = await import('ioredis');
  const client = new Cluster([...backend.nodes]);
  client.on('error', () => {});
  return { store: StorageConfig.redis({ client, keyPrefix: KEY_PREFIX }), close: () => client.disconnect() };
}

function feedOf(backend: Backend): InvalidationFeed {
  switch (backend.kind) {
    case 'redis':
      return redisInvalidationFeed({ url: backend.url, keyPrefix: KEY_PREFIX });
    case 'cluster':
      return redisClusterInvalidationFeed({ nodes: backend.nodes, keyPrefix: KEY_PREFIX });
    case 'postgres':
      // The main process installed the trigger: eight processes replacing it at once would race.
      return postgresInvalidationFeed({ connectionString: backend.connectionString, installTrigger: false });
  }
}

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
async function reader(backend: Backend, masterKey: string): Promise<void> {
  let client!: KmsEnvelopeClient;
  const { store, close } = await storeOf(backend);
  const feed = observed(feedOf(backend), (index) => {
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
    store,
    kms: kmsOf(masterKey),
    cache: { ttlMs: 3_600_000 },
    invalidation: feed,
  });
  await client.invalidationReady();
  (await client.unwrap(INDEX)).zero();
  process.send?.({ ready: true });
  process.on('disconnect', () => {
    void client.close().then(() => {
      close();
      process.exit(0);
    });
  });
}

const pct = (sorted: number[], p: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!;

type Started = { backend: Backend; stop: () => Promise<void> };

/** The section's rows and notes: single Redis, Redis Cluster, PostgreSQL (each skipped if missing). */
export async function invalidationCases(): Promise<{ rows: CaseResult[]; notes: string[] }> {
  const rows: CaseResult[] = [];
  const notes: string[] = [];
  const starters: [string, () => Promise<Started>][] = [
    [
      'redis-server (apt-get install redis-server)',
      async () => {
        const server = await startRedisServer();
        return { backend: { kind: 'redis', url: server.url }, stop: () => server.stop() };
      },
    ],
    [
      'a Redis Cluster (apt-get install redis-server)',
      async () => {
        const cluster = await startRedisCluster();
        return { backend: { kind: 'cluster', nodes: cluster.startupNodes }, stop: () => cluster.stop() };
      },
    ],
    [
      'PostgreSQL (apt-get install postgresql)',
      async () => {
        const server = await startPostgres();
        return {
          backend: { kind: 'postgres', connectionString: server.connectionString },
          stop: () => server.stop(),
        };
      },
    ],
  ];
  for (const [what, start] of starters) {
    let started: Started;
    try {
      started = await start();
    } catch (err) {
      console.warn(`skipping invalidation cases on ${what}: ${(err as Error).message}`);
      continue;
    }
    try {
      const result = await casesOn(started.backend);
      rows.push(...result.rows);
      notes.push(...result.notes);
    } finally {
      await started.stop();
    }
  }
  return { rows, notes };
}

/** Rotation lag over 8 processes, and the hit cost with and without a feed, on one store. */
async function casesOn(backend: Backend): Promise<{ rows: CaseResult[]; notes: string[] }> {
  const label = LABEL[backend.kind];
  const masterKey = `literal:${randomBytes(32).toString('base64url')}`;
  const own = await storeOf(backend);
  const closers: (() => void)[] = [own.close];
  const writer = new KmsEnvelopeClient({ store: own.store, kms: kmsOf(masterKey) });
  const children: ReturnType<typeof fork>[] = [];
  try {
    (await writer.createIndex(INDEX, { slot: 'dev' })).zero();
    if (backend.kind === 'postgres') {
      // Installs the notify trigger once, before the readers listen without installing it.
      const installer = postgresInvalidationFeed({ connectionString: backend.connectionString });
      await installer.start({ changed: () => {}, lost: () => {} });
      await installer.close();
    }
    const self = fileURLToPath(import.meta.url);
    let waiting: ((at: number) => void)[] = [];
    let ready = 0;
    const allReady = new Promise<void>((resolve, reject) => {
      for (let i = 0; i < READERS; i++) {
        const child = fork(self, ['reader', masterKey], {
          stdio: 'inherit',
          env: { ...process.env, KE_BENCH_BACKEND: JSON.stringify(backend) },
        });
        children.push(child);
        child.once('exit', (code) => {
          if (ready < READERS) reject(new Error(`a reader process exited with ${code}`));
        });
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
    const counted = await storeOf(backend);
    const plain = await storeOf(backend);
    closers.push(counted.close, plain.close);
    const withFeed = new KmsEnvelopeClient({
      store: countingStore(counted.store, () => {
        reads++;
      }),
      kms: kmsOf(masterKey),
      cache: { ttlMs: 3_600_000 },
      invalidation: feedOf(backend),
    });
    await withFeed.invalidationReady();
    // The same store wrapper, so the two clients differ by the feed alone.
    const without = new KmsEnvelopeClient({
      store: countingStore(plain.store, () => {}),
      kms: kmsOf(masterKey),
      cache: { ttlMs: 3_600_000 },
    });
    await withFeed.withKek(INDEX, () => 0);
    await without.withKek(INDEX, () => 0);
    const readsBefore = reads;
    const hit = await runCase({
      name: `${label}: cached withKek(index, fn), invalidation feed on, vs the same client without a feed`,
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
        `invalidation over ${label}, ${READERS + 1} processes (one rotates, ${READERS} serve): time from the start of a rotation until every other process served the new envelope, over ${ROTATIONS} rotations: p50 ${pct(lags, 0.5).toFixed(2)} ms, p99 ${pct(lags, 0.99).toFixed(2)} ms, max ${lags[lags.length - 1]!.toFixed(2)} ms (the TTL, 1 h here, would have been the bound without the feed)`,
        `${label}: store reads during the timed cached hits with the feed on: ${hitReads}`,
      ],
    };
  } finally {
    for (const child of children) if (child.connected) child.disconnect();
    await writer.close();
    for (const close of closers) close();
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
  await reader(JSON.parse(process.env.KE_BENCH_BACKEND!) as Backend, process.argv[3]!);
}
