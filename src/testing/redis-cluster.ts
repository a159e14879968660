import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, redisCommand, redisServerAvailable } from './redis-server.js';

/** One node of a {@link RedisClusterHandle}. */
export interface RedisClusterNode {
  /** Always the loopback address. */
  readonly host: '127.0.0.1';
  /** The node's client port. */
  readonly port: number;
  /** The node's process id (for tests that kill or pause one node). */
  readonly pid: number;
}

/** A Redis Cluster started for tests: masters and replicas of `redis-server` on 127.0.0.1. */
export interface RedisClusterHandle {
  /** Every node, in the order they were started (`redis-cli --cluster create` picks the masters). */
  readonly nodes: readonly RedisClusterNode[];
  /** `{ host, port }` of every node, for `new Cluster(startupNodes)` of ioredis. */
  readonly startupNodes: readonly {
    /** `127.0.0.1`. */
    host: string;
    /** The node's client port. */
    port: number;
  }[];
  /** Stops every node (SIGTERM, SIGKILL after 5 s) by its PID and removes their folders. Idempotent. */
  stop(): Promise<void>;
}

/** Options of {@link startRedisCluster}. */
export interface RedisClusterOptions {
  /** Number of masters (default 3). */
  readonly masters?: number;
  /** Replicas per master (default 1): six nodes by default. */
  readonly replicasPerMaster?: number;
  /** `redis-server` binary (default on the PATH). */
  readonly serverBinary?: string;
  /** `redis-cli` binary (default on the PATH). */
  readonly cliBinary?: string;
  /** How long to wait for the cluster to be up (default 30 s). */
  readonly startTimeoutMs?: number;
}

/** True when both `redis-server` and `redis-cli` can be run. */
export function redisClusterAvailable(serverBinary = 'redis-server', cliBinary = 'redis-cli'): boolean {
  if (!redisServerAvailable(serverBinary)) return false;
  const probe = spawnSync(cliBinary, ['--version'], { stdio: 'ignore' });
  return probe.error === undefined && probe.status === 0;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Starts a Redis Cluster for tests: `masters × (1 + replicasPerMaster)` `redis-server
 * --cluster-enabled yes` processes on free loopback ports (client and cluster-bus port both
 * picked free), each in its own temporary folder with persistence off, joined by `redis-cli
 * --cluster create … --cluster-replicas n --cluster-yes`, and waits until every node reports
 * `cluster_state:ok`. For tests: `kms-envelope/testing`, beside {@link startRedisServer}.
 * @throws Error naming how to install redis-server / redis-cli when missing, or when the cluster
 * does not come up in time (every node started is stopped first).
 */
export async function startRedisCluster(options: RedisClusterOptions = {}): Promise<RedisClusterHandle> {
  const serverBinary = options.serverBinary ?? 'redis-server';
  const cliBinary = options.cliBinary ?? 'redis-cli';
  if (!redisClusterAvailable(serverBinary, cliBinary)) {
    throw new Error(
      `${serverBinary} and ${cliBinary} are needed for a Redis Cluster (Debian: apt-get install redis-server, which ships both)`,
    );
  }
  const masters = options.masters ?? 3;
  const replicas = options.replicasPerMaster ?? 1;
  const count = masters * (1 + replicas);
  const deadline = Date.now() + (options.startTimeoutMs ?? 30_000);
  const children: ChildProcess[] = [];
  const dirs: string[] = [];
  const nodes: RedisClusterNode[] = [];

  const stop = async () => {
    const running = children.splice(0);
    await Promise.all(
      running.map(
        (child) =>
          new Promise<void>((resolve) => {
            if (child.exitCode !== null || child.signalCode !== null) return resolve();
            const force = setTimeout(() => child.kill('SIGKILL'), 5000);
            child.once('exit', () => {
              clearTimeout(force);
              resolve();
            });
            child.kill('SIGTERM');
          }),
      ),
    );
    for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  };

  try {
    const taken = new Set<number>();
    const pick = async () => {
      for (;;) {
        const port = await freePort();
        if (!taken.has(port)) {
          taken.add(port);
          return port;
        }
      }
    };
    for (let i = 0; i < count; i++) {
      const port = await pick();
      const busPort = await pick();
      const dir = mkdtempSync(join(tmpdir(), `kms-envelope-redis-cluster-${port}-`));
      dirs.push(dir);
      const child = spawn(
        serverBinary,
        [
          '--port',
          String(port),
          '--bind',
          '127.0.0.1',
          '--cluster-enabled',
          'yes',
          '--cluster-port',
          String(busPort),
          '--cluster-config-file',
          join(dir, `nodes-${port}.conf`),
          '--cluster-node-timeout',
          '2000',
          '--save',
          '',
          '--appendonly',
          'no',
          '--repl-diskless-sync-delay',
          '0',
          '--dir',
          dir,
          '--loglevel',
          'warning',
        ],
        { stdio: ['ignore', 'ignore', 'ignore'] },
      );
      children.push(child);
      if (child.pid === undefined) throw new Error(`${serverBinary} could not be started`);
      nodes.push({ host: '127.0.0.1', port, pid: child.pid });
    }
    for (const node of nodes) {
      while (!(await redisCommand(node.port, 'PING')).startsWith('+PONG')) {
        if (Date.now() > deadline) throw new Error(`redis-server on port ${node.port} did not answer PING`);
        await sleep(10);
      }
    }
    const create = spawnSync(
      cliBinary,
      [
        '--cluster',
        'create',
        ...nodes.map((n) => `127.0.0.1:${n.port}`),
        '--cluster-replicas',
        String(replicas),
        '--cluster-yes',
      ],
      { encoding: 'utf8', timeout: Math.max(1000, deadline - Date.now()) },
    );
    if (create.status !== 0) {
      throw new Error(
        `redis-cli --cluster create failed: ${(create.stdout + create.stderr).trim().slice(-400)}`,
      );
    }
    for (const node of nodes) {
      while (!/cluster_state:ok/.test(await redisCommand(node.port, 'CLUSTER INFO'))) {
        if (Date.now() > deadline) throw new Error(`the cluster node on port ${node.port} is not ok in time`);
        await sleep(50);
      }
    }
    // Replicas must be linked before a test's WAIT can count them.
    for (const node of nodes) {
      for (;;) {
        const info = await redisCommand(node.port, 'INFO replication');
        if (/role:master/.test(info) || /master_link_status:up/.test(info)) break;
        if (Date.now() > deadline) throw new Error(`the replica on port ${node.port} did not sync in time`);
        await sleep(50);
      }
    }
  } catch (err) {
    await stop();
    throw err;
  }
  return {
    nodes,
    startupNodes: nodes.map(({ host, port }) => ({ host, port })),
    stop,
  };
}

/**
 * ioredis `Cluster` options for a test that kills a master: each command bounded (1 s), one
 * retry, slot-map refreshes and reconnects every 200 ms, so a client rides out a failover of
 * {@link startRedisCluster}'s nodes (node timeout 2 s) and recovers without being made again.
 * A plain object (`new Cluster(handle.startupNodes, failoverClusterOptions())`): it names no
 * ioredis type.
 */
export function failoverClusterOptions() {
  return {
    /** Options of each node's connection. */
    redisOptions: {
      /** One retry of a command on a broken connection. */
      maxRetriesPerRequest: 1,
      /** Each command is bounded to 1 s. */
      commandTimeout: 1000,
    },
    /** Reconnect to the cluster every 200 ms, forever. */
    clusterRetryStrategy: () => 200,
    /** Wait 200 ms before a command redirected by a failover is sent again. */
    retryDelayOnFailover: 200,
    /** Wait 200 ms before retrying while the cluster reports it is down. */
    retryDelayOnClusterDown: 200,
    /** A slot-map refresh gives up after 1 s. */
    slotsRefreshTimeout: 1000,
  };
}
