import { createHash } from 'node:crypto';
import { encodeKmsBlob } from '../envelope/codec.js';
import { type KmsBlob, KmsBlobLimits } from '../envelope/kms-blob.js';
import {
  AccessDeniedError,
  EnvelopeExistsError,
  EnvelopeNotFoundError,
  InvalidArgumentError,
  KmsEnvelopeError,
  MalformedEnvelopeError,
  StoreUnavailableError,
  VersionConflictError,
} from '../errors.js';
import { type IndexName, parseIndexName } from '../names.js';
import { importOptional, importPeer } from '../providers/support.js';
import { checkCas, checkWrite, decodeStored } from './bind.js';
import { checkRecordId, checkRecordWrite, MAX_RECORD_BYTES } from './record-id.js';
import type { EnvelopeStore, PushOptions, RecordKind, RecordStore } from './store.js';

/** One query as the store sends it (a subset of node-postgres' `QueryConfig`). */
export interface PostgresQuery {
  /** The SQL, with `$1`, `$2` … placeholders; never built from caller input. */
  readonly text: string;
  /**
   * A named (prepared) statement: node-postgres parses it once per connection and then only
   * binds and executes it. Absent with `preparedStatements: false`, and for statements without
   * parameters (the migration, which must stay one simple-protocol query).
   */
  readonly name?: string;
  /** The values of the placeholders, in order (index names, bytes, versions). */
  readonly values?: unknown[];
  /** Rows as arrays of column values. */
  readonly rowMode: 'array';
  /** Per-query type parsers: the store reads every column as text, whatever the pool's parsers. */
  readonly types: {
    /** The parser of a column of type `oid`: here always the identity (the text as sent). */
    getTypeParser(oid: number, format?: string): (value: string) => unknown;
  };
  /** node-postgres' client-side bound on the query, in ms. */
  readonly query_timeout: number;
}

/**
 * The calls the store makes on a pool, typed structurally so that any node-postgres `Pool` the
 * caller already has is accepted and the core never names `pg` types. One `query` per operation:
 * the store never holds a connection across calls, so a `Pool` (not a single `Client`, which
 * cannot reconnect) is what to pass.
 */
export interface PostgresPoolLike {
  /**
   * Runs one query on a connection of the pool (node-postgres `Pool.query`). Rejects with the
   * driver's error, which the store maps to a typed one (SQLSTATE, connection failures).
   */
  query(query: PostgresQuery): Promise<{
    /** Rows inserted, updated or deleted (`null` when the statement reports none). */
    rowCount: number | null;
    /** The rows, each an array of column values (`rowMode: 'array'`). */
    rows: unknown[][];
  }>;
}

/** Options of {@link PostgresStore}: a `connectionString` to connect to, or a ready `pool`. */
export interface PostgresStoreOptions {
  /**
   * `postgres://[user[:password]@]host[:port]/database[?…]` (or `postgresql://`); the store opens
   * its own pool (node-postgres `pg`, an optional peer dependency) on first use and closes it in
   * `close()`. Never shown with its password.
   */
  readonly connectionString?: string;
  /**
   * A node-postgres `Pool` you already have; the store never ends it. Give it a
   * `connectionTimeoutMillis` (its default waits forever for a connection) and an `error` listener
   * (without one, a backend that dies while idle crashes the process: node-postgres' rule).
   */
  readonly pool?: PostgresPoolLike;
  /** Schema of the tables (default `public`); `[a-z_][a-z0-9_]*`, at most 63 characters. */
  readonly schema?: string;
  /**
   * The envelope table (default `kms_envelopes`); records go in `<table>_records`.
   * `[a-z_][a-z0-9_]*`, at most 55 characters (so that the records table's name fits in 63).
   */
  readonly table?: string;
  /**
   * Create the schema and tables on first use if they are missing (default true). With false the
   * store only checks nothing and uses them: run {@link postgresStoreDdl} or
   * {@link PostgresStore.migrate} as a migration first.
   */
  readonly createTables?: boolean;
  /** Bound on every query, in ms (default 5000): client-side, and `statement_timeout` on an own pool. */
  readonly queryTimeoutMs?: number;
  /** Own pool: how long to wait for a connection, in ms (default 2000). */
  readonly connectTimeoutMs?: number;
  /** Own pool: most connections open at once (default 10). */
  readonly maxConnections?: number;
  /**
   * Send each statement as a named prepared statement (default true): the server parses and
   * plans it once per connection instead of on every call. Set false behind a pooler that does
   * not keep named statements per client (PgBouncer in transaction mode before 1.21, or with
   * `max_prepared_statements = 0`). Names are `kms_envelope_<hash of the text>`, so they never
   * clash with a supplied pool's own statements.
   */
  readonly preparedStatements?: boolean;
}

/** The names of a store's tables, validated. */
export interface PostgresStoreTables {
  /** The schema of the tables, `[a-z_][a-z0-9_]*` (default `public`; created if missing). */
  readonly schema?: string;
  /**
   * The envelope table, `[a-z_][a-z0-9_]*`, at most 55 characters (default `kms_envelopes`); the
   * records live in `<table>_records`.
   */
  readonly table?: string;
}

/** Default schema of the store's tables. */
export const DEFAULT_POSTGRES_SCHEMA = 'public';
/** Default envelope table (the records table is `<table>_records`). */
export const DEFAULT_POSTGRES_TABLE = 'kms_envelopes';

const IDENTIFIER = /^[a-z_][a-z0-9_]*$/;

/**
 * A schema or table name as a quoted identifier. Only `[a-z_][a-z0-9_]*` is accepted, so the
 * quoted name is the name Postgres folds an unquoted one to, and nothing needs escaping.
 * @throws InvalidArgumentError
 */
function identifier(what: string, name: unknown, maxLength: number): string {
  if (typeof name !== 'string' || !IDENTIFIER.test(name) || name.length > maxLength)
    throw new InvalidArgumentError(
      `the Postgres store's ${what} must match [a-z_][a-z0-9_]* and be at most ${maxLength} characters`,
    );
  return `"${name}"`;
}

/** The qualified, quoted names of the two tables. @throws InvalidArgumentError */
function tableNames(options: PostgresStoreTables = {}): {
  schema: string;
  envelopes: string;
  records: string;
  label: string;
} {
  const schemaName = options.schema ?? DEFAULT_POSTGRES_SCHEMA;
  const tableName = options.table ?? DEFAULT_POSTGRES_TABLE;
  const schema = identifier('schema', schemaName, 63);
  const table = identifier('table', tableName, 55);
  return {
    schema,
    envelopes: `${schema}.${table}`,
    records: `${schema}.${identifier('table', `${tableName}_records`, 63)}`,
    label: `${schemaName}.${tableName}`,
  };
}

/**
 * The DDL of the store's tables, for running as a migration (then open the store with
 * `createTables: false`). Idempotent (`IF NOT EXISTS`). With the defaults:
 *
 * ```sql
 * CREATE TABLE IF NOT EXISTS "public"."kms_envelopes" (
 *   index_name  text PRIMARY KEY,
 *   envelope    bytea NOT NULL,   -- the stored form: FlatBuffer + CRC32C trailer
 *   version     bigint NOT NULL CHECK (version BETWEEN 0 AND 4294967295),
 *   creation_id bytea,            -- NULL: an envelope written before creation ids
 *   updated_at  timestamptz NOT NULL DEFAULT now()
 * );
 * CREATE TABLE IF NOT EXISTS "public"."kms_envelopes_records" (
 *   index_name text NOT NULL,
 *   kind       text NOT NULL CHECK (kind IN ('dek', 'meta')),
 *   id         text NOT NULL,
 *   value      bytea NOT NULL,
 *   PRIMARY KEY (index_name, kind, id)
 * );
 * ```
 *
 * A schema other than `public` is created first (`CREATE SCHEMA IF NOT EXISTS`). `version` and
 * `creation_id` repeat what the envelope bytes say, for the server-side compare-and-set; every
 * read still verifies the bytes, and a row whose columns disagree with them is malformed.
 * @throws InvalidArgumentError for a bad schema or table name.
 */
export function postgresStoreDdl(options: PostgresStoreTables = {}): string {
  const names = tableNames(options);
  return ddlOf(names, options.schema !== undefined && options.schema !== DEFAULT_POSTGRES_SCHEMA);
}

function ddlOf(names: ReturnType<typeof tableNames>, createSchema: boolean): string {
  return `${createSchema ? `CREATE SCHEMA IF NOT EXISTS ${names.schema};\n` : ''}CREATE TABLE IF NOT EXISTS ${names.envelopes} (
  index_name  text PRIMARY KEY,
  envelope    bytea NOT NULL,
  version     bigint NOT NULL CHECK (version BETWEEN 0 AND 4294967295),
  creation_id bytea,
  updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS ${names.records} (
  index_name text NOT NULL,
  kind       text NOT NULL CHECK (kind IN ('dek', 'meta')),
  id         text NOT NULL,
  value      bytea NOT NULL,
  PRIMARY KEY (index_name, kind, id)
);
`;
}

/** Every column is read as the text Postgres sends: the store parses it (see {@link byteaBytes}). */
const TEXT_COLUMNS: PostgresQuery['types'] = { getTypeParser: () => (value: string) => value };

const LIMIT = KmsBlobLimits.maxEnvelopeBytes;

/** A compare-and-set that keeps losing the race to plain writers gives up after this many rounds. */
const MAX_CAS_ROUNDS = 100;

/**
 * Parses a connection string once, where it enters.
 * @throws InvalidArgumentError for anything but a `postgres://` / `postgresql://` URL (the message
 * never repeats it: it may hold a password).
 */
function parseConnectionString(value: unknown): URL {
  let parsed: URL | undefined;
  try {
    parsed = typeof value === 'string' ? new URL(value) : undefined;
  } catch {
    parsed = undefined; // the URL error's `input` holds the whole string: not kept as cause
  }
  if (parsed === undefined || (parsed.protocol !== 'postgres:' && parsed.protocol !== 'postgresql:'))
    throw new InvalidArgumentError(
      'the Postgres store needs a connectionString like postgres://[user[:password]@]host[:port]/database',
    );
  return parsed;
}

/** A connection string without its secrets: the password and any parameter that may be one. */
export function redactConnectionString(url: URL): string {
  const shown = new URL(url.href);
  if (shown.password) shown.password = '***';
  for (const name of [...shown.searchParams.keys()]) {
    if (/pass|secret|token|key/i.test(name)) shown.searchParams.set(name, '***');
  }
  return shown.toString();
}

/** The secrets of a connection string, to scrub from any message that might echo one. */
function secretsOf(url: URL): string[] {
  const secrets = [url.password, decodeURIComponentSafe(url.password)];
  for (const [name, value] of url.searchParams) if (/pass|secret|token|key/i.test(name)) secrets.push(value);
  return secrets.filter((s) => s.length >= 3);
}

function decodeURIComponentSafe(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

/**
 * A `bytea` column as the text Postgres sends it, as bytes, or `undefined` if it is not one: the
 * hex format (`\x` then hex digits, the default `bytea_output`) or the escape format (a server or
 * session with `bytea_output = escape`: `\\` for a backslash, `\ooo` for other bytes, printable
 * ASCII as itself). Sent as is, the server does no `encode(…)` per read.
 */
export function byteaBytes(text: unknown): Buffer | undefined {
  if (typeof text !== 'string') return undefined;
  if (text.startsWith('\\x')) {
    const digits = text.length - 2;
    if (digits % 2 !== 0) return undefined;
    const bytes = Buffer.from(text.slice(2), 'hex');
    // Buffer.from stops at the first non-hex character instead of failing.
    return bytes.length * 2 === digits ? bytes : undefined;
  }
  const out: number[] = [];
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code !== 0x5c) {
      if (code < 0x20 || code > 0x7e) return undefined;
      out.push(code);
    } else if (text[i + 1] === '\\') {
      out.push(0x5c);
      i++;
    } else if (/^[0-3][0-7]{2}$/.test(text.slice(i + 1, i + 4))) {
      out.push(Number.parseInt(text.slice(i + 1, i + 4), 8));
      i += 3;
    } else {
      return undefined;
    }
  }
  return Buffer.from(out);
}

function hex(bytes: Uint8Array | undefined): string | null {
  return bytes === undefined || bytes.length === 0
    ? null
    : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
}

/** A pool and, when the store opened it, the handle that ends it. */
interface OpenPool {
  readonly pool: PostgresPoolLike;
  readonly own?: { end(): Promise<void> };
}

/** What one envelope row holds once checked: the bytes and the columns beside them. */
interface EnvelopeRow {
  readonly bytes: Buffer;
  readonly version: unknown;
  readonly creationId: unknown;
}

/**
 * Envelopes and records in PostgreSQL (node-postgres `pg`, an optional peer dependency imported
 * only when the store opens its own pool). Tables: see {@link postgresStoreDdl}; created on first
 * use unless `createTables: false`, always schema-qualified (never found through `search_path`).
 *
 * - create: `INSERT … ON CONFLICT DO NOTHING`; no row inserted is `EnvelopeExistsError`;
 * - push: an upsert; with `expectedVersion`, a compare-and-set: the stored row is read and its
 *   bytes verified (`decodeStored`, as every store does, so a corrupt value is refused and never
 *   compared), then one `UPDATE … WHERE index_name = $1 AND sha256(envelope) = <hash of the bytes
 *   verified> AND version = … AND creation_id IS NOT DISTINCT FROM …` that the server decides: it
 *   writes only over exactly the envelope that was verified, and a row changed in between is read
 *   again;
 * - get / getEncoded: one `SELECT` that sends the value only when `octet_length` is within the
 *   64 KiB envelope limit (records: twice that, as on disk and in Redis), so an oversized value
 *   planted by a store writer never crosses the network; `get` decodes and verifies the bytes and
 *   refuses a row whose `version` / `creation_id` columns disagree with them;
 * - delete: `DELETE`, idempotent; records stay (as in the other stores).
 *
 * Errors: a refused, dropped or timed-out connection, a server shutting down, too many
 * connections, a statement or lock timeout are `StoreUnavailableError` (retryable) naming the
 * index, with the `pg` error as `cause`; SQLSTATE 42501 / 28P01 / 28000 are `AccessDeniedError`.
 * No message or `description` contains the connection string's password.
 */
export class PostgresStore implements EnvelopeStore, RecordStore {
  readonly kind = 'postgres';
  readonly description: string;
  readonly #options: PostgresStoreOptions;
  readonly #names: ReturnType<typeof tableNames>;
  readonly #url: URL | undefined;
  readonly #secrets: string[];
  readonly #timeoutMs: number;
  readonly #sql: ReturnType<typeof statements>;
  /** Statement name per text of {@link statements}; empty with `preparedStatements: false`. */
  readonly #statementNames: ReadonlyMap<string, string>;
  /** The pool once open (and the tables there), so the hot path skips awaiting a promise. */
  #ready: OpenPool | undefined;
  #opening: Promise<OpenPool> | undefined;

  /**
   * Connects lazily: nothing is opened (or imported) before the first call.
   * @throws InvalidArgumentError without exactly one of `connectionString` / `pool`, with a
   * connection string that is not a `postgres://` URL, a bad schema or table name, or a timeout or
   * pool size that is not a positive number.
   */
  constructor(options: PostgresStoreOptions) {
    if (options?.pool === undefined && options?.connectionString === undefined)
      throw new InvalidArgumentError('the Postgres store needs a connectionString or a pool');
    if (options.pool !== undefined && options.connectionString !== undefined)
      throw new InvalidArgumentError('the Postgres store takes a connectionString or a pool, not both');
    if (options.pool !== undefined && typeof options.pool.query !== 'function')
      throw new InvalidArgumentError('the Postgres store needs a node-postgres Pool (with query())');
    for (const [name, value] of [
      ['queryTimeoutMs', options.queryTimeoutMs],
      ['connectTimeoutMs', options.connectTimeoutMs],
      ['maxConnections', options.maxConnections],
    ] as const) {
      if (value !== undefined && !(Number.isSafeInteger(value) && value > 0))
        throw new InvalidArgumentError(`${name} must be a positive integer`);
    }
    this.#names = tableNames(options);
    this.#url =
      options.connectionString === undefined ? undefined : parseConnectionString(options.connectionString);
    this.#secrets = this.#url === undefined ? [] : secretsOf(this.#url);
    this.#options = options;
    this.#timeoutMs = options.queryTimeoutMs ?? 5000;
    this.#sql = statements(this.#names);
    this.#statementNames = new Map(
      options.preparedStatements === false
        ? []
        : Object.values(this.#sql).map((text) => [
            text,
            `kms_envelope_${createHash('sha256').update(text).digest('hex').slice(0, 24)}`,
          ]),
    );
    this.description = `${this.#url ? redactConnectionString(this.#url) : 'postgres:(pool supplied)'} table ${this.#names.label}`;
  }

  async create(index: IndexName, blob: KmsBlob): Promise<void> {
    const name = checkWrite(index, blob);
    const bytes = Buffer.from(encodeKmsBlob(blob));
    const result = await this.#query(name, this.#sql.create, [name, bytes, blob.version, creationIdOf(blob)]);
    if (result.rowCount !== 1) throw new EnvelopeExistsError('an envelope already exists', { index: name });
  }

  async push(index: IndexName, blob: KmsBlob, options: PushOptions = {}): Promise<void> {
    const name = checkWrite(index, blob);
    const bytes = Buffer.from(encodeKmsBlob(blob));
    const values = [name, bytes, blob.version, creationIdOf(blob)];
    if (options.expectedVersion === undefined) {
      await this.#query(name, this.#sql.upsert, values);
      return;
    }
    for (let round = 0; round < MAX_CAS_ROUNDS; round++) {
      const row = await this.#readEnvelope(name);
      const stored = row === undefined ? undefined : verifiedEnvelope(name, row);
      checkCas(name, stored, options);
      if (stored === undefined || row === undefined) {
        // checkCas throws whenever nothing is stored and a version is expected.
        throw new VersionConflictError(options.expectedVersion, undefined, { index: name });
      }
      const result = await this.#query(name, this.#sql.compareAndSet, [
        ...values,
        createHash('sha256').update(row.bytes).digest(),
        stored.version,
        creationIdOf(stored),
      ]);
      if (result.rowCount === 1) return;
      // The row changed (or went) between the read and the update: read it again.
    }
    throw new StoreUnavailableError('too many writers raced this compare-and-set', { index: name });
  }

  async get(index: IndexName): Promise<KmsBlob> {
    const name = parseIndexName(index);
    const row = await this.#readEnvelope(name);
    if (row === undefined) throw new EnvelopeNotFoundError('no envelope stored', { index: name });
    return verifiedEnvelope(name, row);
  }

  async getEncoded(index: IndexName): Promise<Uint8Array> {
    const name = parseIndexName(index);
    const row = await this.#readEnvelope(name);
    if (row === undefined) throw new EnvelopeNotFoundError('no envelope stored', { index: name });
    return row.bytes;
  }

  async delete(index: IndexName): Promise<void> {
    const name = parseIndexName(index);
    await this.#query(name, this.#sql.delete, [name]);
  }

  async putRecord(index: IndexName, kind: RecordKind, id: string, value: Uint8Array): Promise<void> {
    await this.putRecords(index, kind, new Map([[id, value]]));
  }

  async createRecord(index: IndexName, kind: RecordKind, id: string, value: Uint8Array): Promise<boolean> {
    const name = parseIndexName(index);
    checkRecordWrite(name, kind, id, value);
    const result = await this.#query(name, this.#sql.createRecord, [name, kind, id, Buffer.from(value)]);
    return result.rowCount === 1;
  }

  /** One `INSERT … SELECT FROM unnest(…) ON CONFLICT DO UPDATE`: atomic for the batch. */
  async putRecords(
    index: IndexName,
    kind: RecordKind,
    records: ReadonlyMap<string, Uint8Array>,
  ): Promise<void> {
    const name = parseIndexName(index);
    const ids: string[] = [];
    const values: Buffer[] = [];
    for (const [id, value] of records) {
      checkRecordWrite(name, kind, id, value);
      ids.push(id);
      values.push(Buffer.from(value));
    }
    if (ids.length === 0) return;
    await this.#query(name, this.#sql.putRecords, [name, kind, ids, values]);
  }

  async getRecord(index: IndexName, kind: RecordKind, id: string): Promise<Uint8Array | undefined> {
    const name = parseIndexName(index);
    checkRecordId(kind, id);
    const { rows } = await this.#query(name, this.#sql.getRecord, [name, kind, id]);
    const row = rows[0];
    return row === undefined ? undefined : new Uint8Array(recordValue(name, row[0], row[1]));
  }

  async listRecords(index: IndexName, kind: RecordKind): Promise<Map<string, Uint8Array>> {
    const name = parseIndexName(index);
    if (kind !== 'dek' && kind !== 'meta')
      throw new InvalidArgumentError('record kind must be "dek" or "meta"');
    const { rows } = await this.#query(name, this.#sql.listRecords, [name, kind]);
    const records = new Map<string, Uint8Array>();
    for (const row of rows) records.set(String(row[0]), new Uint8Array(recordValue(name, row[1], row[2])));
    return records;
  }

  async deleteRecord(index: IndexName, kind: RecordKind, id: string): Promise<void> {
    const name = parseIndexName(index);
    checkRecordId(kind, id);
    await this.#query(name, this.#sql.deleteRecord, [name, kind, id]);
  }

  /**
   * Creates the schema (unless `public`) and the tables if they are missing: the DDL of
   * {@link postgresStoreDdl}, under a transaction-scoped advisory lock so that racing processes do
   * not trip over each other's `CREATE TABLE`. What the store runs on first use unless
   * `createTables: false`; call it from a migration step instead if you prefer.
   * @throws StoreUnavailableError or AccessDeniedError (the role may not create tables).
   */
  async migrate(): Promise<void> {
    let opened: OpenPool;
    try {
      opened = await this.#connected();
    } catch (err) {
      throw this.#mapError(err, undefined);
    }
    // Also when opening just ran it (createTables): idempotent, and migrate() always runs it.
    await this.#run(opened.pool, undefined, this.#migrationSql(), []);
  }

  /**
   * Ends the pool the store opened (a later call opens a new one); a pool passed in stays open.
   * Idempotent.
   */
  async close(): Promise<void> {
    const opening = this.#opening;
    const ready = this.#ready;
    this.#opening = undefined;
    this.#ready = undefined;
    const opened = ready ?? (await opening?.catch(() => undefined));
    await opened?.own?.end().catch(() => undefined);
  }

  /** The one row of `name`, the value sent only within the limit, or `undefined`. */
  async #readEnvelope(name: IndexName): Promise<EnvelopeRow | undefined> {
    const { rows } = await this.#query(name, this.#sql.get, [name]);
    const row = rows[0];
    if (row === undefined) return undefined;
    const [size, value, version, creationId] = row;
    return { bytes: sizedValue(name, size, value, LIMIT, 'the stored envelope'), version, creationId };
  }

  #migrationSql(): string {
    // One simple-protocol query is one transaction: the advisory lock is held until its end.
    const lock = createHash('sha256').update(`kms-envelope:${this.#names.label}`).digest().readInt32BE(0);
    return `SELECT pg_advisory_xact_lock(${lock});\n${ddlOf(this.#names, this.#names.schema !== `"${DEFAULT_POSTGRES_SCHEMA}"`)}`;
  }

  /** The pool, opened (and the tables created) on first use. */
  #connected(): Promise<OpenPool> {
    if (this.#ready !== undefined) return Promise.resolve(this.#ready);
    if (this.#opening === undefined) {
      const opening = this.#open();
      this.#opening = opening;
      opening.then(
        (opened) => {
          if (this.#opening !== opening) return; // closed meanwhile: close() ends it
          this.#ready = opened;
          this.#opening = undefined;
        },
        () => {
          if (this.#opening === opening) this.#opening = undefined;
        },
      );
    }
    return this.#opening;
  }

  async #open(): Promise<OpenPool> {
    let opened: OpenPool;
    if (this.#options.pool !== undefined) {
      opened = { pool: this.#options.pool };
    } else {
      const pg = await importOptional('pg', 'the Postgres store', () =>
        importPeer<typeof import('pg')>('pg'),
      );
      // pg is CommonJS: its exports are the default export, and usually named ones too.
      const { Pool } = (pg as unknown as { default?: typeof pg }).default ?? pg;
      const own = new Pool({
        // As given (checked in the constructor): node-postgres parses it its own way.
        connectionString: this.#options.connectionString!,
        max: this.#options.maxConnections ?? 10,
        connectionTimeoutMillis: this.#options.connectTimeoutMs ?? 2000,
        statement_timeout: this.#timeoutMs,
        lock_timeout: this.#timeoutMs,
        keepAlive: true,
        application_name: 'kms-envelope',
      });
      // A backend that dies while its connection is idle (a restart, pg_terminate_backend) is
      // reported here; the pool drops that connection and the next query opens another. Without
      // a listener node-postgres would throw it as an uncaught 'error' event.
      own.on('error', () => {});
      opened = { pool: own, own };
    }
    if (this.#options.createTables !== false) {
      try {
        // Unmapped here: the caller maps the error with the index it was called for.
        const { rows } = await this.#send(opened.pool, this.#sql.tablesExist, []);
        if (rows[0]?.[0] !== 'true') await this.#send(opened.pool, this.#migrationSql(), []);
      } catch (err) {
        await opened.own?.end().catch(() => undefined);
        throw err;
      }
    }
    return opened;
  }

  #query(index: IndexName, text: string, values: unknown[]) {
    const ready = this.#ready;
    if (ready !== undefined) return this.#run(ready.pool, index, text, values);
    return this.#connected().then(
      (opened) => this.#run(opened.pool, index, text, values),
      (err: unknown) => {
        throw this.#mapError(err, index);
      },
    );
  }

  async #run(pool: PostgresPoolLike, index: IndexName | undefined, text: string, values: unknown[]) {
    try {
      return await this.#send(pool, text, values);
    } catch (err) {
      throw this.#mapError(err, index);
    }
  }

  #send(pool: PostgresPoolLike, text: string, values: unknown[]) {
    // Parameterless statements stay unnamed: the migration is several statements in one
    // simple-protocol query (one transaction, which holds the advisory lock).
    const name = values.length > 0 ? this.#statementNames.get(text) : undefined;
    const query: PostgresQuery = {
      text,
      ...(name === undefined ? {} : { name }),
      rowMode: 'array',
      types: TEXT_COLUMNS,
      query_timeout: this.#timeoutMs,
      ...(values.length > 0 ? { values } : {}),
    };
    // Promise.resolve: a pool may answer with any thenable, or throw synchronously.
    try {
      return Promise.resolve(pool.query(query));
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /** Any failure as the store's typed error; the message scrubbed of the connection's secrets. */
  #mapError(err: unknown, index: IndexName | undefined): unknown {
    if (err instanceof KmsEnvelopeError) return err;
    const sqlState =
      typeof (err as { code?: unknown })?.code === 'string' ? (err as { code: string }).code : '';
    let message = messageOf(err);
    for (const secret of this.#secrets) message = message.split(secret).join('***');
    if (sqlState === '42501' || sqlState === '28P01' || sqlState === '28000')
      return new AccessDeniedError(`PostgreSQL refused the credentials or permissions: ${message}`, {
        index,
        cause: err,
      });
    if (sqlState === '42P01' || sqlState === '3F000')
      return new StoreUnavailableError(
        `the store's tables ${this.#names.label} do not exist (run migrate() or the DDL of postgresStoreDdl(), or allow createTables): ${message}`,
        { index, cause: err },
      );
    const state = /^[0-9A-Z]{5}$/.test(sqlState) ? ` (SQLSTATE ${sqlState})` : '';
    return new StoreUnavailableError(`PostgreSQL is unavailable: ${message}${state}`, { index, cause: err });
  }
}

/**
 * The first line of an error's message; for node's AggregateError (a host name that resolved to
 * several addresses, each refused), which has an empty message, the first inner error's.
 */
function messageOf(err: unknown): string {
  if (err instanceof AggregateError && err.message === '' && err.errors.length > 0)
    return messageOf(err.errors[0]);
  if (err instanceof Error) return err.message.split('\n')[0] || (err as { code?: string }).code || err.name;
  return String(err);
}

/** The creation id as the `creation_id` column holds it: NULL for none. */
function creationIdOf(blob: KmsBlob): Buffer | null {
  const id = blob.creationId;
  return id === undefined || id.length === 0 ? null : Buffer.from(id);
}

/**
 * The envelope of a row: its bytes decoded and verified, and the columns the server-side
 * compare-and-set uses equal to what the bytes say.
 * @throws MalformedEnvelopeError
 */
function verifiedEnvelope(name: IndexName, row: EnvelopeRow): KmsBlob {
  const blob = decodeStored(name, row.bytes);
  const storedId =
    row.creationId === null || row.creationId === undefined
      ? null
      : (byteaBytes(row.creationId)?.toString('hex') ?? 'not bytes');
  if (row.version !== String(blob.version) || storedId !== hex(blob.creationId))
    throw new MalformedEnvelopeError(
      'the stored row is inconsistent: its version or creation_id column differs from the envelope bytes',
      { index: name },
    );
  return blob;
}

/** A record value column pair (size, bytea or NULL when over the limit) as bytes. */
function recordValue(name: IndexName, size: unknown, value: unknown): Buffer {
  return sizedValue(name, size, value, MAX_RECORD_BYTES, 'a stored record');
}

/**
 * A (size, bytea or NULL when over `limit`) column pair as bytes: the server sends a value only
 * within the limit, so a larger one is refused without having been transferred.
 * @throws MalformedEnvelopeError
 */
function sizedValue(name: IndexName, size: unknown, value: unknown, limit: number, what: string): Buffer {
  if (size === null || size === undefined)
    throw new MalformedEnvelopeError(`${what} is NULL`, { index: name });
  if (Number(size) > limit)
    throw new MalformedEnvelopeError(
      `${what} is larger than ${limit} bytes (refused by the server before it was sent)`,
      { index: name },
    );
  const bytes = byteaBytes(value);
  if (bytes === undefined || bytes.length !== Number(size))
    throw new MalformedEnvelopeError(`${what} did not arrive as bytes`, { index: name });
  return bytes;
}

/** The statements of a store, built once from its validated table names. */
function statements(names: ReturnType<typeof tableNames>) {
  const e = names.envelopes;
  const r = names.records;
  return {
    // The names are quoted identifiers of [a-z0-9_] only: nothing to escape inside the literal.
    tablesExist: `SELECT (to_regclass('${e}') IS NOT NULL AND to_regclass('${r}') IS NOT NULL)::text`,
    create: `INSERT INTO ${e} (index_name, envelope, version, creation_id) VALUES ($1, $2, $3, $4) ON CONFLICT (index_name) DO NOTHING`,
    upsert: `INSERT INTO ${e} (index_name, envelope, version, creation_id) VALUES ($1, $2, $3, $4)
ON CONFLICT (index_name) DO UPDATE SET envelope = EXCLUDED.envelope, version = EXCLUDED.version, creation_id = EXCLUDED.creation_id, updated_at = now()`,
    compareAndSet: `UPDATE ${e} SET envelope = $2, version = $3, creation_id = $4, updated_at = now()
WHERE index_name = $1 AND sha256(envelope) = $5 AND version = $6 AND creation_id IS NOT DISTINCT FROM $7`,
    get: `SELECT octet_length(envelope), CASE WHEN octet_length(envelope) <= ${LIMIT} THEN envelope END, version, creation_id FROM ${e} WHERE index_name = $1`,
    delete: `DELETE FROM ${e} WHERE index_name = $1`,
    createRecord: `INSERT INTO ${r} (index_name, kind, id, value) VALUES ($1, $2, $3, $4) ON CONFLICT (index_name, kind, id) DO NOTHING`,
    putRecords: `INSERT INTO ${r} (index_name, kind, id, value) SELECT $1, $2, t.id, t.value FROM unnest($3::text[], $4::bytea[]) AS t(id, value)
ON CONFLICT (index_name, kind, id) DO UPDATE SET value = EXCLUDED.value`,
    getRecord: `SELECT octet_length(value), CASE WHEN octet_length(value) <= ${MAX_RECORD_BYTES} THEN value END FROM ${r} WHERE index_name = $1 AND kind = $2 AND id = $3`,
    deleteRecord: `DELETE FROM ${r} WHERE index_name = $1 AND kind = $2 AND id = $3`,
    listRecords: `SELECT id, octet_length(value), CASE WHEN octet_length(value) <= ${MAX_RECORD_BYTES} THEN value END FROM ${r} WHERE index_name = $1 AND kind = $2 ORDER BY id COLLATE "C"`,
  };
}
