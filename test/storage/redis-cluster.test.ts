import { spawn } from 'node:child_process';
import { Cluster } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeKmsBlob } from '../../src/envelope/codec.js';
import { StoreUnavailableError } from '../../src/errors.js';
import { type IndexName, parseIndexName } from '../../src/names.js';
import { RedisStore, ReplicasNotConfirmedError } from '../../src/storage/redis.js';
import {
  failoverClusterOptions,
  type RedisClusterHandle,
  redisClusterAvailable,
  startRedisCluster,
} from '../../src/testing/redis-cluster.js';
import { sampleBlob } from '../helpers/blobs.js';
import { serviceAvailable } from '../helpers/services.js';
import { runStoreConformance } from './conformance.js';
import { runRedisProcessRaces } from './redis-processes.js';

const available = serviceAvailable(
  'redis-server and redis-cli (for a Redis Cluster)',
  redisClusterAvailable(),
  'apt-get install redis-server (Debian; it ships redis-cli), or put both on the PATH',
);

it('the cluster harness names how to install a missing binary', async () => {
  await expect(startRedisCluster({ cliBinary: '/nonexistent/redis-cli' })).rejects.toThrow(
    /apt-get install redis-server/,
  );
});

describe.skipIf(!available)(
  'Redis store over an ioredis Cluster (3 masters, 3 replicas, started by the harness)',
  () => {
    let cluster: RedisClusterHandle;
    const clients: Cluster[] = [];
    const connect = () => {
      const client = new Cluster([...cluster.startupNodes], { redisOptions: { maxRetriesPerRequest: 1 } });
      client.on('error', () => {});
      clients.push(client);
      return client;
    };
    let prefixCounter = 0;
    beforeAll(async () => {
      cluster = await startRedisCluster();
    }, 60_000);
    afterAll(async () => {
      for (const client of clients) client.disconnect();
      await cluster?.stop();
    });

    runStoreConformance('redis cluster', async () => {
      const keyPrefix = `c${prefixCounter++}:`;
      const own = connect();
      const store = new RedisStore({ client: own, keyPrefix });
      const extra: Cluster[] = [];
      return {
        store,
        another: async () => {
          const client = connect();
          extra.push(client);
          return new RedisStore({ client, keyPrefix });
        },
        corrupt: async (index) => {
          await own.set(`${keyPrefix}{${index}}:kmsblob`, Buffer.from('junk that is not an envelope'));
        },
        cleanup: async () => {
          await store.close();
          for (const client of [own, ...extra]) client.disconnect();
        },
      };
    });

    runRedisProcessRaces(
      () => ({ nodes: cluster.startupNodes }),
      (keyPrefix) => new RedisStore({ client: connect(), keyPrefix }),
    );

    it('every key of one index is in the slot of {<index>}, and indexes spread over the masters', async () => {
      const client = connect();
      const store = new RedisStore({ client, keyPrefix: 'slots:' });
      const slotOf = async (key: string) => Number(await client.call('CLUSTER', 'KEYSLOT', key));
      const masters = new Set<string>();
      for (const name of ['orders', 'users', 'a.b', 'x-1', 'q_9', 'zz']) {
        const index = parseIndexName(name);
        await store.create(index, sampleBlob(index));
        await store.putRecord(index, 'dek', 'd', new Uint8Array([1]));
        await store.putRecord(index, 'meta', 'm', new Uint8Array([2]));
        const slots = await Promise.all(
          [store.key(index), store.recordsKey(index, 'dek'), store.recordsKey(index, 'meta')].map(slotOf),
        );
        expect(new Set(slots)).toEqual(new Set([await slotOf(name)]));
        const node = client.slots[slots[0]!]?.[0];
        if (node) masters.add(node);
      }
      expect(masters.size).toBeGreaterThan(1);
      await store.close();
    });

    it('waitReplicas: 1 over the cluster: the WAIT goes to the key’s own master (every master has a replica)', async () => {
      const store = new RedisStore({
        client: connect(),
        keyPrefix: 'wait:',
        waitReplicas: 1,
        waitTimeoutMs: 10_000,
      });
      for (const name of ['orders', 'users', 'zz']) {
        const index = parseIndexName(name);
        await store.create(index, sampleBlob(index));
        await store.push(index, sampleBlob(index, { version: 2 }), { expectedVersion: 1 });
        await store.putRecord(index, 'dek', 'd', new Uint8Array([1]));
        await store.delete(index);
      }
      await store.close();
    });

    it('migrate-store over the cluster scans every master', async () => {
      const client = connect();
      const names = ['orders', 'users', 'a.b', 'x-1', 'q_9', 'zz'];
      for (const name of names) {
        await client.set(`old:${name}:kmsblob`, Buffer.from(encodeKmsBlob(sampleBlob(name))));
        await client.hset(`old:${name}:dek`, 'k', 'v');
      }
      const store = new RedisStore({ client, keyPrefix: 'old:' });
      const report = await store.migrateLegacyLayout();
      expect(report).toMatchObject({ complete: true, found: 6, records: 6, problems: [] });
      expect([...report.migrated].sort()).toEqual([...names].sort());
      for (const name of names) expect((await store.get(parseIndexName(name))).indexName).toBe(name);
      expect(await store.migrateLegacyLayout()).toMatchObject({ found: 0, migrated: [] });
      await store.close();
    });

    it('MOVED and ASK during a slot migration (redis-cli --cluster reshard mid-traffic): no update lost, failures typed', async () => {
      const client = connect();
      const store = new RedisStore({ client, keyPrefix: 'reshard:' });
      await client.call('CLUSTER', 'SLOTS'); // connected, slot map loaded
      const masters = client.nodes('master').map((node) => node.options.port!);
      // redis-cli moves the source's lowest slots first: 30 indexes in the 300 that move, 10 elsewhere.
      const source = `127.0.0.1:${masters[0]}`;
      const moving = new Set<number>();
      for (let slot = 0; slot < 16384 && moving.size < 300; slot++)
        if (client.slots[slot]?.[0] === source) moving.add(slot);
      const slotOf = async (name: string) => Number(await client.call('CLUSTER', 'KEYSLOT', name));
      const inside: IndexName[] = [];
      const outside: IndexName[] = [];
      for (let i = 0; inside.length < 30 || outside.length < 10; i++) {
        const name = parseIndexName(`ix-${i}`);
        const list = moving.has(await slotOf(name)) ? inside : outside;
        if (list.length < (list === inside ? 30 : 10)) list.push(name);
      }
      const names = [...inside, ...outside];
      for (const name of names) await store.create(name, sampleBlob(name));
      // The owner as the reshard's source node says it (CLUSTER SLOTS; it took part in every
      // move), not as the client's cached slot map, which learns of a move only when a command
      // to that slot is redirected, nor as a third node, which learns it by gossip.
      const sourceNode = () => client.nodes('master').find((n) => n.options.port === masters[0])!;
      const ownersNow = async () => {
        const ranges = (await sourceNode().call('CLUSTER', 'SLOTS')) as [number, number, [string, number]][];
        return (slot: number) => {
          const range = ranges.find(([start, end]) => slot >= start && slot <= end)!;
          return `${range[2][0]}:${range[2][1]}`;
        };
      };
      const owners = async () => {
        const ownerOf = await ownersNow();
        return Promise.all(names.map(async (name) => ownerOf(await slotOf(name))));
      };
      const before = await owners();
      const ids = await Promise.all(
        masters.map(async (port) =>
          String(
            await client
              .nodes('master')
              .find((n) => n.options.port === port)!
              .call('CLUSTER', 'MYID'),
          ),
        ),
      );
      const reshard = new Promise<number | null>((resolve) => {
        const child = spawn(
          'redis-cli',
          [
            '--cluster',
            'reshard',
            `127.0.0.1:${masters[0]}`,
            '--cluster-from',
            ids[0]!,
            '--cluster-to',
            ids[1]!,
            '--cluster-slots',
            '300',
            '--cluster-yes',
          ],
          { stdio: 'ignore' },
        );
        child.once('exit', resolve);
      });
      let running = true;
      const successes = new Map<string, number>();
      const ambiguous = new Map<string, number>();
      const failures: unknown[] = [];
      const worker = async (name: IndexName) => {
        while (running) {
          try {
            const current = await store.get(name);
            await store.push(
              name,
              { ...current, version: current.version + 1 },
              { expectedVersion: current.version },
            );
            successes.set(name, (successes.get(name) ?? 0) + 1);
          } catch (err) {
            failures.push(err);
            if (err instanceof StoreUnavailableError) ambiguous.set(name, (ambiguous.get(name) ?? 0) + 1);
          }
        }
      };
      const workers = names.map(worker);
      expect(await reshard).toBe(0);
      running = false;
      await Promise.all(workers);
      const after = await owners();
      expect(after.filter((node, i) => node !== before[i]).length).toBe(inside.length); // exactly those moved
      for (const err of failures) expect(err).toBeInstanceOf(StoreUnavailableError);
      for (const name of names) {
        const version = (await store.get(name)).version;
        const done = 1 + (successes.get(name) ?? 0);
        expect(version).toBeGreaterThanOrEqual(done);
        expect(version).toBeLessThanOrEqual(done + (ambiguous.get(name) ?? 0));
      }
      expect([...successes.values()].reduce((a, b) => a + b, 0)).toBeGreaterThan(names.length);
      await store.close();
    }, 120_000);

    // Last: it changes the cluster (one master is killed and its replica takes over).
    it('a master killed: its replica takes over, every failure meanwhile is a typed StoreUnavailableError bounded in time, no acknowledged waitReplicas write is lost, and the same client recovers', async () => {
      const client = new Cluster([...cluster.startupNodes], failoverClusterOptions());
      client.on('error', () => {});
      clients.push(client);
      const durable = new RedisStore({ client, keyPrefix: 'failover:', waitReplicas: 1, waitTimeoutMs: 500 });
      const index = parseIndexName('orders');
      await durable.create(index, sampleBlob(index));
      for (let version = 1; version < 5; version++) {
        const current = await durable.get(index);
        await durable.push(index, { ...current, version: version + 1 }, { expectedVersion: version });
      }
      // Version 5 is acknowledged by the replica: it must survive the failover.
      const slot = Number(await client.call('CLUSTER', 'KEYSLOT', durable.key(index)));
      const master = client.slots[slot]![0]!;
      const victim = cluster.nodes.find((node) => `${node.host}:${node.port}` === master)!;
      process.kill(victim.pid, 'SIGKILL');

      const failures: unknown[] = [];
      let version: number | undefined;
      const deadline = Date.now() + 30_000;
      while (Date.now() < deadline && version === undefined) {
        const started = Date.now();
        try {
          version = (await durable.get(index)).version;
        } catch (err) {
          failures.push(err);
          await new Promise((r) => setTimeout(r, 100));
        }
        expect(Date.now() - started).toBeLessThan(8000);
      }
      expect(version).toBe(5);
      expect(failures.length).toBeGreaterThan(0); // the outage was seen, not slept through
      for (const err of failures) expect(err).toBeInstanceOf(StoreUnavailableError);
      // The promoted master has no replica left: a durable write says so (and was applied).
      const current = await durable.get(index);
      const err = await durable
        .push(
          index,
          { ...current, version: 6 },
          { expectedVersion: 5, expectedCreationId: current.creationId! },
        )
        .catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ReplicasNotConfirmedError);
      expect((await durable.get(index)).version).toBe(6);
      // The same client, without waitReplicas, writes as before.
      const plain = new RedisStore({ client, keyPrefix: 'failover:' });
      await plain.push(index, { ...current, version: 7 }, { expectedVersion: 6 });
      expect((await plain.get(index)).version).toBe(7);
    }, 60_000);
  },
);
