/**
 * Cross-instance invalidation over PostgreSQL: a trigger on the store's envelope table sends
 * `NOTIFY` with the index name on every insert, update and delete (by any client: the server
 * does it), and the feed `LISTEN`s on one connection of its own.
 *
 * `TRUNCATE` notifies `*`, reported as `lost` (every cached KEK is dropped). When the listening
 * connection drops (a failover, `pg_terminate_backend`, a restart), the feed reports `lost`,
 * reconnects with backoff, listens again, and reports `lost` once more (entries loaded meanwhile
 * were not covered). A notification is delivered after the writing transaction commits, so a
 * reader that hears it reads the new envelope.
 *
 * @module
 */
import { createHash } from 'node:crypto';
import { InvalidArgumentError } from '../errors.js';
import { isValidIndexName } from '../names.js';
import { importOptional, importPeer } from '../providers/support.js';
import type { InvalidationFeed, InvalidationListener } from '../unwrap/invalidation.js';
import { DEFAULT_POSTGRES_SCHEMA, DEFAULT_POSTGRES_TABLE, type PostgresStoreTables } from './postgres.js';

/** Options of {@link postgresInvalidationFeed}. */
export interface PostgresInvalidationOptions extends PostgresStoreTables {
  /** The store's database: `postgres://…` (the feed opens one connection of its own). */
  readonly connectionString: string;
  /**
   * Create (or replace) the notify trigger on start (default true); needs the table owner's
   * rights. Set false when {@link postgresInvalidationDdl} ran as a migration.
   */
  readonly installTrigger?: boolean;
  /** Longest wait between reconnection attempts, in ms (default 5000). */
  readonly maxReconnectDelayMs?: number;
}

/** The one `pg.Client` the feed uses, typed by the calls it makes. */
interface ListenClient {
  connect(): Promise<unknown>;
  query(sql: string): Promise<unknown>;
  end(): Promise<void>;
  on(event: 'notification', listener: (message: { channel: string; payload?: string }) => void): unknown;
  on(event: 'error' | 'end', listener: (err?: Error) => void): unknown;
}

const IDENTIFIER = /^[a-z_][a-z0-9_]*$/;

function names(options: PostgresStoreTables) {
  const schema = options.schema ?? DEFAULT_POSTGRES_SCHEMA;
  const table = options.table ?? DEFAULT_POSTGRES_TABLE;
  for (const [what, name] of [
    ['schema', schema],
    ['table', table],
  ] as const) {
    if (typeof name !== 'string' || !IDENTIFIER.test(name) || name.length > 63) {
      throw new InvalidArgumentError(`the Postgres feed's ${what} must match [a-z_][a-z0-9_]*`);
    }
  }
  // One channel and function per table, short enough for an identifier whatever the names.
  const tag = createHash('sha256').update(`${schema}.${table}`).digest('hex').slice(0, 16);
  return {
    table: `"${schema}"."${table}"`,
    channel: `kms_envelope_${tag}`,
    fn: `"${schema}"."kms_envelope_notify_${tag}"`,
    trigger: `"kms_envelope_notify_${tag}"`,
    truncateTrigger: `"kms_envelope_truncate_${tag}"`,
  };
}

/**
 * The trigger that makes the server notify every change of the envelope table (idempotent), for
 * running as a migration. With the default table:
 *
 * ```sql
 * CREATE OR REPLACE FUNCTION "public"."kms_envelope_notify_<tag>"() RETURNS trigger LANGUAGE plpgsql AS $fn$
 * BEGIN
 *   IF TG_OP = 'TRUNCATE' THEN PERFORM pg_notify('kms_envelope_<tag>', '*');
 *   ELSIF TG_OP = 'DELETE' THEN PERFORM pg_notify('kms_envelope_<tag>', OLD.index_name);
 *   ELSE PERFORM pg_notify('kms_envelope_<tag>', NEW.index_name);
 *   END IF;
 *   RETURN NULL;
 * END $fn$;
 * CREATE OR REPLACE TRIGGER … AFTER INSERT OR UPDATE OR DELETE ON "public"."kms_envelopes" FOR EACH ROW …;
 * CREATE OR REPLACE TRIGGER … AFTER TRUNCATE ON "public"."kms_envelopes" FOR EACH STATEMENT …;
 * ```
 *
 * `<tag>` is the first 16 hex digits of SHA-256 of `schema.table`. Needs PostgreSQL 14+.
 * @throws InvalidArgumentError for a bad schema or table name.
 */
export function postgresInvalidationDdl(options: PostgresStoreTables = {}): string {
  const n = names(options);
  return `CREATE OR REPLACE FUNCTION ${n.fn}() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
  IF TG_OP = 'TRUNCATE' THEN PERFORM pg_notify('${n.channel}', '*');
  ELSIF TG_OP = 'DELETE' THEN PERFORM pg_notify('${n.channel}', OLD.index_name);
  ELSE PERFORM pg_notify('${n.channel}', NEW.index_name);
  END IF;
  RETURN NULL;
END $fn$;
CREATE OR REPLACE TRIGGER ${n.trigger} AFTER INSERT OR UPDATE OR DELETE ON ${n.table}
  FOR EACH ROW EXECUTE FUNCTION ${n.fn}();
CREATE OR REPLACE TRIGGER ${n.truncateTrigger} AFTER TRUNCATE ON ${n.table}
  FOR EACH STATEMENT EXECUTE FUNCTION ${n.fn}();
`;
}

/**
 * A feed of the changes to the envelopes of a Postgres store (see the module comment). The
 * store's tables must exist (open the store once, or run its migration) before the feed installs
 * its trigger. `pg` is loaded when it starts.
 * @throws InvalidArgumentError for a missing connection string or bad names.
 */
export function postgresInvalidationFeed(options: PostgresInvalidationOptions): InvalidationFeed {
  if (
    typeof options?.connectionString !== 'string' ||
    !/^postgres(ql)?:\/\//.test(options.connectionString)
  ) {
    throw new InvalidArgumentError(
      'postgresInvalidationFeed needs the connectionString of the store (postgres://…)',
    );
  }
  return new PostgresInvalidationFeed(options, names(options));
}

class PostgresInvalidationFeed implements InvalidationFeed {
  readonly #options: PostgresInvalidationOptions;
  readonly #names: ReturnType<typeof names>;
  #listener: InvalidationListener | undefined;
  #client: ListenClient | undefined;
  #closed = false;
  #armed = false;
  #retry: ReturnType<typeof setTimeout> | undefined;
  #delay = 100;
  #Client: (new (config: { connectionString: string }) => ListenClient) | undefined;

  constructor(options: PostgresInvalidationOptions, n: ReturnType<typeof names>) {
    this.#options = options;
    this.#names = n;
  }

  async start(listener: InvalidationListener): Promise<void> {
    this.#listener = listener;
    const pg = await importOptional('pg', 'the Postgres invalidation feed', () =>
      importPeer<typeof import('pg')>('pg'),
    );
    const module = ((pg as { default?: unknown }).default ?? pg) as {
      Client: new (config: { connectionString: string }) => ListenClient;
    };
    this.#Client = module.Client;
    await this.#listen(this.#options.installTrigger !== false);
  }

  /** Connects, (installs the trigger,) listens; on any loss, reports and reconnects. */
  async #listen(install: boolean): Promise<void> {
    const client = new this.#Client!({ connectionString: this.#options.connectionString });
    this.#client = client;
    client.on('error', () => this.#lost(client, 'the listening connection failed'));
    client.on('end', () => this.#lost(client, 'the listening connection ended'));
    client.on('notification', (message) => {
      if (message.channel !== this.#names.channel || this.#listener === undefined) return;
      const payload = message.payload ?? '';
      if (payload === '*') this.#listener.lost('the envelope table was truncated');
      else if (isValidIndexName(payload)) this.#listener.changed(payload);
    });
    try {
      await client.connect();
      if (install) await client.query(postgresInvalidationDdl(this.#options));
      await client.query(`LISTEN "${this.#names.channel}"`);
    } catch (err) {
      await client.end().catch(() => {});
      throw err;
    }
    const rearmed = this.#wasArmed;
    this.#armed = true;
    this.#wasArmed = true;
    this.#delay = 100;
    if (rearmed) this.#listener?.lost('listening again after a lost connection');
  }

  #wasArmed = false;

  #lost(client: ListenClient, reason: string): void {
    if (this.#closed || client !== this.#client || !this.#armed) return;
    this.#armed = false;
    this.#client = undefined;
    client.end().catch(() => {});
    this.#listener?.lost(reason);
    this.#reconnect();
  }

  #reconnect(): void {
    if (this.#closed) return;
    this.#retry = setTimeout(() => {
      this.#listen(false).catch(() => {
        this.#delay = Math.min(this.#delay * 2, this.#options.maxReconnectDelayMs ?? 5000);
        this.#reconnect();
      });
    }, this.#delay);
    this.#retry.unref?.();
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#armed = false;
    if (this.#retry) clearTimeout(this.#retry);
    await this.#client?.end().catch(() => {});
    this.#client = undefined;
  }
}
