import { createHash } from 'node:crypto';
import { encodeKmsBlob } from '../envelope/codec.js';
import type { KmsBlob } from '../envelope/kms-blob.js';
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
import { checkWrite, decodeStored } from './bind.js';
import type { EnvelopeStore, PushOptions } from './store.js';

/**
 * The Redis calls the store makes, typed structurally so that any ioredis `Redis` or `Cluster`
 * the caller already has is accepted and the core never names ioredis types.
 */
export interface RedisLike {
  hmgetBuffer(key: string, ...fields: string[]): Promise<(Buffer | null)[]>;
  hset(key: string, ...fieldsAndValues: (string | Buffer)[]): Promise<number>;
  del(key: string): Promise<number>;
  evalsha(sha: string, numKeys: number, ...args: (string | Buffer)[]): Promise<unknown>;
  eval(script: string, numKeys: number, ...args: (string | Buffer)[]): Promise<unknown>;
  quit(): Promise<unknown>;
}

/** Options of {@link RedisStore}: a `url` to connect to, or a ready `client`. */
export interface RedisStoreOptions {
  /** `redis://[user:password@]host:port[/db]` or `rediss://…`; the store opens its own client. */
  readonly url?: string;
  /** A connected ioredis client (or Cluster); the store never closes it. */
  readonly client?: RedisLike;
  /** Prefix of every key (default `kms-envelope:`). */
  readonly keyPrefix?: string;
  /** Own client only: bound on every command, so a hung server fails fast (default 2000 ms). */
  readonly commandTimeoutMs?: number;
}

/** Default key prefix. */
export const DEFAULT_KEY_PREFIX = 'kms-envelope:';

// Strict insert: the hash is written only if the key does not exist.
const CREATE = `if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'blob', ARGV[1], 'version', ARGV[2])
return 1`;

// Compare-and-set on the version field: 'OK', or the version found ('' when there is none).
const CAS = `local v = redis.call('HGET', KEYS[1], 'version')
if not v then return '' end
if v ~= ARGV[1] then return v end
redis.call('HSET', KEYS[1], 'blob', ARGV[2], 'version', ARGV[3])
return 'OK'`;

const sha1 = (script: string) => createHash('sha1').update(script).digest('hex');
const SCRIPTS = { create: { source: CREATE, sha: sha1(CREATE) }, cas: { source: CAS, sha: sha1(CAS) } };

/** A URL without its password, for messages. */
function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = '***';
    return parsed.toString();
  } catch {
    return 'redis://(unparsable url)';
  }
}

/**
 * Envelopes in Redis: one hash per index at `<keyPrefix><index>:kmsblob`, with fields `blob`
 * (the encoded envelope, binary-safe) and `version`. Create and compare-and-set run as Lua
 * scripts, so the server decides them atomically; a plain push is one `HSET`.
 *
 * `ioredis` is an optional peer dependency, imported only when the store opens its own client.
 */
export class RedisStore implements EnvelopeStore {
  readonly kind = 'redis';
  readonly description: string;
  readonly keyPrefix: string;
  readonly #options: RedisStoreOptions;
  #client: Promise<RedisLike> | undefined;
  readonly #ownsClient: boolean;

  /** @throws InvalidArgumentError without `url` or `client`. */
  constructor(options: RedisStoreOptions) {
    if (!options.url && !options.client)
      throw new InvalidArgumentError('the Redis store needs a url or a client');
    this.#options = options;
    this.keyPrefix = options.keyPrefix ?? DEFAULT_KEY_PREFIX;
    this.#ownsClient = options.client === undefined;
    this.description = options.url ? redactUrl(options.url) : 'redis:(client supplied)';
    if (options.client) this.#client = Promise.resolve(options.client);
  }

  /** The Redis key of an index's envelope. */
  key(index: IndexName): string {
    return `${this.keyPrefix}${parseIndexName(index)}:kmsblob`;
  }

  async create(index: IndexName, blob: KmsBlob): Promise<void> {
    const name = checkWrite(index, blob);
    const bytes = Buffer.from(encodeKmsBlob(blob));
    const created = await this.#script(name, SCRIPTS.create, [bytes, String(blob.version)]);
    if (created !== 1) throw new EnvelopeExistsError('an envelope already exists', { index: name });
  }

  async push(index: IndexName, blob: KmsBlob, options: PushOptions = {}): Promise<void> {
    const name = checkWrite(index, blob);
    const bytes = Buffer.from(encodeKmsBlob(blob));
    const expected = options.expectedVersion;
    if (expected === undefined) {
      await this.#call(name, (c) => c.hset(this.key(name), 'blob', bytes, 'version', String(blob.version)));
      return;
    }
    const result = await this.#script(name, SCRIPTS.cas, [String(expected), bytes, String(blob.version)]);
    const text = Buffer.isBuffer(result) ? result.toString() : String(result);
    if (text !== 'OK')
      throw new VersionConflictError(expected, text === '' ? undefined : Number(text), { index: name });
  }

  async get(index: IndexName): Promise<KmsBlob> {
    const name = parseIndexName(index);
    const [bytes, version] = await this.#call(name, (c) => c.hmgetBuffer(this.key(name), 'blob', 'version'));
    if (!bytes) {
      if (version) throw new MalformedEnvelopeError('stored hash has no envelope bytes', { index: name });
      throw new EnvelopeNotFoundError('no envelope stored', { index: name });
    }
    const blob = decodeStored(name, bytes);
    if (version?.toString() !== String(blob.version)) {
      throw new MalformedEnvelopeError('stored version field does not match the envelope', { index: name });
    }
    return blob;
  }

  async delete(index: IndexName): Promise<void> {
    const name = parseIndexName(index);
    await this.#call(name, (c) => c.del(this.key(name)));
  }

  /** Closes the client the store opened; a client passed in stays open. */
  async close(): Promise<void> {
    if (!this.#ownsClient || this.#client === undefined) return;
    const client = this.#client;
    this.#client = undefined;
    try {
      await (await client).quit();
    } catch {
      // already closed or never connected
    }
  }

  async #connect(): Promise<RedisLike> {
    let Redis: typeof import('ioredis').Redis;
    try {
      ({ Redis } = await import('ioredis'));
    } catch (cause) {
      throw new MissingDependencyError('ioredis', 'the Redis store', cause);
    }
    const client = new Redis(this.#options.url!, {
      lazyConnect: true,
      maxRetriesPerRequest: 1,
      commandTimeout: this.#options.commandTimeoutMs ?? 2000,
      enableOfflineQueue: true,
    });
    // Connection errors reach callers through the failed commands (as StoreUnavailableError);
    // without a listener ioredis would also print each one.
    client.on('error', () => {});
    return client as unknown as RedisLike;
  }

  async #call<T>(index: IndexName, fn: (client: RedisLike) => Promise<T>): Promise<T> {
    if (this.#client === undefined) {
      this.#client = this.#connect();
      this.#client.catch(() => {
        this.#client = undefined;
      });
    }
    const client = await this.#client;
    try {
      return await fn(client);
    } catch (err) {
      throw mapRedisError(err, index);
    }
  }

  /** EVALSHA, loading the script with EVAL when the server does not have it yet. */
  #script(
    index: IndexName,
    script: { source: string; sha: string },
    args: (string | Buffer)[],
  ): Promise<unknown> {
    const key = this.key(index);
    return this.#call(index, async (c) => {
      try {
        return await c.evalsha(script.sha, 1, key, ...args);
      } catch (err) {
        if (!String((err as Error).message).startsWith('NOSCRIPT')) throw err;
        return c.eval(script.source, 1, key, ...args);
      }
    });
  }
}

function mapRedisError(err: unknown, index: IndexName): KmsEnvelopeError | unknown {
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
