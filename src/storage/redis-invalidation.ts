/**
 * Cross-instance invalidation over Redis, by server-assisted client-side caching: the server
 * itself reports every change to a key under the store's prefix (`CLIENT TRACKING … BCAST PREFIX`),
 * whoever made it (another instance, an operator, `redis-cli`), so no writer has to publish
 * anything and a write through any client is seen.
 *
 * Two connections of its own: a subscriber (RESP2, subscribed to `__redis__:invalidate`) and a
 * tracker that turns tracking on with `REDIRECT <subscriber id>`. Whenever either connection
 * drops, the feed reports `lost` (the client drops every cached KEK: a change made while nobody
 * listened must not leave a revoked KEK cached), re-arms when both are back, and reports `lost`
 * once more (entries loaded meanwhile were not covered). A `FLUSHALL`/`FLUSHDB` arrives as a
 * `null` message: `lost` as well.
 *
 * Single Redis servers (and a primary with replicas). On a Redis Cluster, tracking is per node:
 * use `redisClusterInvalidationFeed` (./redis-cluster-invalidation.ts), which tracks every master.
 *
 * @module
 */

import { InvalidArgumentError } from '../errors.js';
import { isValidIndexName } from '../names.js';
import type { InvalidationFeed, InvalidationListener } from '../unwrap/invalidation.js';
import { loadRedis } from './load-redis.js';
import { DEFAULT_KEY_PREFIX, parseKeyPrefix } from './redis-keys.js';

/** Options of {@link redisInvalidationFeed}. */
export interface RedisInvalidationOptions {
  /** The Redis server of the store: `redis://…` / `rediss://…`. */
  readonly url: string;
  /** The store's key prefix (default `kms-envelope:`). */
  readonly keyPrefix?: string;
}

/** The few ioredis calls the feed makes (connections it opens itself). */
export interface FeedConnection {
  client(subcommand: 'ID'): Promise<number>;
  call(command: string, ...args: string[]): Promise<unknown>;
  subscribe(channel: string): Promise<unknown>;
  on(event: string, listener: (...args: never[]) => void): unknown;
  connect(): Promise<void>;
  disconnect(): void;
  readonly status: string;
}

/** Opens one (lazy) connection to the node, with the feed's own options added to the node's. */
export type OpenFeedConnection = (options: Record<string, unknown>) => FeedConnection;

const CHANNEL = '__redis__:invalidate';
const SUFFIX = '}:kmsblob';

/**
 * The index an envelope key under `prefix` names, or `undefined` for any other key (records,
 * other stores' keys that share the prefix's start).
 */
export function indexOfEnvelopeKey(prefix: string, key: string): string | undefined {
  if (!key.startsWith(`${prefix}{`) || !key.endsWith(SUFFIX)) return undefined;
  const index = key.slice(prefix.length + 1, key.length - SUFFIX.length);
  return isValidIndexName(index) ? index : undefined;
}

/**
 * A feed of the changes to the envelopes of a Redis store (see the module comment). Pass it as the
 * client's `invalidation` option; `ioredis` is loaded when it starts.
 * @throws InvalidArgumentError for a URL that is not `redis://` / `rediss://` or a bad prefix.
 */
export function redisInvalidationFeed(options: RedisInvalidationOptions): InvalidationFeed {
  if (typeof options?.url !== 'string' || !/^rediss?:\/\//.test(options.url)) {
    throw new InvalidArgumentError(
      'redisInvalidationFeed needs the url of the store (redis://… or rediss://…)',
    );
  }
  const prefix = parseKeyPrefix(options.keyPrefix ?? DEFAULT_KEY_PREFIX);
  return new RedisInvalidationFeed(options.url, prefix);
}

class RedisInvalidationFeed implements InvalidationFeed {
  readonly #url: string;
  readonly #prefix: string;
  #node: NodeTracking | undefined;
  #settled = false;
  #closed = false;

  constructor(url: string, prefix: string) {
    this.#url = url;
    this.#prefix = prefix;
  }

  async start(listener: InvalidationListener): Promise<void> {
    const Redis = await loadRedis();
    if (this.#closed) throw new InvalidArgumentError('the invalidation feed was closed before it started');
    const url = this.#url;
    this.#node = new NodeTracking(
      (options) => new Redis(url, options) as unknown as FeedConnection,
      this.#prefix,
      listener,
      () => this.#settled,
    );
    try {
      await this.#node.start();
    } finally {
      this.#settled = true;
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#node?.close();
  }
}

/**
 * Tracking on one Redis node (internal; one per master on a Cluster): a RESP2 subscriber on
 * `__redis__:invalidate` and a tracker with `CLIENT TRACKING on REDIRECT <subscriber> BCAST PREFIX
 * <prefix>`. Reports to `listener`: every envelope key the node reports changed, and `lost` when
 * either connection drops while armed, on a flush, and when it arms again (or for the first time
 * once `afterStart()` is true: entries cached before it armed were not covered by it).
 * @internal
 */
export class NodeTracking {
  readonly #open: OpenFeedConnection;
  readonly #prefix: string;
  readonly #listener: InvalidationListener;
  readonly #afterStart: () => boolean;
  readonly #label: string;
  #subscriber: FeedConnection | undefined;
  #tracker: FeedConnection | undefined;
  /** The subscriber connection's id once it is subscribed; `undefined` while it is not. */
  #subscriberId: number | undefined;
  /** Whether changes are being delivered now. */
  #armed = false;
  #everArmed = false;
  #closed = false;
  #firstArmed: (() => void) | undefined;
  #firstFailed: ((err: unknown) => void) | undefined;

  /**
   * @param afterStart whether the feed's start has settled: a first arming then reports `lost`.
   * @param label names the node in `lost` reasons (never a password).
   */
  constructor(
    open: OpenFeedConnection,
    prefix: string,
    listener: InvalidationListener,
    afterStart: () => boolean,
    label = '',
  ) {
    this.#open = open;
    this.#prefix = prefix;
    this.#listener = listener;
    this.#afterStart = afterStart;
    this.#label = label === '' ? '' : ` (${label})`;
  }

  /** Whether the node's changes are being delivered now. */
  get armed(): boolean {
    return this.#armed;
  }

  /** Connects both connections; resolves once armed, rejects if the first arming fails. */
  async start(): Promise<void> {
    const common = { lazyConnect: true, maxRetriesPerRequest: 1, enableOfflineQueue: true };
    // RESP2: ioredis 6 drops RESP3 `invalidate` pushes, but delivers RESP2 redirect messages.
    // Subscribing is done here on every (re)connect, after asking the connection's new id.
    const subscriber = this.#open({ ...common, protocol: 2, autoResubscribe: false });
    const tracker = this.#open(common);
    this.#subscriber = subscriber;
    this.#tracker = tracker;
    const armed = new Promise<void>((resolve, reject) => {
      this.#firstArmed = resolve;
      this.#firstFailed = reject;
    });
    armed.catch(() => {}); // awaited below, unless connecting failed first
    for (const connection of [subscriber, tracker]) {
      connection.on('error', () => {}); // reported as `lost` through 'close'
    }
    subscriber.on('close', () => {
      this.#subscriberId = undefined;
      this.#drop('the subscriber connection closed');
    });
    tracker.on('close', () => this.#drop('the tracking connection closed'));
    subscriber.on('ready', () => this.#whenReady(this.#subscribe()));
    tracker.on('ready', () => this.#whenReady(this.#track()));
    subscriber.on('messageBuffer', (channel: Buffer, message: Buffer[] | Buffer | null) =>
      this.#onMessage(String(channel), message),
    );
    if (this.#closed) throw new InvalidArgumentError('the invalidation feed was closed before it started');
    await Promise.all([subscriber.connect(), tracker.connect()]);
    await armed;
  }

  /** A command on the tracking connection when it is up (topology queries), else `undefined`. */
  query(command: string, ...args: string[]): Promise<unknown> | undefined {
    const tracker = this.#tracker;
    return tracker?.status === 'ready' ? tracker.call(command, ...args) : undefined;
  }

  #whenReady(step: Promise<void>): void {
    step.catch((err: unknown) => {
      this.#firstFailed?.(err);
      this.#drop('arming failed');
    });
  }

  /** The subscriber is (re)connected: learn its id, subscribe, then redirect tracking to it. */
  async #subscribe(): Promise<void> {
    const subscriber = this.#subscriber!;
    const id = await subscriber.client('ID');
    await subscriber.subscribe(CHANNEL);
    this.#subscriberId = id;
    await this.#track();
  }

  /** Turns tracking on at the tracker, redirected to the subscriber, once both are up. */
  async #track(): Promise<void> {
    const id = this.#subscriberId;
    const tracker = this.#tracker!;
    if (this.#closed || id === undefined || tracker.status !== 'ready') return;
    await tracker.call('CLIENT', 'TRACKING', 'off');
    await tracker.call('CLIENT', 'TRACKING', 'on', 'REDIRECT', String(id), 'BCAST', 'PREFIX', this.#prefix);
    if (id !== this.#subscriberId || this.#closed) return; // the subscriber reconnected meanwhile: its turn
    const uncovered = !this.#armed && (this.#everArmed || this.#afterStart());
    this.#armed = true;
    this.#everArmed = true;
    this.#firstArmed?.();
    this.#firstArmed = undefined;
    this.#firstFailed = undefined;
    // Entries loaded while nothing was listening were not covered.
    if (uncovered) this.#listener.lost(`armed after a lost connection or a start${this.#label}`);
  }

  #drop(reason: string): void {
    if (this.#closed || !this.#armed) return;
    this.#armed = false;
    this.#listener.lost(reason + this.#label);
  }

  #onMessage(channel: string, message: Buffer[] | Buffer | null): void {
    if (channel !== CHANNEL || this.#closed) return;
    if (message === null) {
      this.#listener.lost(`the database was flushed${this.#label}`);
      return;
    }
    for (const key of Array.isArray(message) ? message : [message]) {
      const index = indexOfEnvelopeKey(this.#prefix, key.toString('utf8'));
      if (index !== undefined) this.#listener.changed(index);
    }
  }

  /** Stops delivering and disconnects both connections (no `lost` is reported). */
  close(): void {
    this.#closed = true;
    this.#armed = false;
    this.#firstFailed?.(new InvalidArgumentError('the invalidation feed was closed before it started'));
    this.#subscriber?.disconnect();
    this.#tracker?.disconnect();
  }
}
