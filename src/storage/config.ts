import { InvalidArgumentError } from '../errors.js';
import { DiskStore, type DiskStoreOptions } from './disk.js';
import { MemoryStore } from './memory.js';
import {
  PostgresStore,
  type PostgresStoreOptions,
  type PostgresStoreTables,
  postgresStoreDdl,
} from './postgres.js';
import { RedisStore, type RedisStoreOptions } from './redis.js';
import type { EnvelopeStore } from './store.js';

/**
 * Builds envelope stores.
 *
 * @example
 * StorageConfig.disk('/var/lib/search/indexes');
 * StorageConfig.redis({ url: 'redis://127.0.0.1:6379', keyPrefix: 'search:' });
 * StorageConfig.redis({ client: myIoredisClient });
 * StorageConfig.postgres({ connectionString: 'postgres://app@db.internal/keys', schema: 'kms' });
 * StorageConfig.postgres({ pool: myPgPool, createTables: false });
 * StorageConfig.memory();
 * StorageConfig.parse(process.env.KMS_ENVELOPE_STORE ?? 'disk:./indexes');
 */
export const StorageConfig = {
  /**
   * Envelopes on disk under `dir` (resolved to an absolute path), beside each index's keystore:
   * `<dir>/<index>/kmsblob/`. Folders are created 0700 on the first write. See {@link DiskStore}.
   * @throws InvalidArgumentError if `dir` is empty.
   */
  disk(dir: string, options?: DiskStoreOptions): DiskStore {
    return new DiskStore(dir, options);
  },
  /**
   * Envelopes in Redis: either a `url` (the store opens its own ioredis client on first use;
   * ioredis is an optional peer dependency) or a `client` you already have (never closed by the
   * store). `description` never shows a password. See {@link RedisStore}.
   * @throws InvalidArgumentError without exactly one of `url` / `client`, or with a bad option.
   */
  redis(options: RedisStoreOptions): RedisStore {
    return new RedisStore(options);
  },
  /**
   * Envelopes and records in PostgreSQL: either a `connectionString` (the store opens its own
   * node-postgres pool on first use; `pg` is an optional peer dependency) or a `pool` you already
   * have (never ended by the store). Tables `<schema>.<table>` and `<schema>.<table>_records`
   * (default `public.kms_envelopes`) are created if missing unless `createTables: false`; see
   * {@link postgresStoreDdl} for the DDL to run as a migration. `description` never shows a
   * password. See {@link PostgresStore}.
   * @throws InvalidArgumentError without exactly one of `connectionString` / `pool`, or with a bad
   * option (a schema or table name other than `[a-z_][a-z0-9_]*`).
   */
  postgres(options: PostgresStoreOptions): PostgresStore {
    return new PostgresStore(options);
  },
  /**
   * The DDL (idempotent `CREATE … IF NOT EXISTS`) of the Postgres store's tables, to run as a
   * migration before opening stores with `createTables: false`. See {@link postgresStoreDdl}.
   * @throws InvalidArgumentError for a bad schema or table name.
   */
  postgresDdl(options?: PostgresStoreTables): string {
    return postgresStoreDdl(options);
  },
  /** Envelopes in this process only, lost on exit (tests, examples). See {@link MemoryStore}. */
  memory(): MemoryStore {
    return new MemoryStore();
  },
  /**
   * A store from a spec (the CLI's `--store`, an environment variable): `disk:<dir>` (relative
   * folders resolve against the working directory), `redis://…` / `rediss://…` (a store with its
   * own client, see {@link RedisStore}), `postgres://…` / `postgresql://…` (a store with its own
   * pool and the default tables, see {@link PostgresStore}), or `memory:`. Nothing is opened yet.
   * @throws InvalidArgumentError for anything else; the message never repeats what looks like a
   * password.
   */
  parse(spec: string): EnvelopeStore {
    if (typeof spec !== 'string') throw new InvalidArgumentError('a store spec must be a string');
    if (spec.startsWith('disk:') && spec.length > 5) return new DiskStore(spec.slice(5));
    if (/^rediss?:\/\//.test(spec)) return new RedisStore({ url: spec });
    if (/^postgres(ql)?:\/\//.test(spec)) return new PostgresStore({ connectionString: spec });
    if (spec === 'memory:') return new MemoryStore();
    throw new InvalidArgumentError(
      `unknown store ${JSON.stringify(redactSpec(spec))}: use disk:<dir>, redis://host:port, postgres://host/database or memory:`,
    );
  },
} as const;

/** A spec fit for a message: everything up to the last '@' after the scheme is hidden. */
function redactSpec(spec: string): string {
  let shown = spec.includes('@') ? spec.replace(/^([A-Za-z][A-Za-z0-9+.-]*:\/*)?.*@/s, '$1***@') : spec;
  shown = shown.replace(/((?:pass|secret|token)[^=&]*=)[^&]*/gi, '$1***');
  return shown.length > 80 ? `${shown.slice(0, 80)}…` : shown;
}
