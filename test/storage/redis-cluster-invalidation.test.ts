/**
 * Cross-instance invalidation over a real Redis Cluster (3 masters, 3 replicas, started by the
 * harness): every master is tracked, a lost subscription on any node flushes the cache, and a
 * master killed with its replica promoted is tracked again (with a flush at the loss and at the
 * re-attachment).
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { Cluster, Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KmsEnvelopeClient } from '../../src/client.js';
import { EnvelopeNotFoundError, InvalidArgumentError } from '../../src/errors.js';
import { StorageConfig } from '../../src/storage/config.js';
import {
  mastersOfSlots,
  redisClusterInvalidationFeed,
} from '../../src/storage/redis-cluster-invalidation.js';
import {
  failoverClusterOptions,
  type RedisClusterHandle,
  redisClusterAvailable,
  startRedisCluster,
} from '../../src/testing/redis-cluster.js';
import { deliversAgain, evictions, recordingLosses } from '../helpers/invalidation.js';
import { serviceAvailable } from '../helpers/services.js';

it('the cluster feed checks its options, and reads the masters out of CLUSTER SLOTS', () => {
  expect(() => redisClusterInvalidationFeed({ nodes: [] })).toThrow(InvalidArgumentError);
  expect(() => redisClusterInvalidationFeed({ nodes: [{ host: '127.0.0.1', port: 0 }] })).toThrow(
    InvalidArgumentError,
  );
  expect(() =>
    redisClusterInvalidationFeed({ nodes: [{ host: '127.0.0.1', port: 7000 }], keyPrefix: 'a}' }),
  ).toThrow(InvalidArgumentError);
  expect(() =>
    redisClusterInvalidationFeed({ nodes: [{ host: '127.0.0.1', port: 7000 }], topologyRefreshMs: 5 }),
  ).toThrow(InvalidArgumentError);
  const reply = [
    [0, 5460, ['10.0.0.1', 7000, 'a'], ['10.0.0.4', 7003, 'd']],
    [5461, 10922, ['', 7001, 'b']],
    [10923, 12000, ['10.0.0.1', 7000, 'a']],
    [12001, 16383, ['10.0.0.3', 7002, 'c']],
  ];
  // One entry per master (not per range); an empty host is the host that was asked.
  expect(mastersOfSlots(reply, '10.0.0.9')).toEqual([
    { host: '10.0.0.1', port: 7000 },
    { host: '10.0.0.9', port: 7001 },
    { host: '10.0.0.3', port: 7002 },
  ]);
  expect(() => mastersOfSlots('ERR', 'h')).toThrow();
  expect(() => mastersOfSlots([[0, 1, ['h', 'x']]], 'h')).toThrow();
});

const available = serviceAvailable(
  'redis-server and redis-cli (for a Redis Cluster)',
  redisClusterAvailable(),
  'apt-get install redis-server (Debian; it ships redis-cli), or put both on the PATH',
);

describe.skipIf(!available)('invalidation feed over a real Redis Cluster', () => {
  let cluster: RedisClusterHandle;
  const connections: (Cluster | Redis)[] = [];
  const clients: KmsEnvelopeClient[] = [];
  const master = `literal:${randomBytes(32).toString('base64url')}`;
  const kms = {
    slots: { dev: { provider: 'local', masterKey: master, keyId: 'k' } },
    secrets: { allowLiteral: true },
  };

  /** A store client that rides out a failover (as in the store's own failover test). */
  const connect = () => {
    const client = new Cluster([...cluster.startupNodes], failoverClusterOptions());
    client.on('error', () => {});
    connections.push(client);
    return client;
  };

  beforeAll(async () => {
    cluster = await startRedisCluster();
  }, 60_000);
  afterAll(async () => {
    for (const client of clients) await client.close().catch(() => {});
    for (const connection of connections) connection.disconnect();
    await cluster?.stop();
  });

  /** The master (`host:port`) serving `key` now, asked of the cluster. */
  async function masterOf(probe: Cluster, key: string): Promise<string> {
    const slot = Number(await probe.call('CLUSTER', 'KEYSLOT', key));
    const ranges = (await probe.call('CLUSTER', 'SLOTS')) as [number, number, [string, number]][];
    const range = ranges.find(([start, end]) => slot >= start && slot <= end)!;
    return `${range[2][0]}:${range[2][1]}`;
  }

  /**
   * A writer and a listening reader over one Cluster store under `keyPrefix`, and one index on
   * each master (created by the writer before the reader listens).
   */
  async function fleet(keyPrefix: string) {
    const probe = connect();
    const byMaster = new Map<string, string>();
    for (let i = 0; byMaster.size < 3; i++) {
      const owner = await masterOf(probe, `${keyPrefix}{ix-${i}}:kmsblob`);
      if (!byMaster.has(owner)) byMaster.set(owner, `ix-${i}`);
    }
    // Created on the replicas too (a master killed later must not take them along), then
    // written by a plain writer (the promoted master has no replica left to wait for).
    const creator = new KmsEnvelopeClient({
      store: StorageConfig.redis({ client: connect(), keyPrefix, waitReplicas: 1, waitTimeoutMs: 5000 }),
      kms,
    });
    clients.push(creator);
    for (const index of byMaster.values()) (await creator.createIndex(index, { slot: 'dev' })).zero();
    const writer = new KmsEnvelopeClient({
      store: StorageConfig.redis({ client: connect(), keyPrefix }),
      kms,
    });
    clients.push(writer);
    const { feed, lost } = recordingLosses(
      redisClusterInvalidationFeed({ nodes: cluster.startupNodes, keyPrefix, topologyRefreshMs: 200 }),
    );
    const reader = new KmsEnvelopeClient({
      store: StorageConfig.redis({ client: connect(), keyPrefix }),
      kms,
      cache: { ttlMs: 600_000 },
      invalidation: feed,
    });
    clients.push(reader);
    await reader.invalidationReady();
    const indexes = [...byMaster.entries()].map(([owner, index]) => ({ owner, index }));
    return { writer, reader, indexes, lost, probe };
  }

  async function cacheAll(reader: KmsEnvelopeClient, indexes: { index: string }[]) {
    for (const { index } of indexes) (await reader.unwrap(index)).zero();
    const hits = reader.stats().cacheHits;
    for (const { index } of indexes) (await reader.unwrap(index)).zero();
    expect(reader.stats().cacheHits).toBe(hits + indexes.length); // cached: no store read
  }

  it('a rotation through one client evicts the index from another client’s cache, on every master', async () => {
    const { writer, reader, indexes, lost } = await fleet('cinv-a:');
    await cacheAll(reader, indexes);
    for (const [i, { index }] of indexes.entries()) {
      await evictions(reader, 1, () => writer.rotate(index));
      // Only that index went: the others (on other masters) are still cached.
      const hits = reader.stats().cacheHits;
      for (const other of indexes.slice(i + 1)) (await reader.unwrap(other.index)).zero();
      expect(reader.stats().cacheHits).toBe(hits + indexes.length - i - 1);
      expect((await reader.getEnvelope(index)).version).toBe(2);
    }
    expect(lost).toEqual([]); // nothing dropped: no flush was needed
  });

  it('a delete by another process (redis-cli) is never served from the cache afterwards', async () => {
    const { reader, indexes, probe } = await fleet('cinv-b:');
    await cacheAll(reader, indexes);
    for (const { index } of indexes) {
      const key = `cinv-b:{${index}}:kmsblob`;
      const [host, port] = (await masterOf(probe, key)).split(':');
      await evictions(reader, 1, async () => {
        const cli = spawnSync('redis-cli', ['-h', host!, '-p', port!, 'DEL', key], { encoding: 'utf8' });
        expect(cli.stdout.trim()).toBe('1');
      });
      await expect(reader.unwrap(index)).rejects.toThrow(EnvelopeNotFoundError);
    }
  });

  it('a subscriber connection killed on one node flushes every cached KEK, and that node delivers again', async () => {
    const { writer, reader, indexes, lost } = await fleet('cinv-c:');
    await cacheAll(reader, indexes);
    const [host, port] = indexes[0]!.owner.split(':');
    const node = new Redis({ host: host!, port: Number(port) });
    node.on('error', () => {});
    connections.push(node);
    // Only that node's subscriber: the other nodes keep delivering, yet everything goes.
    await evictions(reader, indexes.length, () => node.call('CLIENT', 'KILL', 'TYPE', 'pubsub'));
    expect(lost.some((reason) => reason.includes(indexes[0]!.owner))).toBe(true);
    expect(await deliversAgain(reader, writer, indexes[0]!.index, 5000)).toBe(true);
    for (const { index } of indexes.slice(1))
      expect(await deliversAgain(reader, writer, index, 5000)).toBe(true);
  });

  // Last: it changes the cluster (one master is killed and its replica takes over).
  it('a master killed: the loss flushes, the promoted replica is tracked (another flush), and invalidations flow again', async () => {
    const { writer, reader, indexes, lost, probe } = await fleet('cinv-d:');
    await cacheAll(reader, indexes);
    const victim = indexes[0]!;
    const victimNode = cluster.nodes.find((n) => `${n.host}:${n.port}` === victim.owner)!;
    const lostBefore = lost.length;
    await evictions(reader, indexes.length, async () => process.kill(victimNode.pid, 'SIGKILL'));
    expect(lost.slice(lostBefore).some((reason) => reason.includes(victim.owner))).toBe(true);

    // The replica takes over (cluster-node-timeout 2 s); the feed tracks it and delivers again.
    expect(await deliversAgain(reader, writer, victim.index, 30_000, true)).toBe(true);
    let promoted: string | undefined;
    for (let i = 0; i < 50 && promoted === undefined; i++) {
      try {
        promoted = await masterOf(probe, `cinv-d:{${victim.index}}:kmsblob`);
      } catch (err) {
        expect(err).toBeInstanceOf(Error);
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    expect(promoted).toBeDefined();
    expect(promoted).not.toBe(victim.owner);
    // The new master's arming was itself a flush (entries loaded while it was not watched).
    expect(lost.some((reason) => reason.includes('armed') && reason.includes(promoted!))).toBe(true);
    // Every master, the promoted one included, reports a rotation again.
    for (const { index } of indexes)
      expect(await deliversAgain(reader, writer, index, 10_000, true)).toBe(true);
    // A delete on the promoted master is not served from the cache.
    (await reader.unwrap(victim.index)).zero();
    await evictions(reader, 1, () => writer.delete(victim.index));
    await expect(reader.unwrap(victim.index)).rejects.toThrow(EnvelopeNotFoundError);
  }, 60_000);
});
