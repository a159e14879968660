/**
 * The Redis store over an ioredis Cluster against a bare Cluster `getBuffer` of the same key
 * (same client, same slot, one in flight), and rotateKek records/s on the Cluster. Section
 * `redis-cluster` of `npm run bench` (`BENCH_ONLY=redis-cluster`).
 */
import { randomBytes } from 'node:crypto';
import { type CaseResult, runCase } from '../src/bench/harness.js';
import { ONE_IN_FLIGHT } from '../src/bench/unwrap-bench.js';
import { KmsEnvelopeClient } from '../src/client.js';
import { IndexKeyring } from '../src/keyring/keyring.js';
import { parseIndexName } from '../src/names.js';
import { StorageConfig } from '../src/storage/config.js';
import { startRedisCluster } from '../src/testing/redis-cluster.js';

const KEY_PREFIX = 'bench-cluster:';

/** The section's rows and notes (none when redis-server / redis-cli are missing). */
export async function redisClusterCases(): Promise<{ rows: CaseResult[]; notes: string[] }> {
  let cluster: Awaited<ReturnType<typeof startRedisCluster>>;
  try {
    cluster = await startRedisCluster();
  } catch (err) {
    console.warn(`skipping Redis Cluster cases: ${(err as Error).message}`);
    return { rows: [], notes: [] };
  }
  const { Cluster } = await import('ioredis');
  // One client for both: the store and the bare GET differ by what the store does alone.
  const client = new Cluster([...cluster.startupNodes], { redisOptions: { maxRetriesPerRequest: 1 } });
  client.on('error', () => {});
  const store = StorageConfig.redis({ client, keyPrefix: KEY_PREFIX });
  const master = `literal:${randomBytes(32).toString('base64url')}`;
  const kms = { slots: { dev: { provider: 'local', masterKey: master } }, secrets: { allowLiteral: true } };
  const owner = new KmsEnvelopeClient({ store, kms });
  try {
    const index = parseIndexName('orders');
    (await owner.createIndex(index, { slot: 'dev' })).zero();
    // The envelope's own key: the same bytes, the same slot, the same master.
    const key = store.key(index);
    const get = await runCase({
      name: 'Redis Cluster store get (verified decode) vs a bare Cluster getBuffer of the same key (1 in flight)',
      ours: () => store.get(index),
      baseline: () => client.getBuffer(key),
      target: { maxRatio: 1.1 },
      ...ONE_IN_FLIGHT,
    });
    const keyring = await IndexKeyring.createIndex(owner, 'bench-rotate', { slot: 'dev' });
    await keyring.createDeks(10_000);
    const start = process.hrtime.bigint();
    const report = await keyring.rotateKek({ batchSize: 500 });
    const seconds = Number(process.hrtime.bigint() - start) / 1e9;
    return {
      rows: [get],
      notes: [
        `rotateKek on Redis Cluster (3 masters, 3 replicas): ${report.rewrapped} DEK records in ${seconds.toFixed(2)} s, ${Math.round(report.rewrapped / seconds)} records/s (batches of 500)`,
      ],
    };
  } finally {
    await owner.close();
    client.disconnect();
    await cluster.stop();
  }
}
