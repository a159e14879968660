/**
 * `npm run bench`: ratios of kms-envelope operations against baselines run in the same process —
 * `JSON`, raw `node:crypto` AES-256-GCM, a bare ioredis client, the raw durable-write syscalls.
 * Prints a Markdown table. Targets come from the issues; a MISSED row is reported, not hidden.
 */
import { createCipheriv, createDecipheriv, randomBytes, randomFillSync } from 'node:crypto';
import { closeSync, fsyncSync, mkdtempSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLocalProvider } from '../providers/local.js';
import { asReference, type CaseResult, formatTable, inFlight, runCase } from '../src/bench/harness.js';
import { concurrentColdCase, countingClient, ONE_IN_FLIGHT, unwrapBench } from '../src/bench/unwrap-bench.js';
import { KmsEnvelopeClient } from '../src/client.js';
import { decodeKmsBlob, encodeKmsBlob } from '../src/envelope/codec.js';
import type { KmsBlob } from '../src/envelope/kms-blob.js';
import { IndexKeyring } from '../src/keyring/keyring.js';
import { Dek } from '../src/keys/dek.js';
import { Kek } from '../src/keys/kek.js';
import { parseIndexName, parseSlotName } from '../src/names.js';
import { KmsRegistry } from '../src/providers/registry.js';
import { StorageConfig } from '../src/storage/config.js';
import type { EnvelopeStore, RecordStore } from '../src/storage/store.js';
import { startFakeAws } from '../src/testing/fake-aws.js';
import { startRedisServer } from '../src/testing/redis-server.js';
import { decryptString, encryptString, type KeyContext } from '../src/wire/fields.js';
import { newKeyId } from '../src/wire/key-id.js';
import { invalidationCases } from './invalidation.js';
import { multiWrapCases } from './multi-wrap.js';
import { postgresCases } from './postgres.js';
import { redisClusterCases } from './redis-cluster.js';

const index = parseIndexName('orders-2026');
const slot = parseSlotName('prod-kms');

function sampleBlob(): KmsBlob {
  return {
    kmsName: slot,
    provider: 'aws-kms',
    keyId: 'arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab',
    region: 'eu-west-1',
    wrappedKek: randomBytes(184),
    version: 3,
    createdAt: 1_763_900_000,
    indexName: index,
    encryptionContext: { tenant: 'acme' },
    schemaVersion: 1,
    updatedAt: 1_763_990_000,
    kekCheck: randomBytes(16),
  };
}

/** The same record as JSON would carry it: bytes in base64. */
function toJsonRecord(blob: KmsBlob) {
  return {
    ...blob,
    wrappedKek: Buffer.from(blob.wrappedKek).toString('base64'),
    kekCheck: blob.kekCheck ? Buffer.from(blob.kekCheck).toString('base64') : undefined,
  };
}

async function codecCases(): Promise<CaseResult[]> {
  const blob = sampleBlob();
  const bytes = encodeKmsBlob(blob);
  const json = JSON.stringify(toJsonRecord(blob));
  return [
    await runCase({
      name: 'KMSBlob encode vs JSON.stringify',
      ours: () => encodeKmsBlob(blob),
      baseline: () => JSON.stringify(toJsonRecord(blob)),
      target: { maxRatio: 1.0 },
    }),
    await runCase({
      name: 'KMSBlob verified decode vs JSON.parse (+ base64)',
      ours: () => decodeKmsBlob(bytes),
      baseline: () => {
        const parsed = JSON.parse(json) as { wrappedKek: string; kekCheck: string };
        return [Buffer.from(parsed.wrappedKek, 'base64'), Buffer.from(parsed.kekCheck, 'base64')];
      },
      target: { maxRatio: 1.0 },
    }),
  ];
}

async function localCases(): Promise<CaseResult[]> {
  const master = randomBytes(32);
  const provider = createLocalProvider({ masterKey: master });
  const kek = Kek.generate();
  const ctx = { index, slot, encryptionContext: {} };
  const wrapped = await provider.wrap(kek, ctx);
  // The raw baseline: the same seal/open with an AAD of the same size and pooled nonces.
  const aad = randomBytes(60);
  const pool = randomFillSync(Buffer.alloc(12 * 4096));
  let at = 0;
  const nonce = () => {
    if (at === pool.length) {
      randomFillSync(pool);
      at = 0;
    }
    at += 12;
    return pool.subarray(at - 12, at);
  };
  const plain = kek.expose();
  const rawSeal = () => {
    const n = nonce();
    const c = createCipheriv('aes-256-gcm', master, n);
    c.setAAD(aad);
    const ct = c.update(plain);
    c.final();
    return Buffer.concat([n, ct, c.getAuthTag()]);
  };
  const sealed = rawSeal();
  const rawOpen = () => {
    const d = createDecipheriv('aes-256-gcm', master, sealed.subarray(0, 12));
    d.setAuthTag(sealed.subarray(44));
    d.setAAD(aad);
    const pt = d.update(sealed.subarray(12, 44));
    d.final();
    return pt;
  };
  const zero = (k: Kek) => k.zero();
  return [
    await runCase({
      name: 'local wrap vs raw AES-256-GCM seal',
      ours: () => provider.wrap(kek, ctx),
      baseline: rawSeal,
      target: { maxRatio: 1.2 },
    }),
    await runCase({
      name: "local unwrap (unwrapSync, the client's path) vs raw AES-256-GCM open",
      ours: () => provider.unwrapSync(wrapped, ctx).zero(),
      baseline: rawOpen,
      target: { maxRatio: 1.2 },
    }),
    await runCase({
      name: 'local unwrap (async KmsProvider.unwrap, awaited) vs raw AES-256-GCM open (sync)',
      ours: () => provider.unwrap(wrapped, ctx).then(zero),
      baseline: rawOpen,
      target: { maxRatio: 1.2 },
    }),
  ];
}

async function redisCases(): Promise<{ rows: CaseResult[]; notes: string[] }> {
  let server: Awaited<ReturnType<typeof startRedisServer>>;
  try {
    server = await startRedisServer();
  } catch (err) {
    console.warn(`skipping Redis cases: ${(err as Error).message} (apt-get install redis-server)`);
    return { rows: [], notes: [] };
  }
  const { Redis } = await import('ioredis');
  const bare = new Redis(server.url);
  const barePipelined = new Redis(server.url, { enableAutoPipelining: true });
  // The store's client as a deployment would pass it: auto-pipelining on (it only batches
  // commands issued in the same tick, so one request in flight goes out alone).
  const storeClient = new Redis(server.url, {
    enableAutoPipelining: true,
    maxRetriesPerRequest: 1,
    commandTimeout: 2000,
  });
  const plainClient = new Redis(server.url);
  const store = StorageConfig.redis({ url: server.url });
  const pipelinedStore = StorageConfig.redis({ client: storeClient });
  const notes: string[] = [];
  try {
    const blob = sampleBlob();
    await store.create(index, blob);
    await bare.set('bench:raw', Buffer.from(encodeKmsBlob(blob)));
    const master = `literal:${randomBytes(32).toString('base64url')}`;
    const kms = { slots: { dev: { provider: 'local', masterKey: master } }, secrets: { allowLiteral: true } };
    // Redis-backed unwrap: the envelope is read from Redis on every call. With the cache in
    // readEnvelope 'every-call' mode the KEK is reused while the envelope is unchanged; without
    // a cache every call also unwraps (local AES-GCM) and checks the KEK check value.
    // One request in flight: the store's own client (auto-pipelining would add a setImmediate,
    // ~10 µs, to every command). 64 in flight: a client with auto-pipelining.
    const every = { readEnvelope: 'every-call' } as const;
    const fresh1 = new KmsEnvelopeClient({ store, cache: every, kms });
    // The same over a client configured like the bare one (no per-command timeout timer): what
    // the library's own code costs, apart from the store's default command timeout.
    const plainStore = StorageConfig.redis({ client: plainClient });
    const freshPlain = new KmsEnvelopeClient({ store: plainStore, cache: every, kms });
    const fresh = new KmsEnvelopeClient({ store: pipelinedStore, cache: every, kms });
    const uncached1 = new KmsEnvelopeClient({ store, cache: false, kms });
    const uncached = new KmsEnvelopeClient({ store: pipelinedStore, cache: false, kms });
    const unwrapIndex = parseIndexName('bench-redis-unwrap');
    (await fresh.createIndex(unwrapIndex, { slot: 'dev' })).zero();
    const rawKey = 'bench:raw-unwrap';
    await bare.set(rawKey, Buffer.from(encodeKmsBlob(await store.get(unwrapIndex))));
    const spread = Array.from({ length: 64 }, (_, i) => parseIndexName(`bench-redis-unwrap-${i}`));
    const spreadRaw = spread.map((name) => `bench:raw-${name}`);
    for (const [i, name] of spread.entries()) {
      (await fresh.createIndex(name, { slot: 'dev' })).zero();
      await bare.set(spreadRaw[i]!, Buffer.from(encodeKmsBlob(await store.get(name))));
      (await fresh.unwrap(name)).zero();
    }
    const zero = (k: Kek) => k.zero();
    const touch = (k: Kek) => k.length;
    const bareGet = () => bare.getBuffer(rawKey);
    // The machine's floors at one request in flight: a bare getBuffer followed by 2 µs of
    // spinning, and by a decode of the envelope (~2 µs when hot). On this VM work between a reply
    // and the next request costs more wall time than its own CPU time, the more so the more
    // memory it touches: these rows show how much.
    const spin = (us: number) => {
      const end = process.hrtime.bigint() + BigInt(us * 1000);
      while (process.hrtime.bigint() < end) {
        // busy: stands for the per-request work
      }
    };
    // One request in flight: the loopback round trip drifts by tens of per cent within seconds
    // on this VM, so ours and the baseline alternate every 20 requests (many short rounds) and
    // both medians come from the same moments (ONE_IN_FLIGHT).
    const rows = [
      asReference(
        await runCase({
          name: 'floor: bare getBuffer + 2 µs of CPU per request, vs bare getBuffer (1 in flight)',
          ours: () => bare.getBuffer(rawKey).then(() => spin(2)),
          baseline: bareGet,
          target: { maxRatio: 1.1 },
          ...ONE_IN_FLIGHT,
        }),
        'floor',
      ),
      asReference(
        await runCase({
          name: 'floor: bare getBuffer + a decode of the envelope per request (~2 µs hot), vs bare getBuffer (1 in flight)',
          ours: () => bare.getBuffer(rawKey).then((bytes) => decodeKmsBlob(bytes!)),
          baseline: bareGet,
          target: { maxRatio: 1.1 },
          ...ONE_IN_FLIGHT,
        }),
        'floor',
      ),
      await runCase({
        name: 'Redis store get vs bare ioredis getBuffer',
        ours: () => store.get(index),
        baseline: () => bare.getBuffer('bench:raw'),
        target: { maxRatio: 1.1 },
        ...ONE_IN_FLIGHT,
      }),
      await runCase({
        name: "Redis-backed unwrap (readEnvelope 'every-call'), 1 in flight, vs bare getBuffer",
        ours: () => fresh1.unwrap(unwrapIndex),
        useOurs: zero,
        baseline: bareGet,
        target: { maxRatio: 1.1 },
        ...ONE_IN_FLIGHT,
      }),
      await runCase({
        name: "Redis-backed unwrap (readEnvelope 'every-call'), 1 in flight, over a client configured like the bare one (no command timeout), vs bare getBuffer",
        ours: () => freshPlain.unwrap(unwrapIndex),
        useOurs: zero,
        baseline: bareGet,
        target: { maxRatio: 1.1 },
        ...ONE_IN_FLIGHT,
      }),
      await runCase({
        name: "Redis-backed withKek (readEnvelope 'every-call'), 1 in flight, vs bare getBuffer",
        ours: () => fresh1.withKek(unwrapIndex, touch),
        baseline: bareGet,
        target: { maxRatio: 1.1 },
        ...ONE_IN_FLIGHT,
      }),
      await runCase({
        name: "Redis-backed unwrap (readEnvelope 'every-call'), 64 in flight on one index (calls in one tick share a read), vs bare getBuffer",
        ours: inFlight(64, () => fresh.unwrap(unwrapIndex).then(zero)),
        baseline: inFlight(64, bareGet),
        target: { minThroughput: 0.9 },
        rounds: 11,
      }),
      await runCase({
        name: "Redis-backed unwrap (readEnvelope 'every-call'), 64 in flight on one index (calls in one tick share a read), vs bare getBuffer with auto-pipelining",
        ours: inFlight(64, () => fresh.unwrap(unwrapIndex).then(zero)),
        baseline: inFlight(64, () => barePipelined.getBuffer(rawKey)),
        target: { minThroughput: 0.9 },
        rounds: 11,
      }),
      // The same 64 in flight, each on an index of its own: no read can be shared, so this is
      // the store read + byte comparison + copy per call against a GET per call.
      asReference(
        await runCase({
          name: "Redis-backed unwrap (readEnvelope 'every-call'), 64 in flight on 64 indexes (auto-pipelining), vs bare getBuffer of 64 keys with auto-pipelining",
          ours: () => Promise.all(spread.map((name) => fresh.unwrap(name).then(zero))),
          baseline: () => Promise.all(spreadRaw.map((key) => barePipelined.getBuffer(key))),
          target: { minThroughput: 0.9 },
          rounds: 31,
        }),
      ),
      // Without a cache every call also decodes, unwraps (AES-GCM) and checks the KEK: more CPU
      // than a GET by design, shown for comparison.
      asReference(
        await runCase({
          name: 'Redis-backed unwrap, no cache (read + local unwrap + KEK check), 1 in flight, vs bare getBuffer',
          ours: () => uncached1.unwrap(unwrapIndex),
          useOurs: zero,
          baseline: bareGet,
          target: { maxRatio: 1.1 },
          rounds: 11,
        }),
      ),
      asReference(
        await runCase({
          name: 'Redis-backed unwrap, no cache (read + local unwrap + KEK check), 64 in flight (auto-pipelining), vs bare getBuffer',
          ours: inFlight(64, () => uncached.unwrap(unwrapIndex).then(zero)),
          baseline: inFlight(64, bareGet),
          target: { minThroughput: 0.9 },
          rounds: 11,
        }),
      ),
    ];
    // 1,000 concurrent cold unwraps where one unwrap includes a Redis round trip.
    const cold = await countingClient({ store: pipelinedStore, kms: new KmsRegistry(kms), slot: 'dev' });
    const concurrent = await concurrentColdCase(
      '1,000 concurrent cold unwrap(index) vs one cold unwrap, Redis store',
      cold,
      (client) => client.unwrap(unwrapIndex).then(zero),
    );
    rows.push(concurrent.row);
    notes.push(
      `1,000 concurrent cold unwraps over Redis: ${concurrent.callsPerRound.every((n) => n === 1) ? 'exactly 1' : 'NOT exactly 1'} provider call per round (${concurrent.callsPerRound.length} rounds)`,
    );
    await cold.client.close();
    for (const client of [fresh1, freshPlain, fresh, uncached1, uncached]) await client.kms.close();
    return { rows, notes };
  } finally {
    await store.close();
    await pipelinedStore.close();
    storeClient.disconnect();
    plainClient.disconnect();
    bare.disconnect();
    barePipelined.disconnect();
    await server.stop();
  }
}

async function diskCases(): Promise<CaseResult[]> {
  const root = mkdtempSync(join(tmpdir(), 'kms-envelope-bench-'));
  try {
    const store = StorageConfig.disk(join(root, 'store'));
    const blob = sampleBlob();
    await store.create(index, blob);
    const bytes = encodeKmsBlob(blob);
    const rawDir = mkdtempSync(join(root, 'raw-'));
    let n = 0;
    const rawDurableReplace = () => {
      const tmp = join(rawDir, `.tmp-${n++}`);
      const fd = openSync(tmp, 'wx', 0o600);
      writeSync(fd, bytes);
      fsyncSync(fd);
      closeSync(fd);
      renameSync(tmp, join(rawDir, 'blob'));
      const dirFd = openSync(rawDir, 'r');
      fsyncSync(dirFd);
      closeSync(dirFd);
    };
    let version = 1;
    return [
      await runCase({
        name: 'disk push vs raw temp/fsync/rename/fsync-dir',
        ours: () => store.push(index, { ...blob, version: ++version }),
        baseline: rawDurableReplace,
        target: { minThroughput: 0.9 },
        batch: 200,
        rounds: 9,
      }),
    ];
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

async function wireCases(): Promise<CaseResult[]> {
  const ctx: KeyContext = { keyid: newKeyId(), key: Dek.generate(), alg: 'A256GCM' };
  const plaintext = 'x'.repeat(64);
  const token = encryptString(plaintext, ctx);
  const key = ctx.key.expose();
  const pt = Buffer.from(plaintext);
  const pool = randomFillSync(Buffer.alloc(12 * 4096));
  let at = 0;
  const rawSeal = () => {
    if (at === pool.length) {
      randomFillSync(pool);
      at = 0;
    }
    at += 12;
    const n = pool.subarray(at - 12, at);
    const c = createCipheriv('aes-256-gcm', key, n);
    const ct = c.update(pt);
    c.final();
    return Buffer.concat([n, ct, c.getAuthTag()]);
  };
  const sealed = rawSeal();
  const rawOpen = () => {
    const d = createDecipheriv('aes-256-gcm', key, sealed.subarray(0, 12));
    d.setAuthTag(sealed.subarray(sealed.length - 16));
    const out = d.update(sealed.subarray(12, sealed.length - 16));
    d.final();
    return out.toString('utf8');
  };
  return [
    await runCase({
      name: 'wire encryptString (64 B) vs raw AES-256-GCM seal',
      ours: () => encryptString(plaintext, ctx),
      baseline: rawSeal,
      target: { maxRatio: 1.1 },
    }),
    await runCase({
      name: 'wire decryptString (64 B) vs raw AES-256-GCM open',
      ours: () => decryptString(token, ctx),
      baseline: rawOpen,
      target: { maxRatio: 1.3 },
    }),
  ];
}

/**
 * A long-lived keyring's cached decrypt (its DEK lookup, with the max-age check that lets it
 * follow invalidations) vs decryptString with the same DEK from a resolver that only awaits.
 */
async function keyringCases(): Promise<CaseResult[]> {
  const client = new KmsEnvelopeClient({
    store: StorageConfig.memory(),
    kms: {
      slots: { dev: { provider: 'local', masterKey: `literal:${randomBytes(32).toString('base64url')}` } },
      secrets: { allowLiteral: true },
    },
  });
  const keyring = await IndexKeyring.createIndex(client, 'bench-keyring', { slot: 'dev' });
  const dek = await keyring.createDek();
  const token = await keyring.encryptValue('x'.repeat(64));
  const resolve = async () => dek;
  const rows = [
    await runCase({
      name: 'keyring decryptValue (64 B, DEK cached) vs decryptString, DEK from an async resolver',
      ours: () => keyring.decryptValue(token),
      baseline: () => decryptString(token, resolve),
      target: { maxRatio: 1.2 },
    }),
  ];
  await client.close();
  return rows;
}

/** rotateKek of 10,000 DEK records: records per second (a throughput figure, no baseline). */
async function rotateThroughput(): Promise<string[]> {
  const lines: string[] = [];
  const master = `literal:${randomBytes(32).toString('base64url')}`;
  const measure = async (label: string, store: EnvelopeStore & RecordStore) => {
    const client = new KmsEnvelopeClient({
      store,
      kms: { slots: { dev: { provider: 'local', masterKey: master } }, secrets: { allowLiteral: true } },
    });
    const keyring = await IndexKeyring.createIndex(client, 'bench-rotate', { slot: 'dev' });
    await keyring.createDeks(10_000);
    const start = process.hrtime.bigint();
    const report = await keyring.rotateKek({ batchSize: 500 });
    const seconds = Number(process.hrtime.bigint() - start) / 1e9;
    lines.push(
      `| rotateKek, ${report.rewrapped} DEK records, ${label} | ${seconds.toFixed(2)} s | ${Math.round(report.rewrapped / seconds)} records/s |`,
    );
  };
  const root = mkdtempSync(join(tmpdir(), 'kms-envelope-bench-rotate-'));
  try {
    await measure('disk (fsync per record, one folder fsync per batch)', StorageConfig.disk(root));
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
  let server: Awaited<ReturnType<typeof startRedisServer>> | undefined;
  try {
    server = await startRedisServer();
  } catch (err) {
    console.warn(`skipping the Redis rotation: ${(err as Error).message}`);
  }
  if (server !== undefined) {
    const store = StorageConfig.redis({ url: server.url });
    try {
      await measure('Redis (one HSET per batch of 500)', store);
    } finally {
      await store.close();
      await server.stop();
    }
  }
  return lines;
}

/** The cached unwrap against an uncached `local` one (memory store, so the KMS side dominates). */
async function unwrapCases(): Promise<{ rows: CaseResult[]; notes: string[] }> {
  const kms = new KmsRegistry({
    slots: { dev: { provider: 'local', masterKey: `literal:${randomBytes(32).toString('base64url')}` } },
    secrets: { allowLiteral: true },
  });
  const result = await unwrapBench({ store: StorageConfig.memory(), kms, slot: 'dev' });
  await kms.close();
  return result;
}

/**
 * 1,000 concurrent cold unwraps where the KMS is a network service: `aws-kms` with the real AWS
 * SDK over HTTP against the fake of kms-envelope/testing on 127.0.0.1 (memory store). One cold
 * unwrap then costs an HTTP round trip, as with any cloud KMS, and single-flight is what keeps
 * 1,000 callers near the cost of one.
 */
async function cloudCases(): Promise<{ rows: CaseResult[]; notes: string[] }> {
  process.env.AWS_EC2_METADATA_DISABLED = 'true';
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';
  const aws = await startFakeAws();
  const { arn } = aws.createKey({ alias: 'alias/bench' });
  const kms = new KmsRegistry({
    slots: {
      cloud: {
        provider: 'aws-kms',
        keyId: arn,
        region: aws.region,
        endpoint: aws.endpoint,
        options: { credentials: { accessKeyId: 'bench', secretAccessKey: 'bench' } },
      },
    },
  });
  const store = StorageConfig.memory();
  const index = 'bench-cloud';
  const cold = await countingClient({ store, kms, slot: 'cloud' });
  try {
    (await cold.client.createIndex(index, { slot: 'cloud' })).zero();
    const copies = await concurrentColdCase(
      '1,000 concurrent cold unwrap(index) vs one cold unwrap, aws-kms over HTTP (fake)',
      cold,
      (client) => client.unwrap(index).then((kek) => kek.zero()),
    );
    const leases = await concurrentColdCase(
      '1,000 concurrent cold withKek(index, fn) vs one cold withKek, aws-kms over HTTP (fake)',
      cold,
      (client) => client.withKek(index, (kek) => kek.length),
    );
    const calls = [...copies.callsPerRound, ...leases.callsPerRound];
    return {
      rows: [copies.row, leases.row],
      notes: [
        `1,000 concurrent cold unwraps with aws-kms over HTTP: ${calls.every((n) => n === 1) ? 'exactly 1' : 'NOT exactly 1'} KMS call per round (${calls.length} rounds); one cold unwrap ${(copies.row.baselineNs / 1e6).toFixed(3)} ms`,
      ],
    };
  } finally {
    await cold.client.close();
    await kms.close();
    await aws.close();
  }
}

// BENCH_ONLY=unwrap,cloud,local,redis,invalidation,postgres,redis-cluster,multi-wrap,codec,wire,keyring,disk,rotate runs only those sections (default: all).
const only = process.env.BENCH_ONLY?.split(',').map((part) => part.trim());
const wanted = (section: string) => only === undefined || only.includes(section);
const none = { rows: [] as CaseResult[], notes: [] as string[] };

const unwrapResults = wanted('unwrap') ? await unwrapCases() : none;
const cloudResults = wanted('cloud') ? await cloudCases() : none;
const localResults = wanted('local') ? await localCases() : [];
const redisResults = wanted('redis') ? await redisCases() : none;
const invalidationResults = wanted('invalidation') ? await invalidationCases() : none;
const postgresResults = wanted('postgres') ? await postgresCases() : none;
const redisClusterResults = wanted('redis-cluster') ? await redisClusterCases() : none;
const multiWrapResults = wanted('multi-wrap') ? await multiWrapCases() : none;
const results = [
  ...unwrapResults.rows,
  ...cloudResults.rows,
  ...localResults,
  ...redisResults.rows,
  ...invalidationResults.rows,
  ...postgresResults.rows,
  ...redisClusterResults.rows,
  ...multiWrapResults.rows,
  ...(wanted('codec') ? await codecCases() : []),
  ...(wanted('wire') ? await wireCases() : []),
  ...(wanted('keyring') ? await keyringCases() : []),
  ...(wanted('disk') ? await diskCases() : []),
];
console.log(
  `kms-envelope benchmarks (node ${process.version}, one process; median of interleaved batches)\n`,
);
console.log(formatTable(results));
console.log('');
for (const note of [
  ...unwrapResults.notes,
  ...cloudResults.notes,
  ...redisResults.notes,
  ...invalidationResults.notes,
  ...postgresResults.notes,
  ...redisClusterResults.notes,
  ...multiWrapResults.notes,
])
  console.log(`- ${note}`);
if (wanted('rotate')) {
  console.log('\n| throughput | time | rate |\n|---|---|---|');
  for (const line of await rotateThroughput()) console.log(line);
}
