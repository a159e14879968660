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
 * this feed watches the one node its URL names, so use it there only with a URL per master, or
 * rely on the TTL.
 *
 * @module
 */
import { InvalidArgumentError, MissingDependencyError } from '../errors.js';
import { isValidIndexName } from '../names.js';
import type { InvalidationFeed, InvalidationListener } from '../unwrap/invalidation.js';
import { DEFAULT_KEY_PREFIX, parseKeyPrefix } from './redis-keys.js';

/** Options of {@link redisInvalidationFeed}. */
export interface RedisInvalidationOptions {
  /** The Redis server of the store: `redis://…` / `rediss://…`. */
  readonly url: string;
  /** The store's key prefix (default `kms-envelope:`). */
  readonly keyPrefix?: string;
}

/** The few ioredis calls the feed makes (two connections it opens itself). */
interface FeedConnection {
  client(subcommand: 'ID'): Promise<number>;
  call(command: string, ...args: string[]): Promise<unknown>;
  subscribe(channel: string): Promise<unknown>;
  on(event: string, listener: (...args: never[]) => void): unknown;
  connect(): Promise<void>;
  disconnect(): void;
  readonly status: string;
}

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
  #subscriber: FeedConnection | undefined;
  #tracker: FeedConnection | undefined;
  #listener: InvalidationListener | undefined;
  /** The subscriber connection's id once it is subscribed; `undefined` while it is not. */
  #subscriberId: number | undefined;
  /** Whether changes are being delivered now. */
  #armed = false;
  #everArmed = false;
  #closed = false;
  #firstArmed: (() => void) | undefined;
  #firstFailed: ((err: unknown) => void) | undefined;

  constructor(url: string, prefix: string) {
    this.#url = url;
    this.#prefix = prefix;
  }

  async start(listener: InvalidationListener): Promise<void> {
    this.#listener = listener;
    let Redis: typeof import('ioredis').Redis;
    try {
      ({ Redis } = await import('ioredis'));
    } catch (cause) {
      throw new MissingDependencyError('ioredis', 'the Redis invalidation feed', cause);
    }
    const common = { lazyConnect: true, maxRetriesPerRequest: 1, enableOfflineQueue: true };
    // RESP2: ioredis 6 drops RESP3 `invalidate` pushes, but delivers RESP2 redirect messages.
    // Subscribing is done here on every (re)connect, after asking the connection's new id.
    const subscriber = new Redis(this.#url, { ...common, protocol: 2, autoResubscribe: false });
    const tracker = new Redis(this.#url, common);
    this.#subscriber = subscriber as unknown as FeedConnection;
    this.#tracker = tracker as unknown as FeedConnection;
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
    await Promise.all([subscriber.connect(), tracker.connect()]);
    await armed;
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
    if (id !== this.#subscriberId) return; // the subscriber reconnected meanwhile: its turn
    const rearmed = !this.#armed && this.#everArmed;
    this.#armed = true;
    this.#everArmed = true;
    this.#firstArmed?.();
    this.#firstArmed = undefined;
    this.#firstFailed = undefined;
    // Entries loaded while nothing was listening were not covered.
    if (rearmed) this.#listener?.lost('re-armed after a lost connection');
  }

  #drop(reason: string): void {
    if (this.#closed || !this.#armed) return;
    this.#armed = false;
    this.#listener?.lost(reason);
  }

  #onMessage(channel: string, message: Buffer[] | Buffer | null): void {
    if (channel !== CHANNEL || this.#listener === undefined) return;
    if (message === null) {
      this.#listener.lost('the database was flushed');
      return;
    }
    for (const key of Array.isArray(message) ? message : [message]) {
      const index = indexOfEnvelopeKey(this.#prefix, key.toString('utf8'));
      if (index !== undefined) this.#listener.changed(index);
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#armed = false;
    this.#firstFailed?.(new InvalidArgumentError('the invalidation feed was closed before it started'));
    this.#subscriber?.disconnect();
    this.#tracker?.disconnect();
  }
}
