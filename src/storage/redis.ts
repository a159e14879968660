import { encodeKmsBlob } from '../envelope/codec.js';
import { type KmsBlob, KmsBlobLimits } from '../envelope/kms-blob.js';
import {
  AccessDeniedError,
  EnvelopeExistsError,
  EnvelopeNotFoundError,
  InvalidArgumentError,
  type KmsEnvelopeError,
  MalformedEnvelopeError,
  MissingDependencyError,
  StoreUnavailableError,
  VersionConflictError,
} from '../errors.js';
import { type IndexName, parseIndexName } from '../names.js';
import { importPeer } from '../providers/support.js';
import { checkWrite, decodeStored } from './bind.js';
import { checkRecordId, checkRecordWrite, MAX_RECORD_BYTES } from './record-id.js';
import { DEFAULT_KEY_PREFIX, envelopeKey, parseKeyPrefix, recordsKey } from './redis-keys.js';
import {
  migrateRedisLayout,
  type RedisMigrationClient,
  type RedisMigrationOptions,
  type RedisMigrationReport,
} from './redis-migrate.js';
import {
  COMPARE_AND_SET,
  GET_ENVELOPE,
  GET_RECORD,
  LIST_RECORDS,
  type RedisScript,
  TOO_LARGE,
} from './redis-scripts.js';
import type { EnvelopeStore, PushOptions, RecordKind, RecordStore } from './store.js';

/**
 * The Redis calls the store makes, typed structurally so that any ioredis `Redis` or `Cluster`
 * the caller already has is accepted and the core never names ioredis types.
 */
export interface RedisLike {
  /** Any command, replies as Buffers: every command of the store goes through it. */
  callBuffer(command: string, ...args: (string | Buffer | number)[]): Promise<unknown>;
  /** Closes the connection; called by `close()` only on a client the store opened itself. */
  quit(): Promise<unknown>;
}

/** With `waitReplicas`: a write and its WAIT go in one pipeline, so they share a connection. */
interface RedisPipelineLike {
  callBuffer(command: string, ...args: (string | Buffer | number)[]): unknown;
  exec(): Promise<[Error | null, unknown][] | null>;
}

/** One command: its name and arguments. */
type RedisCommand = readonly [string, ...(string | Buffer | number)[]];

/**
 * A write with `waitReplicas` was applied by the primary, but `WAIT` confirmed it on fewer
 * replicas than asked within `waitTimeoutMs`. The write **may or may not have been applied**
 * in the end: it is on the primary now, and a failover before it reaches a replica loses it.
 * Retryable (a `StoreUnavailableError`); re-read before retrying a create or a compare-and-set,
 * which may find the write itself.
 */
export class ReplicasNotConfirmedError extends StoreUnavailableError {
  /** Always true: the write's outcome is unknown. */
  readonly ambiguous = true;
  /** Replicas asked for (`waitReplicas`). */
  readonly required: number;
  /** Replicas that confirmed within the timeout. */
  readonly acknowledged: number;
  constructor(required: number, acknowledged: number, index: IndexName) {
    super(
      `the write reached ${acknowledged} of ${required} replicas in time: it may or may not have been applied`,
      { index },
    );
    this.required = required;
    this.acknowledged = acknowledged;
  }
}

/** Options of {@link RedisStore}: a `url` to connect to, or a ready `client`. */
export interface RedisStoreOptions {
  /** `redis://[user:password@]host:port[/db]` or `rediss://…`; the store opens its own client. */
  readonly url?: string;
  /** A connected ioredis client (or Cluster); the store never closes it. */
  readonly client?: RedisLike;
  /**
   * Prefix of every key (default `kms-envelope:`); it may not contain `{` or `}`. Keys are
   * `<prefix>{<index>}:kmsblob` and `<prefix>{<index>}:records:<kind>`.
   */
  readonly keyPrefix?: string;
  /**
   * Own client only: bound on every command, so a hung server fails fast (default 2000 ms; with
   * `waitReplicas`, `waitTimeoutMs` is added for the WAIT).
   */
  readonly commandTimeoutMs?: number;
  /**
   * Durability: after each write, `WAIT <waitReplicas> <waitTimeoutMs>` on the same connection
   * (one pipeline, one round trip); a write that did not reach that many replicas in time is a
   * {@link ReplicasNotConfirmedError} (retryable, ambiguous). Writes that changed nothing (a lost
   * create, a version conflict) report their own error. Reads are unchanged. A supplied client
   * must have `pipeline()` (ioredis does).
   */
  readonly waitReplicas?: number;
  /** How long WAIT waits for the replicas, in ms (default 1000). */
  readonly waitTimeoutMs?: number;
}

/** Default of {@link RedisStoreOptions.waitTimeoutMs}. */
export const DEFAULT_WAIT_TIMEOUT_MS = 1000;

export { DEFAULT_KEY_PREFIX } from './redis-keys.js';

/**
 * A Redis URL without its secrets, for `description` and messages: the password of the user part
 * and any query parameter that ioredis would take as one (`?password=`, `?sentinelPassword=`).
 */
function redactUrl(url: URL): string {
  const shown = new URL(url.href);
  if (shown.password) shown.password = '***';
  for (const name of [...shown.searchParams.keys()]) {
    if (/pass|secret|token/i.test(name)) shown.searchParams.set(name, '***');
  }
  return shown.toString();
}

/**
 * Parses a `redis://` or `rediss://` URL once, where it enters.
 * @throws InvalidArgumentError for anything else (the message never repeats the URL: it may hold
 * a password).
 */
function parseRedisUrl(url: unknown): URL {
  let parsed: URL | undefined;
  try {
    parsed = typeof url === 'string' ? new URL(url) : undefined;
  } catch {
    parsed = undefined;
  }
  if (
    parsed === undefined ||
    (parsed.protocol !== 'redis:' && parsed.protocol !== 'rediss:') ||
    !parsed.hostname
  )
    throw new InvalidArgumentError(
      'the Redis store needs a url like redis://[user:password@]host:port[/db] or rediss://…',
    );
  return parsed;
}

/**
 * Envelopes in Redis. Keys (see ./redis-keys.ts):
 *
 * - `<keyPrefix>{<index>}:kmsblob`: a binary-safe string holding exactly the stored envelope bytes
 *   (what `kms-envelope inspect` reads from a file);
 * - `<keyPrefix>{<index>}:records:<kind>`: a hash of record id → record, per kind (`dek`, `meta`).
 *
 * The layout is injective (a prefix may not contain `{` or `}`, an index name is
 * `[A-Za-z0-9._-]`), so stores with different prefixes never share a key, and `{<index>}` is a Redis
 * Cluster hash tag: every key of one index is in one slot, and the store works unchanged over an
 * ioredis `Cluster`. Data written before this layout (`<keyPrefix><index>:kmsblob`) is not read:
 * move it with `kms-envelope migrate-store` (reading the old keys as a fallback would bring back
 * the aliasing between prefixes that the layout removes).
 *
 * Reads (`get`, `getEncoded`, records) are one EVALSHA of a script that checks `STRLEN` /
 * `HSTRLEN` first, so a value over the limit (64 KiB, records 128 KiB) planted by a store writer
 * is refused (`MalformedEnvelopeError`) before it is sent. Create is `SET NX`, a plain push is
 * `SET`, and compare-and-set is a script that refuses a stored value whose size, CRC32C trailer,
 * identifier or `index_name` is wrong (`MalformedEnvelopeError`), then compares `version` and,
 * with `expectedCreationId`, `creation_id`: the server decides each atomically. Every script
 * touches one key (./redis-scripts.ts). With `waitReplicas`, each write is confirmed by `WAIT`
 * or reported as a {@link ReplicasNotConfirmedError} (retryable; may or may not have been applied).
 *
 * Errors name the index, never a key's bytes, a value or a password.
 *
 * `ioredis` is an optional peer dependency, imported only when the store opens its own client.
 */
export class RedisStore implements EnvelopeStore, RecordStore {
  readonly kind = 'redis';
  readonly description: string;
  /** The validated prefix of every key the store uses (default `kms-envelope:`). */
  readonly keyPrefix: string;
  readonly #options: RedisStoreOptions;
  #client: Promise<RedisLike> | undefined;
  /** The client once connected, so the hot path skips awaiting the promise. */
  #ready: RedisLike | undefined;
  readonly #ownsClient: boolean;
  /** `[replicas, timeoutMs]` of WAIT after each write, or undefined. */
  readonly #wait: readonly [number, number] | undefined;

  /**
   * Connects lazily: nothing is opened (or imported) before the first call.
   * @throws InvalidArgumentError without `url` or `client`, with both, or with a `url` that is not
   * `redis://` / `rediss://`, a `keyPrefix` that is not a string or contains `{` or `}`, or a
   * `commandTimeoutMs` that is not a positive number, a `waitReplicas` or `waitTimeoutMs` that is
   * not a positive whole number, or `waitReplicas` with a supplied client without `pipeline()`.
   */
  constructor(options: RedisStoreOptions) {
    if (options?.client === undefined && options?.url === undefined)
      throw new InvalidArgumentError('the Redis store needs a url or a client');
    if (options.client !== undefined && options.url !== undefined)
      throw new InvalidArgumentError('the Redis store takes a url or a client, not both');
    const url = options.url === undefined ? undefined : parseRedisUrl(options.url);
    const keyPrefix =
      options.keyPrefix === undefined ? DEFAULT_KEY_PREFIX : parseKeyPrefix(options.keyPrefix);
    const timeout = options.commandTimeoutMs;
    if (timeout !== undefined && !(Number.isFinite(timeout) && timeout > 0))
      throw new InvalidArgumentError('commandTimeoutMs must be a positive number of milliseconds');
    const { waitReplicas, waitTimeoutMs } = options;
    if (waitReplicas !== undefined && !(Number.isSafeInteger(waitReplicas) && waitReplicas > 0))
      throw new InvalidArgumentError('waitReplicas must be a positive whole number of replicas');
    if (waitTimeoutMs !== undefined && !(Number.isSafeInteger(waitTimeoutMs) && waitTimeoutMs > 0))
      throw new InvalidArgumentError('waitTimeoutMs must be a positive whole number of milliseconds');
    if (
      waitReplicas !== undefined &&
      options.client !== undefined &&
      typeof (options.client as Partial<{ pipeline: unknown }>).pipeline !== 'function'
    )
      throw new InvalidArgumentError(
        'waitReplicas needs a client with pipeline() (an ioredis Redis or Cluster)',
      );
    this.#wait =
      waitReplicas === undefined ? undefined : [waitReplicas, waitTimeoutMs ?? DEFAULT_WAIT_TIMEOUT_MS];
    this.#options = options;
    this.keyPrefix = keyPrefix;
    this.#ownsClient = options.client === undefined;
    this.description = url ? redactUrl(url) : 'redis:(client supplied)';
    if (options.client) {
      this.#client = Promise.resolve(options.client);
      this.#ready = options.client;
    }
  }

  /** The Redis key of an index's envelope. */
  key(index: IndexName): string {
    return this.#key(parseIndexName(index));
  }

  /** {@link key} of a name already parsed. */
  #key(name: IndexName): string {
    return envelopeKey(this.keyPrefix, name);
  }

  async create(index: IndexName, blob: KmsBlob): Promise<void> {
    const name = checkWrite(index, blob);
    const bytes = Buffer.from(encodeKmsBlob(blob));
    const created = await this.#write(name, ['SET', this.#key(name), bytes, 'NX'], (reply) => reply !== null);
    if (created === null) throw new EnvelopeExistsError('an envelope already exists', { index: name });
  }

  async push(index: IndexName, blob: KmsBlob, options: PushOptions = {}): Promise<void> {
    const name = checkWrite(index, blob);
    const bytes = Buffer.from(encodeKmsBlob(blob));
    const expected = options.expectedVersion;
    if (expected === undefined) {
      await this.#write(name, ['SET', this.#key(name), bytes]);
      return;
    }
    const args = [this.#key(name), String(expected), bytes, name];
    if (options.expectedCreationId !== undefined) args.push(Buffer.from(options.expectedCreationId));
    const result = String(
      await this.#write(
        name,
        ['EVALSHA', COMPARE_AND_SET.sha, 1, ...args],
        (reply) => String(reply) === 'OK',
        ['EVAL', COMPARE_AND_SET.source, 1, ...args],
      ),
    );
    if (result === 'OK') return;
    if (result === '') throw new VersionConflictError(expected, undefined, { index: name });
    if (result.startsWith('MALFORMED')) {
      // The reason is one of the script's fixed words, never stored bytes.
      const reason = result.slice('MALFORMED '.length);
      throw new MalformedEnvelopeError(
        reason === 'index'
          ? 'the stored envelope is bound to another index'
          : `the stored value is not an envelope (${reason} check failed on the server)`,
        { index: name },
      );
    }
    const recreated = result.startsWith('RECREATED ');
    const actual = Number(recreated ? result.slice('RECREATED '.length) : result);
    throw new VersionConflictError(expected, actual, { index: name }, recreated);
  }

  async get(index: IndexName): Promise<KmsBlob> {
    const name = parseIndexName(index);
    return decodeStored(name, await this.#getBytes(name));
  }

  getEncoded(index: IndexName): Promise<Uint8Array> {
    let name: IndexName;
    try {
      name = parseIndexName(index);
    } catch (err) {
      return Promise.reject(err);
    }
    return this.#getBytes(name);
  }

  /**
   * The stored bytes of `name`: one EVALSHA (a script that checks STRLEN before it sends the
   * value, so an oversized value planted by a store writer never crosses the network) and one
   * promise reaction on the way back.
   */
  #getBytes(name: IndexName): Promise<Buffer> {
    return this.#eval(name, GET_ENVELOPE, this.#key(name), [], (reply) => {
      if (Buffer.isBuffer(reply)) return reply;
      if (reply === null) throw new EnvelopeNotFoundError('no envelope stored', { index: name });
      throw tooLarge(name, reply, 'the stored value', KmsBlobLimits.maxEnvelopeBytes);
    });
  }

  async delete(index: IndexName): Promise<void> {
    const name = parseIndexName(index);
    await this.#write(name, ['DEL', this.#key(name)]);
  }

  /** The Redis key of an index's records of one kind (a hash of id → record). */
  recordsKey(index: IndexName, kind: RecordKind): string {
    return recordsKey(this.keyPrefix, parseIndexName(index), kind);
  }

  async putRecord(index: IndexName, kind: RecordKind, id: string, value: Uint8Array): Promise<void> {
    await this.putRecords(index, kind, new Map([[id, value]]));
  }

  /** HSETNX: the server decides. */
  async createRecord(index: IndexName, kind: RecordKind, id: string, value: Uint8Array): Promise<boolean> {
    const name = parseIndexName(index);
    checkRecordWrite(name, kind, id, value);
    const key = recordsKey(this.keyPrefix, name, kind);
    const created = await this.#write(name, ['HSETNX', key, id, Buffer.from(value)], (reply) => reply === 1);
    return created === 1;
  }

  /** One HSET with every record: atomic for the batch, one round trip. */
  async putRecords(
    index: IndexName,
    kind: RecordKind,
    records: ReadonlyMap<string, Uint8Array>,
  ): Promise<void> {
    const name = parseIndexName(index);
    const args: (string | Buffer)[] = [];
    for (const [id, value] of records) {
      checkRecordWrite(name, kind, id, value);
      args.push(id, Buffer.from(value));
    }
    if (args.length === 0) return;
    await this.#write(name, ['HSET', recordsKey(this.keyPrefix, name, kind), ...args]);
  }

  async getRecord(index: IndexName, kind: RecordKind, id: string): Promise<Uint8Array | undefined> {
    const name = parseIndexName(index);
    checkRecordId(kind, id);
    return this.#eval(name, GET_RECORD, this.recordsKey(name, kind), [id], (reply) => {
      if (Buffer.isBuffer(reply)) return new Uint8Array(reply);
      if (reply === null) return undefined;
      throw tooLarge(name, reply, 'a stored record', MAX_RECORD_BYTES);
    });
  }

  async listRecords(index: IndexName, kind: RecordKind): Promise<Map<string, Uint8Array>> {
    const name = parseIndexName(index);
    const all = await this.#eval(name, LIST_RECORDS, this.recordsKey(name, kind), [], (reply) => {
      if (!Array.isArray(reply)) throw tooLarge(name, reply, 'a stored record', MAX_RECORD_BYTES);
      const records: [string, Uint8Array][] = [];
      for (let i = 0; i + 1 < reply.length; i += 2)
        records.push([String(reply[i]), new Uint8Array(reply[i + 1] as Buffer)]);
      return records;
    });
    return new Map(all.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  }

  async deleteRecord(index: IndexName, kind: RecordKind, id: string): Promise<void> {
    const name = parseIndexName(index);
    checkRecordId(kind, id);
    await this.#write(name, ['HDEL', recordsKey(this.keyPrefix, name, kind), id]);
  }

  /**
   * Moves this prefix's envelopes and records from the key layout before the hash-tagged one
   * (`<keyPrefix><index>:kmsblob`) to the current one: what `kms-envelope migrate-store` runs.
   * Resumable and idempotent; a name the old layout made ambiguous is reported, never guessed
   * (see ./redis-migrate.ts). A supplied client must be a full ioredis `Redis` or `Cluster`.
   * @throws StoreUnavailableError or AccessDeniedError as every method; InvalidArgumentError for
   * a supplied client without the calls a migration needs.
   */
  async migrateLegacyLayout(
    options: Omit<RedisMigrationOptions, 'keyPrefix'> = {},
  ): Promise<RedisMigrationReport> {
    let client: RedisLike;
    try {
      client = await this.#connected();
    } catch (err) {
      throw mapRedisError(err);
    }
    const full = client as unknown as Partial<RedisMigrationClient>;
    if (typeof full.scan !== 'function' || typeof full.strlen !== 'function')
      throw new InvalidArgumentError('migrating needs a full ioredis client (SCAN, STRLEN, …)');
    try {
      return await migrateRedisLayout(full as RedisMigrationClient, {
        ...options,
        keyPrefix: this.keyPrefix,
      });
    } catch (err) {
      throw mapRedisError(err);
    }
  }

  /** Closes the client the store opened; a client passed in stays open. */
  async close(): Promise<void> {
    if (!this.#ownsClient || this.#client === undefined) return;
    const client = this.#client;
    this.#client = undefined;
    this.#ready = undefined;
    try {
      await (await client).quit();
    } catch {
      // already closed or never connected
    }
  }

  async #connect(): Promise<RedisLike> {
    let Redis: typeof import('ioredis').Redis;
    try {
      ({ Redis } = await importPeer<typeof import('ioredis')>('ioredis'));
    } catch (cause) {
      throw new MissingDependencyError('ioredis', 'the Redis store', cause);
    }
    const client = new Redis(this.#options.url!, {
      lazyConnect: true,
      maxRetriesPerRequest: 1,
      commandTimeout: (this.#options.commandTimeoutMs ?? 2000) + (this.#wait?.[1] ?? 0),
      enableOfflineQueue: true,
    });
    // Connection errors reach callers through the failed commands (as StoreUnavailableError);
    // without a listener ioredis would also print each one.
    client.on('error', () => {});
    return client as unknown as RedisLike;
  }

  /**
   * Runs `fn` with the client (connecting first if needed), its errors mapped to the store's;
   * `onValue`, if given, turns the answer into the result in the same promise reaction. With
   * `onNoScript`, a NOSCRIPT answer (the server does not have the script yet) sends that instead.
   */
  #call<T, R = T>(
    index: IndexName,
    fn: (client: RedisLike) => Promise<T>,
    onValue?: (value: T) => R,
    onNoScript?: (client: RedisLike) => Promise<T>,
  ): Promise<R> {
    const client = this.#ready;
    if (client === undefined) return this.#connectAndCall(index, fn, onValue, onNoScript);
    const mapError = (err: unknown): never => {
      throw mapRedisError(err, index);
    };
    const onError =
      onNoScript === undefined
        ? mapError
        : (err: unknown): Promise<R> => {
            if (!isNoScript(err)) mapError(err);
            return Promise.resolve(onNoScript(client)).then(onValue, mapError) as Promise<R>;
          };
    // Not an async function: the hot path costs one promise, not an await chain.
    try {
      // Promise.resolve: a RedisLike may answer with any thenable (free for a native promise).
      return Promise.resolve(fn(client)).then(onValue, onError) as Promise<R>;
    } catch (err) {
      return Promise.reject(mapRedisError(err, index));
    }
  }

  async #connectAndCall<T, R>(
    index: IndexName,
    fn: (client: RedisLike) => Promise<T>,
    onValue?: (value: T) => R,
    onNoScript?: (client: RedisLike) => Promise<T>,
  ): Promise<R> {
    await this.#connected();
    return this.#call(index, fn, onValue, onNoScript);
  }

  /** The client, connecting first if needed. */
  async #connected(): Promise<RedisLike> {
    if (this.#ready !== undefined) return this.#ready;
    if (this.#client === undefined) {
      this.#client = this.#connect();
      this.#client.catch(() => {
        this.#client = undefined;
      });
    }
    this.#ready = await this.#client;
    return this.#ready;
  }

  /**
   * Sends a write (`fallback`: what to send on NOSCRIPT). With `waitReplicas`, the write and a
   * WAIT go in one pipeline; when `wrote(reply)` says it changed something and WAIT counted too
   * few replicas, the result is a {@link ReplicasNotConfirmedError}. Resolves to the reply.
   */
  #write(
    index: IndexName,
    command: RedisCommand,
    wrote: (reply: unknown) => boolean = () => true,
    fallback?: RedisCommand,
  ): Promise<unknown> {
    const wait = this.#wait;
    if (wait === undefined) {
      return this.#call(
        index,
        (c) => c.callBuffer(...command),
        undefined,
        fallback && ((c) => c.callBuffer(...fallback)),
      );
    }
    const [replicas, timeoutMs] = wait;
    const withWait = async (client: RedisLike, cmd: RedisCommand): Promise<unknown> => {
      const pipeline = (client as unknown as { pipeline(): RedisPipelineLike }).pipeline();
      pipeline.callBuffer(...cmd);
      pipeline.callBuffer('WAIT', replicas, timeoutMs);
      const results = await pipeline.exec();
      if (results === null || results.length !== 2) throw new Error('the pipeline was discarded');
      const [[err, reply], [waitErr, acknowledged]] = results as [
        [Error | null, unknown],
        [Error | null, unknown],
      ];
      if (err) throw err;
      if (wrote(reply)) {
        const count = waitErr ? 0 : Number(acknowledged);
        if (!(count >= replicas)) throw new ReplicasNotConfirmedError(replicas, count, index);
      }
      return reply;
    };
    return this.#call(
      index,
      (c) => withWait(c, command),
      undefined,
      fallback && ((c) => withWait(c, fallback)),
    );
  }

  /** EVALSHA of `script` on the one key `key`, loading it with EVAL on NOSCRIPT; replies as Buffers. */
  #eval<R>(
    index: IndexName,
    script: RedisScript,
    key: string,
    args: (string | Buffer)[],
    onValue: (reply: unknown) => R,
  ): Promise<R> {
    return this.#call(
      index,
      (c) => c.callBuffer('EVALSHA', script.sha, 1, key, ...args),
      onValue,
      (c) => c.callBuffer('EVAL', script.source, 1, key, ...args),
    );
  }
}

function isNoScript(err: unknown): boolean {
  return err instanceof Error && err.message.startsWith('NOSCRIPT');
}

/** The error for a {@link TOO_LARGE} reply (anything else unexpected is reported the same way). */
function tooLarge(index: IndexName, reply: unknown, what: string, limit: number): MalformedEnvelopeError {
  return new MalformedEnvelopeError(
    reply === TOO_LARGE
      ? `${what} is larger than ${limit} bytes (refused by the server before it was sent)`
      : `${what} is not a string`,
    { index },
  );
}

function mapRedisError(err: unknown, index?: IndexName): KmsEnvelopeError | unknown {
  if (
    err instanceof Error &&
    'code' in err &&
    typeof (err as { code: unknown }).code === 'string' &&
    (err as { code: string }).code.startsWith('KMS_ENVELOPE')
  ) {
    return err;
  }
  const message = err instanceof Error ? err.message : String(err);
  if (/WRONGTYPE/.test(message)) {
    return new MalformedEnvelopeError('the key holds something that is not an envelope', {
      index,
      cause: err,
    });
  }
  if (/^(NOAUTH|NOPERM|WRONGPASS)/.test(message)) {
    return new AccessDeniedError('Redis refused the credentials or permissions', { index, cause: err });
  }
  return new StoreUnavailableError(`Redis is unavailable: ${message.split('\n')[0]}`, { index, cause: err });
}
