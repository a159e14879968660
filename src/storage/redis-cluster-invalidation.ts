/**
 * Cross-instance invalidation over a Redis Cluster. Server-assisted client-side caching is per
 * node: a node reports only the changes made on that node. So this feed tracks every master that
 * holds slots, each with the pair of connections of the single-node feed (a RESP2 subscriber and a
 * tracker with `CLIENT TRACKING on REDIRECT <subscriber> BCAST PREFIX <store prefix>`). `BCAST`
 * tracks by prefix, not by slot: a slot that moves between tracked masters (a reshard) needs
 * nothing, the new owner reports its writes.
 *
 * Topology: the feed reads `CLUSTER SLOTS` every `topologyRefreshMs` (default 1000 ms; every
 * 100 ms while some master's tracking is down) from a node it is connected to, else from the
 * startup nodes, and tracks the masters that hold slots: a promoted replica or a new master is
 * tracked from the next read, a node that no longer holds slots is dropped.
 *
 * Losses: every cached KEK is dropped (`lost`, all entries: the simplest sound choice, since a
 * cache entry does not record its node) when any node's subscriber or tracker connection drops
 * (a killed connection, a dead master), when a tracked node leaves the masters, on a `FLUSHALL`,
 * and when a node's tracking arms after the feed started (a re-armed connection, a promoted
 * replica, a new master): entries loaded while that node was not watched were not covered. So a
 * change made on a master the feed did not watch yet can stay cached at most until that master
 * is tracked (the next topology read plus the arming), and the cache TTL stays the upper bound
 * whatever happens.
 *
 * @module
 */
import { InvalidArgumentError, StoreUnavailableError } from '../errors.js';
import type { InvalidationFeed, InvalidationListener } from '../unwrap/invalidation.js';
import { loadRedis } from './load-redis.js';
import { type FeedConnection, NodeTracking } from './redis-invalidation.js';
import { DEFAULT_KEY_PREFIX, parseKeyPrefix } from './redis-keys.js';

/** One node of the cluster: where to connect. */
export interface RedisClusterFeedNode {
  /** Host name or IP address of the node. */
  readonly host: string;
  /** Its client port (1-65535). */
  readonly port: number;
}

/** Options of {@link redisClusterInvalidationFeed}. */
export interface RedisClusterInvalidationOptions {
  /** Startup nodes (any nodes of the cluster; the masters are found from them). */
  readonly nodes: readonly RedisClusterFeedNode[];
  /** The store's key prefix (default `kms-envelope:`). */
  readonly keyPrefix?: string;
  /** ACL user of every node. */
  readonly username?: string;
  /** Password of every node (never shown in a message). */
  readonly password?: string;
  /** TLS options for every node (as ioredis' `tls`); `true` for the defaults. */
  readonly tls?: true | Record<string, unknown>;
  /** How often the masters are read again, in ms (default 1000, at least 100). */
  readonly topologyRefreshMs?: number;
}

/** Default of {@link RedisClusterInvalidationOptions.topologyRefreshMs}. */
export const DEFAULT_TOPOLOGY_REFRESH_MS = 1000;

/** How often the masters are read while some master's tracking is down. */
const FAST_REFRESH_MS = 100;

/** Bound on one topology read from one node. */
const TOPOLOGY_TIMEOUT_MS = 1000;

const addressOf = (node: RedisClusterFeedNode) => `${node.host}:${node.port}`;

/**
 * A feed of the changes to the envelopes of a Redis store on a Redis Cluster (see the module
 * comment). Pass it as the client's `invalidation` option; `ioredis` is loaded when it starts.
 * The store must read from masters (ioredis' `scaleReads: 'master'`, the default), or a reader
 * that heard a change may still read the old envelope from a lagging replica.
 * @throws InvalidArgumentError for no startup node, a bad host or port, a bad prefix or refresh
 * interval.
 */
export function redisClusterInvalidationFeed(options: RedisClusterInvalidationOptions): InvalidationFeed {
  const nodes = options?.nodes;
  if (!Array.isArray(nodes) || nodes.length === 0) {
    throw new InvalidArgumentError('redisClusterInvalidationFeed needs the startup nodes of the cluster');
  }
  for (const node of nodes) {
    if (
      typeof node?.host !== 'string' ||
      node.host === '' ||
      !Number.isInteger(node.port) ||
      node.port < 1 ||
      node.port > 65535
    ) {
      throw new InvalidArgumentError('every startup node needs a host and a port (1-65535)');
    }
  }
  const refresh = options.topologyRefreshMs ?? DEFAULT_TOPOLOGY_REFRESH_MS;
  if (!Number.isSafeInteger(refresh) || refresh < FAST_REFRESH_MS) {
    throw new InvalidArgumentError(`topologyRefreshMs must be an integer of at least ${FAST_REFRESH_MS}`);
  }
  return new RedisClusterInvalidationFeed(
    options,
    parseKeyPrefix(options.keyPrefix ?? DEFAULT_KEY_PREFIX),
    refresh,
  );
}

/**
 * The masters that hold slots, from a `CLUSTER SLOTS` reply (`[[start, end, [host, port, id…],
 * replicas…]…]`); an empty host means the host the question went to (Redis' rule).
 */
export function mastersOfSlots(reply: unknown, askedHost: string): RedisClusterFeedNode[] {
  if (!Array.isArray(reply)) throw new Error('CLUSTER SLOTS did not answer an array');
  const masters = new Map<string, RedisClusterFeedNode>();
  for (const range of reply) {
    const master = Array.isArray(range) ? range[2] : undefined;
    if (!Array.isArray(master)) throw new Error('CLUSTER SLOTS answered a range without a master');
    const host = master[0] instanceof Buffer ? master[0].toString() : master[0];
    const port = Number(master[1]);
    if (typeof host !== 'string' || !Number.isInteger(port) || port < 1 || port > 65535)
      throw new Error('CLUSTER SLOTS answered a master without a host and port');
    const node = { host: host === '' || host === '?' ? askedHost : host, port };
    masters.set(addressOf(node), node);
  }
  return [...masters.values()];
}

class RedisClusterInvalidationFeed implements InvalidationFeed {
  readonly #seeds: readonly RedisClusterFeedNode[];
  readonly #prefix: string;
  readonly #refreshMs: number;
  readonly #auth: Record<string, unknown>;
  /** Tracking per master, by `host:port`. */
  readonly #nodes = new Map<string, { node: RedisClusterFeedNode; tracking: NodeTracking }>();
  #Redis: Awaited<ReturnType<typeof loadRedis>> | undefined;
  #listener: InvalidationListener | undefined;
  #settled = false;
  #closed = false;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #refreshing = false;

  constructor(options: RedisClusterInvalidationOptions, prefix: string, refreshMs: number) {
    this.#seeds = options.nodes.map(({ host, port }) => ({ host, port }));
    this.#prefix = prefix;
    this.#refreshMs = refreshMs;
    this.#auth = {
      ...(options.username === undefined ? {} : { username: options.username }),
      ...(options.password === undefined ? {} : { password: options.password }),
      ...(options.tls === undefined ? {} : { tls: options.tls === true ? {} : options.tls }),
    };
  }

  async start(listener: InvalidationListener): Promise<void> {
    this.#listener = listener;
    this.#Redis = await loadRedis();
    try {
      const masters = await this.#readMasters();
      if (this.#closed) throw new InvalidArgumentError('the invalidation feed was closed before it started');
      await Promise.all(masters.map((node) => this.#track(node)));
    } finally {
      this.#settled = true;
      // Also after a failed start: the feed keeps trying, and reports `lost` when a node arms.
      this.#schedule();
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#timer);
    for (const { tracking } of this.#nodes.values()) tracking.close();
    this.#nodes.clear();
  }

  /** Starts tracking `node`; resolves once armed. */
  #track(node: RedisClusterFeedNode): Promise<void> {
    const Redis = this.#Redis!;
    const auth = this.#auth;
    const tracking = new NodeTracking(
      (options) =>
        new Redis({ ...options, ...auth, host: node.host, port: node.port }) as unknown as FeedConnection,
      this.#prefix,
      this.#listener!,
      () => this.#settled,
      `node ${addressOf(node)}`,
    );
    this.#nodes.set(addressOf(node), { node, tracking });
    return tracking.start();
  }

  #schedule(): void {
    if (this.#closed) return;
    const allArmed = [...this.#nodes.values()].every(({ tracking }) => tracking.armed);
    const delay = allArmed && this.#nodes.size > 0 ? this.#refreshMs : FAST_REFRESH_MS;
    this.#timer = setTimeout(() => void this.#refresh(), delay);
    this.#timer.unref?.();
  }

  /** Reads the masters again and tracks exactly those. A failed read changes nothing. */
  async #refresh(): Promise<void> {
    if (this.#closed || this.#refreshing) return;
    this.#refreshing = true;
    try {
      const masters = await this.#readMasters();
      if (this.#closed) return;
      const wanted = new Set(masters.map(addressOf));
      for (const [address, { tracking }] of this.#nodes) {
        if (wanted.has(address)) continue;
        const wasArmed = tracking.armed;
        tracking.close();
        this.#nodes.delete(address);
        // Its slots are served elsewhere now: what that node did not report is not known.
        if (wasArmed) this.#listener?.lost(`node ${address} no longer serves slots`);
      }
      for (const node of masters) {
        if (!this.#nodes.has(addressOf(node))) this.#track(node).catch(() => {}); // retried by ioredis
      }
    } catch {
      // No node answered: nothing is known to have changed; try again soon.
    } finally {
      this.#refreshing = false;
      this.#schedule();
    }
  }

  /**
   * The masters holding slots, asked of a tracked node whose connection is up (starting at a random
   * one), else of each
   * startup node and last-known master in turn (a short-lived connection).
   * @throws StoreUnavailableError when no node answers.
   */
  async #readMasters(): Promise<RedisClusterFeedNode[]> {
    // From a different node each time, so one node's stale view (a partitioned old master) does
    // not hide a failover for long.
    const tracked = [...this.#nodes.values()];
    const first = Math.floor(Math.random() * tracked.length);
    for (const { node, tracking } of [...tracked.slice(first), ...tracked.slice(0, first)]) {
      const reply = tracking.query('CLUSTER', 'SLOTS');
      if (reply === undefined) continue;
      try {
        return mastersOfSlots(await withTimeout(reply), node.host);
      } catch {
        // try the next node
      }
    }
    const candidates = new Map<string, RedisClusterFeedNode>();
    for (const node of [...this.#seeds, ...[...this.#nodes.values()].map((entry) => entry.node)])
      candidates.set(addressOf(node), node);
    for (const node of candidates.values()) {
      if (this.#closed) break;
      const connection = new this.#Redis!({
        ...this.#auth,
        host: node.host,
        port: node.port,
        lazyConnect: true,
        connectTimeout: TOPOLOGY_TIMEOUT_MS,
        commandTimeout: TOPOLOGY_TIMEOUT_MS,
        maxRetriesPerRequest: 0,
        retryStrategy: () => null,
      });
      connection.on('error', () => {});
      try {
        await connection.connect();
        return mastersOfSlots(await connection.call('CLUSTER', 'SLOTS'), node.host);
      } catch {
        // try the next node
      } finally {
        connection.disconnect();
      }
    }
    throw new StoreUnavailableError('no node of the Redis Cluster answered CLUSTER SLOTS');
  }
}

/** `reply`, or a rejection after the topology timeout (a hung node must not stall the refresh). */
function withTimeout<T>(reply: Promise<T>): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error('CLUSTER SLOTS timed out')), TOPOLOGY_TIMEOUT_MS);
  });
  return Promise.race([reply, timeout]).finally(() => clearTimeout(timer));
}
