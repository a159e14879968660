import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { inspect } from 'node:util';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeKmsBlob, encodeKmsBlob } from '../../src/envelope/codec.js';
import {
  AccessDeniedError,
  EnvelopeNotFoundError,
  InvalidArgumentError,
  type KmsEnvelopeError,
  MalformedEnvelopeError,
  StoreUnavailableError,
  VersionConflictError,
} from '../../src/errors.js';
import { parseIndexName } from '../../src/names.js';
import { StorageConfig } from '../../src/storage/config.js';
import { byteaBytes, PostgresStore, postgresStoreDdl } from '../../src/storage/postgres.js';
import { type PostgresServerHandle, startPostgres } from '../../src/testing/postgres-server.js';
import { sampleBlob } from '../helpers/blobs.js';
import { findSecret } from '../helpers/find-secret.js';
import { hasPostgres } from '../helpers/services.js';
import { runStoreConformance } from './conformance.js';

const available = hasPostgres();
const idx = parseIndexName('orders');

describe('Postgres store without a server', () => {
  it('the harness names how to install PostgreSQL when it is missing', async () => {
    await expect(startPostgres({ binDir: '/nonexistent/postgresql/bin' })).rejects.toThrow(
      /apt-get install postgresql/,
    );
  });

  it('StorageConfig.postgres and parse("postgres://…" / "postgresql://…") build a store without connecting', async () => {
    const a = StorageConfig.parse('postgres://app@db.internal:5432/keys');
    expect(a).toBeInstanceOf(PostgresStore);
    expect(a.kind).toBe('postgres');
    expect(a.description).toBe('postgres://app@db.internal:5432/keys table public.kms_envelopes');
    expect(StorageConfig.parse('postgresql://db.internal/keys')).toBeInstanceOf(PostgresStore);
    const b = StorageConfig.postgres({ connectionString: 'postgres://db/keys', schema: 'kms', table: 'env' });
    expect(b.description).toBe('postgres://db/keys table kms.env');
    await Promise.all([a.close(), b.close()]); // never connected: nothing to close
  });

  it('schema and table names: only [a-z_][a-z0-9_]* (quoted), anything else is InvalidArgumentError', () => {
    const connectionString = 'postgres://db/keys';
    for (const bad of [
      '',
      'Orders',
      'a-b',
      'a"b',
      '1x',
      'a b',
      'a;drop table x',
      'a.b',
      'é',
      'x'.repeat(64),
    ]) {
      expect(() => new PostgresStore({ connectionString, schema: bad })).toThrow(InvalidArgumentError);
      expect(() => new PostgresStore({ connectionString, table: bad })).toThrow(InvalidArgumentError);
      expect(() => postgresStoreDdl({ table: bad })).toThrow(InvalidArgumentError);
    }
    // The records table is <table>_records: the table name leaves room for the suffix.
    expect(() => new PostgresStore({ connectionString, table: 'x'.repeat(56) })).toThrow(
      InvalidArgumentError,
    );
    expect(new PostgresStore({ connectionString, table: 'x'.repeat(55) }).description).toContain(
      'x'.repeat(55),
    );
    expect(postgresStoreDdl({ schema: 'kms', table: 'env' })).toContain(
      'CREATE TABLE IF NOT EXISTS "kms"."env_records"',
    );
    expect(postgresStoreDdl({ schema: 'kms' })).toMatch(/^CREATE SCHEMA IF NOT EXISTS "kms";/);
    expect(postgresStoreDdl()).not.toContain('CREATE SCHEMA');
    expect(StorageConfig.postgresDdl()).toBe(postgresStoreDdl());
  });

  it('bad options are InvalidArgumentError: neither or both of connectionString / pool, other URLs, bad numbers', () => {
    const pool = { query: async () => ({ rowCount: 0, rows: [] }) };
    expect(() => new PostgresStore({})).toThrow(InvalidArgumentError);
    expect(() => new PostgresStore({ pool, connectionString: 'postgres://db/x' })).toThrow(
      InvalidArgumentError,
    );
    expect(() => new PostgresStore({ connectionString: 'redis://db/x' })).toThrow(InvalidArgumentError);
    expect(() => new PostgresStore({ pool: {} as never })).toThrow(InvalidArgumentError);
    for (const bad of [0, -1, 1.5, Number.NaN])
      expect(() => new PostgresStore({ pool, queryTimeoutMs: bad })).toThrow(InvalidArgumentError);
    expect(new PostgresStore({ pool }).description).toBe(
      'postgres:(pool supplied) table public.kms_envelopes',
    );
  });

  it('never shows a password: description, parse errors, query-parameter passwords', () => {
    const secret = 'S3cret-Passw0rd';
    for (const connectionString of [
      `postgres://app:${secret}@db.internal:5432/keys`,
      `postgresql://:${secret}@db.internal/keys`,
      `postgres://app@db.internal/keys?password=${secret}&sslmode=require`,
      `postgres://app@db.internal/keys?sslpassword=${secret}`,
    ]) {
      const store = new PostgresStore({ connectionString });
      expect(store.description).not.toContain(secret);
      expect(StorageConfig.parse(connectionString).description).not.toContain(secret);
    }
    for (const bad of [
      `postgres//app:${secret}@db`,
      `postgres://app:${secret}@[bad`,
      `mysql://app:${secret}@db/x`,
    ]) {
      const err = (() => {
        try {
          new PostgresStore({ connectionString: bad });
        } catch (e) {
          return e;
        }
      })();
      expect(err).toBeInstanceOf(InvalidArgumentError);
      expect(findSecret(err, Buffer.from(secret))).toBeUndefined();
      expect(inspect(err, { depth: 10 })).not.toContain(secret);
    }
  });
});

/**
 * A TCP proxy that counts the bytes the server sends, to show what crosses the network.
 */
async function countingProxy(
  port: number,
): Promise<{ port: number; received: () => number; close: () => Promise<void> }> {
  let received = 0;
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    const upstream = createConnection({ port, host: '127.0.0.1' });
    sockets.add(client).add(upstream);
    upstream.on('data', (d: Buffer) => {
      received += d.length;
    });
    client.pipe(upstream).pipe(client);
    const end = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (typeof address !== 'object' || address === null) throw new Error('no proxy port');
  return {
    port: address.port,
    received: () => received,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

describe.skipIf(!available)('Postgres store against a real PostgreSQL', () => {
  let server: PostgresServerHandle;
  let admin: pg.Pool;
  let tableCounter = 0;
  /** A fresh table name, so each test starts from empty tables. */
  const freshTable = () => `t${tableCounter++}`;

  beforeAll(async () => {
    server = await startPostgres();
    admin = new pg.Pool({ connectionString: server.connectionString, max: 2 });
    admin.on('error', () => {});
  });
  afterAll(async () => {
    await admin?.end();
    await server?.stop();
  });

  runStoreConformance('postgres', async () => {
    const table = freshTable();
    const connectionString = server.connectionString;
    const store = new PostgresStore({ connectionString, table });
    return {
      store,
      another: async () => new PostgresStore({ connectionString, table, maxConnections: 2 }),
      corrupt: async (index) => {
        await admin.query(`UPDATE public.${table} SET envelope = $2 WHERE index_name = $1`, [
          index,
          Buffer.from('junk that is not an envelope'),
        ]);
      },
      cleanup: async () => {
        await store.close();
      },
    };
  });

  it('the harness: a SCRAM password over TCP, psql over the socket, shutdown/start keeps the data, stop removes it', async () => {
    expect(server.connectionString).toBe(
      `postgresql://postgres:${server.password}@127.0.0.1:${server.port}/postgres`,
    );
    expect(await server.psql('SHOW password_encryption')).toBe('scram-sha-256');
    const own = await startPostgres();
    await own.psql('CREATE TABLE kept (v int); INSERT INTO kept VALUES (42)');
    const pid = own.pid;
    await own.shutdown();
    await own.shutdown();
    expect(own.pid).toBeUndefined();
    await own.start();
    expect(own.pid).not.toBe(pid);
    expect(await own.psql('SELECT v FROM kept')).toBe('42');
    await own.stop();
    await own.stop();
    await expect(own.start()).rejects.toThrow(/removed/);
  });

  it('bytea arrives as sent, in the hex or the escape output format (a session with bytea_output = escape), and prepared statements can be off', async () => {
    const table = freshTable();
    const escapePool = new pg.Pool({
      connectionString: server.connectionString,
      max: 1,
      options: '-c bytea_output=escape',
    });
    escapePool.on('error', () => {});
    try {
      const store = new PostgresStore({ pool: escapePool, table, preparedStatements: false });
      const blob = sampleBlob(idx, { version: 3 });
      await store.create(idx, blob);
      expect(await store.get(idx)).toEqual(blob);
      expect(Buffer.from(await store.getEncoded(idx)).equals(Buffer.from(encodeKmsBlob(blob)))).toBe(true);
      const record = new Uint8Array([0, 0x5c, 0x7f, 0x80, 0xff, 0x41, 0x0a]);
      await store.putRecord(idx, 'dek', 'r1', record);
      expect(await store.getRecord(idx, 'dek', 'r1')).toEqual(record);
      expect((await store.listRecords(idx, 'dek')).get('r1')).toEqual(record);
      // The same rows through a store with named statements, over the default (hex) format.
      const named = new PostgresStore({ connectionString: server.connectionString, table });
      expect(await named.get(idx)).toEqual(blob);
      expect(await named.getRecord(idx, 'dek', 'r1')).toEqual(record);
      await named.close();
    } finally {
      await escapePool.end();
    }
    expect(byteaBytes('\\x00ff5c')).toEqual(Buffer.from([0, 0xff, 0x5c]));
    expect(byteaBytes('A\\\\\\000\\377')).toEqual(Buffer.from([0x41, 0x5c, 0, 0xff]));
    for (const bad of ['\\x0', '\\xzz', '\\9', 'a\\', '\u00e9', '\n', 7, null])
      expect(byteaBytes(bad)).toBeUndefined();
  });

  it('the tables: created on first use as documented; the stored value is exactly encodeKmsBlob(blob), version and creation_id beside it', async () => {
    const table = freshTable();
    const store = new PostgresStore({ connectionString: server.connectionString, table });
    const blob = sampleBlob(idx, { version: 7 });
    await store.create(idx, blob);
    const { rows } = await admin.query(`SELECT * FROM public.${table}`);
    expect(rows).toHaveLength(1);
    expect(rows[0].index_name).toBe('orders');
    expect(Buffer.from(rows[0].envelope).equals(Buffer.from(encodeKmsBlob(blob)))).toBe(true);
    expect(decodeKmsBlob(rows[0].envelope)).toEqual(blob);
    expect(rows[0].version).toBe('7');
    expect(Buffer.from(rows[0].creation_id).equals(Buffer.from(blob.creationId!))).toBe(true);
    // A schema 1 envelope has no creation id: NULL.
    const legacy = sampleBlob(parseIndexName('legacy'), { schemaVersion: 1, creationId: undefined });
    await store.push(parseIndexName('legacy'), legacy);
    expect(
      (await admin.query(`SELECT creation_id FROM public.${table} WHERE index_name = 'legacy'`)).rows[0]
        .creation_id,
    ).toBeNull();
    expect(await store.get(parseIndexName('legacy'))).toEqual(legacy);
    // The columns are the documented DDL's.
    const columns = await admin.query(
      `SELECT table_name, column_name, data_type, is_nullable FROM information_schema.columns WHERE table_name IN ($1, $2) ORDER BY table_name, ordinal_position`,
      [table, `${table}_records`],
    );
    expect(
      columns.rows.map((c) => `${c.table_name}.${c.column_name} ${c.data_type} ${c.is_nullable}`),
    ).toEqual([
      `${table}.index_name text NO`,
      `${table}.envelope bytea NO`,
      `${table}.version bigint NO`,
      `${table}.creation_id bytea YES`,
      `${table}.updated_at timestamp with time zone NO`,
      `${table}_records.index_name text NO`,
      `${table}_records.kind text NO`,
      `${table}_records.id text NO`,
      `${table}_records.value bytea NO`,
    ]);
    await store.close();
  });

  it('createTables: false uses existing tables only (missing: a retryable StoreUnavailableError naming migrate()); migrate() and postgresStoreDdl() create them', async () => {
    const table = freshTable();
    const store = new PostgresStore({
      connectionString: server.connectionString,
      table,
      createTables: false,
    });
    const err = await store.get(idx).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StoreUnavailableError);
    expect((err as Error).message).toMatch(/tables public\.t\d+ do not exist.*migrate\(\).*index "orders"/);
    await store.migrate();
    await store.migrate(); // idempotent
    await store.create(idx, sampleBlob(idx));
    expect((await store.get(idx)).version).toBe(1);
    await store.close();

    // The DDL as an operator runs it, in another schema.
    await server.psql(postgresStoreDdl({ schema: 'kms_ops', table: 'envelopes' }));
    const migrated = new PostgresStore({
      connectionString: server.connectionString,
      schema: 'kms_ops',
      table: 'envelopes',
      createTables: false,
    });
    await migrated.create(idx, sampleBlob(idx));
    await migrated.putRecord(idx, 'dek', 'd1', new Uint8Array([1]));
    expect(await server.psql('SELECT count(*) FROM kms_ops.envelopes_records')).toBe('1');
    await migrated.close();

    // A schema other than public is created on first use too.
    const created = new PostgresStore({
      connectionString: server.connectionString,
      schema: 'tenant_b',
      table: freshTable(),
    });
    await created.create(idx, sampleBlob(idx));
    await created.close();
  });

  it('16 stores opening a fresh schema and table at once: the DDL runs under an advisory lock, nobody fails', async () => {
    const table = freshTable();
    const stores = Array.from(
      { length: 16 },
      () =>
        new PostgresStore({
          connectionString: server.connectionString,
          schema: 'racing',
          table,
          maxConnections: 1,
        }),
    );
    const results = await Promise.allSettled(
      stores.map((s, i) => s.putRecord(idx, 'dek', `r${i}`, new Uint8Array([i]))),
    );
    expect(results.filter((r) => r.status === 'rejected')).toEqual([]);
    expect((await stores[0]!.listRecords(idx, 'dek')).size).toBe(16);
    await Promise.all(stores.map((s) => s.close()));
  });

  it('tables are always schema-qualified: a same-named table earlier on search_path is never used', async () => {
    const table = freshTable();
    await server.psql(
      `CREATE SCHEMA shadow; CREATE TABLE shadow.${table} (index_name text PRIMARY KEY, envelope bytea, version bigint, creation_id bytea, updated_at timestamptz);
       ALTER ROLE postgres SET search_path = shadow, public`,
    );
    try {
      const store = new PostgresStore({ connectionString: server.connectionString, table });
      await store.create(idx, sampleBlob(idx));
      expect(await server.psql(`SELECT count(*) FROM shadow.${table}`)).toBe('0');
      expect(await server.psql(`SELECT count(*) FROM public.${table}`)).toBe('1');
      await store.close();
    } finally {
      await server.psql('ALTER ROLE postgres RESET search_path');
    }
  });

  it('accepts a caller-supplied pg.Pool and leaves it open on close()', async () => {
    const pool = new pg.Pool({ connectionString: server.connectionString, max: 2 });
    const store = new PostgresStore({ pool, table: freshTable() });
    expect(store.description).not.toContain(server.password);
    const blob = sampleBlob(idx);
    await store.create(idx, blob);
    expect(await store.get(idx)).toEqual(blob);
    await store.close();
    expect((await pool.query('SELECT 1 AS one')).rows[0].one).toBe(1);
    // The pool's own type parsers (here: bytea as text) do not change what the store reads.
    const bytea = pg.types.getTypeParser(17, 'text');
    pg.types.setTypeParser(17, (v: string) => `not bytes: ${v}`);
    try {
      expect(await store.get(idx)).toEqual(blob);
    } finally {
      pg.types.setTypeParser(17, bytea);
    }
    await pool.end();
  });

  it('connects over the Unix socket too (postgres:///db?host=<folder>&port=…&user=…)', async () => {
    const store = new PostgresStore({
      connectionString: `postgres:///postgres?host=${encodeURIComponent(server.dir)}&port=${server.port}&user=postgres`,
      table: freshTable(),
    });
    await store.create(idx, sampleBlob(idx));
    expect((await store.get(idx)).version).toBe(1);
    await expect(store.listRecords(idx, 'nope' as never)).rejects.toThrow(InvalidArgumentError);
    await store.close();
  });

  it('is binary-safe: NUL, 0xff and CRLF bytes round-trip in envelopes and records', async () => {
    const store = new PostgresStore({ connectionString: server.connectionString, table: freshTable() });
    const wrappedKek = new Uint8Array([0, 0xff, 13, 10, 0, 0x80, 0xfe, 36, 92, 39, 34]);
    const blob = sampleBlob(idx, { wrappedKek, encryptionContext: { "k'$ü": 'v\\$\u00ff 日本' } });
    await store.push(idx, blob);
    expect(await store.get(idx)).toEqual(blob);
    const record = new Uint8Array([0, 92, 120, 39, 0xff, 0]);
    await store.putRecords(
      idx,
      'dek',
      new Map([
        ['a', record],
        ['b', new Uint8Array(0)],
      ]),
    );
    expect(await store.getRecord(idx, 'dek', 'a')).toEqual(record);
    expect(await store.getRecord(idx, 'dek', 'b')).toEqual(new Uint8Array(0));
    await store.close();
  });

  it('delete removes the envelope but not the records, as in the other stores', async () => {
    const store = new PostgresStore({ connectionString: server.connectionString, table: freshTable() });
    await store.create(idx, sampleBlob(idx));
    await store.putRecord(idx, 'dek', 'd1', new Uint8Array([1]));
    await store.delete(idx);
    await expect(store.get(idx)).rejects.toThrow(EnvelopeNotFoundError);
    expect(await store.getRecord(idx, 'dek', 'd1')).toEqual(new Uint8Array([1]));
    await store.close();
  });

  it('a 1 MiB value planted by a store writer is refused by the server before it is sent (get, getEncoded, records); records are limited to 128 KiB on write', async () => {
    const table = freshTable();
    const proxy = await countingProxy(server.port);
    const store = new PostgresStore({
      connectionString: `postgresql://postgres:${server.password}@127.0.0.1:${proxy.port}/postgres`,
      table,
    });
    await store.create(idx, sampleBlob(idx));
    const huge = Buffer.alloc(1024 * 1024, 0x41);
    await admin.query(`UPDATE public.${table} SET envelope = $1`, [huge]);
    await admin.query(
      `INSERT INTO public.${table}_records (index_name, kind, id, value) VALUES ('orders', 'dek', 'big', $1), ('orders', 'dek', 'small', 'ok')`,
      [huge],
    );
    const before = proxy.received();
    for (const read of [() => store.get(idx), () => store.getEncoded(idx)]) {
      const err = await read().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(MalformedEnvelopeError);
      expect((err as Error).message).toMatch(
        /larger than 65536 bytes.*refused by the server.*index "orders"/,
      );
    }
    await expect(store.getRecord(idx, 'dek', 'big')).rejects.toThrow(/record is larger than 131072 bytes/);
    await expect(store.listRecords(idx, 'dek')).rejects.toThrow(MalformedEnvelopeError);
    expect(await store.getRecord(idx, 'dek', 'small')).toEqual(new Uint8Array(Buffer.from('ok')));
    await expect(store.push(idx, sampleBlob(idx, { version: 2 }), { expectedVersion: 1 })).rejects.toThrow(
      MalformedEnvelopeError,
    );
    // Six refusals and one small record: far below one copy of the value.
    expect(proxy.received() - before).toBeLessThan(16 * 1024);
    const record = new Uint8Array(128 * 1024).fill(7);
    await store.putRecord(idx, 'meta', 'pending', record);
    expect(await store.getRecord(idx, 'meta', 'pending')).toEqual(record);
    await expect(store.putRecord(idx, 'meta', 'over', new Uint8Array(128 * 1024 + 1))).rejects.toThrow(
      InvalidArgumentError,
    );
    await expect(store.createRecord(idx, 'meta', 'over', new Uint8Array(128 * 1024 + 1))).rejects.toThrow(
      InvalidArgumentError,
    );
    // An envelope over 64 KiB is refused on write (by the encoder, before any query).
    await expect(store.push(idx, sampleBlob(idx, { wrappedKek: new Uint8Array(65 * 1024) }))).rejects.toThrow(
      InvalidArgumentError,
    );
    // A plain push repairs the envelope, as for any corrupt value.
    const blob = sampleBlob(idx);
    await store.push(idx, blob);
    expect(await store.get(idx)).toEqual(blob);
    await store.close();
    await proxy.close();
  });

  it('a stored envelope with one byte flipped is MalformedEnvelopeError on get and on compare-and-set, which writes nothing', async () => {
    const table = freshTable();
    const store = new PostgresStore({ connectionString: server.connectionString, table });
    await store.create(idx, sampleBlob(idx, { keyId: 'local:0123456789abcdef' }));
    const stored: Buffer = (await admin.query(`SELECT envelope FROM public.${table}`)).rows[0].envelope;
    const at = stored.indexOf('0123456789abcdef');
    expect(at).toBeGreaterThan(0);
    stored[at] = '1'.charCodeAt(0); // still a valid string, vtable and version: only the CRC tells
    await admin.query(`UPDATE public.${table} SET envelope = $1`, [stored]);
    await expect(store.get(idx)).rejects.toThrow(MalformedEnvelopeError);
    const err = await store
      .push(idx, sampleBlob(idx, { version: 2 }), { expectedVersion: 1 })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(MalformedEnvelopeError);
    expect((err as Error).message).toMatch(/index "orders"/);
    const after: Buffer = (await admin.query(`SELECT envelope FROM public.${table}`)).rows[0].envelope;
    expect(after.equals(stored)).toBe(true); // nothing written
    // getEncoded returns it as stored (the client's every-call cache decodes and refuses it).
    expect(Buffer.from(await store.getEncoded(idx)).equals(stored)).toBe(true);
    // A valid envelope of another index copied in is refused too (its CRC is right).
    const foreign = Buffer.from(encodeKmsBlob(sampleBlob('elsewhere')));
    await admin.query(`UPDATE public.${table} SET envelope = $1`, [foreign]);
    await expect(store.get(idx)).rejects.toThrow(/bound to another index/);
    await expect(store.push(idx, sampleBlob(idx, { version: 2 }), { expectedVersion: 1 })).rejects.toThrow(
      /bound to another index/,
    );
    await store.close();
  });

  it('a row whose version or creation_id column disagrees with its bytes is MalformedEnvelopeError on get and on compare-and-set', async () => {
    const table = freshTable();
    const store = new PostgresStore({ connectionString: server.connectionString, table });
    const blob = sampleBlob(idx);
    await store.create(idx, blob);
    for (const [set, expectedVersion] of [
      ['version = 7', 7],
      ['version = 7', 1],
      ["creation_id = '\\x00'", 1],
      ['creation_id = NULL', 1],
    ] as const) {
      await store.push(idx, blob); // back to a consistent row
      await admin.query(`UPDATE public.${table} SET ${set}`);
      await expect(store.get(idx)).rejects.toThrow(/inconsistent.*index "orders"/);
      await expect(
        store.push(idx, sampleBlob(idx, { version: expectedVersion + 1 }), {
          expectedVersion,
          expectedCreationId: blob.creationId!,
        }),
      ).rejects.toThrow(MalformedEnvelopeError);
      expect((await admin.query(`SELECT version FROM public.${table}`)).rows[0].version).not.toBe(
        String(expectedVersion + 1),
      );
    }
    await store.close();
  });

  it('backends killed with pg_terminate_backend mid-traffic: only retryable StoreUnavailableErrors naming the index, then recovery without a new store', async () => {
    const table = freshTable();
    const store = new PostgresStore({ connectionString: server.connectionString, table, maxConnections: 4 });
    await store.create(idx, sampleBlob(idx));
    await store.putRecord(idx, 'dek', 'd1', new Uint8Array([1]));
    let killing = true;
    let kills = 0;
    const killer = (async () => {
      while (killing) {
        const { rows } = await admin.query(
          `SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) AS n FROM pg_stat_activity WHERE application_name = 'kms-envelope'`,
        );
        kills += Number(rows[0].n);
        await new Promise((r) => setTimeout(r, 20 + Math.random() * 30));
      }
    })();
    const failures: unknown[] = [];
    let ok = 0;
    const until = Date.now() + 3000;
    await Promise.all(
      Array.from({ length: 4 }, async () => {
        while (Date.now() < until) {
          try {
            const current = await store.get(idx);
            await store.push(
              idx,
              { ...current, version: current.version + 1 },
              { expectedVersion: current.version },
            );
            await store.getRecord(idx, 'dek', 'd1');
            ok++;
          } catch (err) {
            if (!(err instanceof VersionConflictError)) failures.push(err);
          }
        }
      }),
    );
    killing = false;
    await killer;
    expect(kills).toBeGreaterThan(5);
    expect(failures.length).toBeGreaterThan(0);
    for (const err of failures) {
      expect(err).toBeInstanceOf(StoreUnavailableError);
      expect((err as KmsEnvelopeError).retryable).toBe(true);
      expect((err as Error).message).toMatch(/index "orders"/);
      expect(inspect(err, { depth: 8 })).not.toContain(server.password);
    }
    expect(ok).toBeGreaterThan(0);
    // No kills now: every call succeeds with the same store (dead connections were dropped).
    for (let i = 0; i < 20; i++) {
      const current = await store.get(idx);
      await store.push(
        idx,
        { ...current, version: current.version + 1 },
        { expectedVersion: current.version },
      );
    }
    await store.close();
  });

  it('a wrong password is AccessDeniedError (28P01); no password in the error, its causes or description', async () => {
    const wrong = 'Wr0ng-Passw0rd-xyz';
    const store = new PostgresStore({
      connectionString: `postgresql://postgres:${wrong}@127.0.0.1:${server.port}/postgres`,
      table: freshTable(),
    });
    const err = await store.get(idx).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AccessDeniedError);
    expect((err as KmsEnvelopeError).retryable).toBe(false);
    expect((err as Error).message).toMatch(/password authentication failed/);
    for (const secret of [wrong, server.password]) {
      expect(findSecret(err, Buffer.from(secret))).toBeUndefined();
      expect(inspect(err, { depth: 20, showHidden: true })).not.toContain(secret);
      expect(store.description).not.toContain(secret);
    }
    await store.close();
  });

  it('a role without privileges on the tables is AccessDeniedError (42501)', async () => {
    const table = freshTable();
    const owner = new PostgresStore({ connectionString: server.connectionString, table });
    await owner.create(idx, sampleBlob(idx));
    await server.psql("CREATE ROLE app_without_grants LOGIN PASSWORD 'app-pass-1234'");
    const store = new PostgresStore({
      connectionString: `postgresql://app_without_grants:app-pass-1234@127.0.0.1:${server.port}/postgres`,
      table,
    });
    for (const op of [
      () => store.get(idx),
      () => store.push(idx, sampleBlob(idx)),
      () => store.delete(idx),
    ]) {
      const err = await op().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(AccessDeniedError);
      expect((err as Error).message).toMatch(/permission denied.*index "orders"/);
      expect(inspect(err, { depth: 20 })).not.toContain('app-pass-1234');
    }
    await Promise.all([owner.close(), store.close()]);
  });

  it('a hung server (postmaster SIGSTOPped) makes a new connection fail within connectTimeoutMs', async () => {
    const store = new PostgresStore({
      connectionString: server.connectionString,
      table: freshTable(),
      connectTimeoutMs: 500,
    });
    process.kill(server.pid!, 'SIGSTOP');
    try {
      const started = Date.now();
      const err = await store.get(idx).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(StoreUnavailableError);
      expect(Date.now() - started).toBeLessThan(3000);
    } finally {
      process.kill(server.pid!, 'SIGCONT');
    }
    await store.get(idx).catch(() => undefined);
    await store.close();
  });

  // Last: it stops the shared server (and starts it again).
  it('a stopped server gives a retryable StoreUnavailableError in bounded time, and the same store recovers after restart', async () => {
    const table = freshTable();
    const store = new PostgresStore({
      connectionString: server.connectionString,
      table,
      connectTimeoutMs: 1000,
    });
    const blob = sampleBlob(idx);
    await store.create(idx, blob);
    const neverConnected = new PostgresStore({ connectionString: server.connectionString, table });
    await server.shutdown();
    const started = Date.now();
    for (const op of [
      () => store.get(idx),
      () => store.push(idx, sampleBlob(idx, { version: 2 })),
      () => store.push(idx, sampleBlob(idx, { version: 2 }), { expectedVersion: 1 }),
      () => store.getRecord(idx, 'dek', 'x'),
      () => neverConnected.get(idx),
    ]) {
      const err = await op().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(StoreUnavailableError);
      expect((err as StoreUnavailableError).retryable).toBe(true);
      expect((err as Error).message).toMatch(/index "orders"/);
      expect(findSecret(err, Buffer.from(server.password))).toBeUndefined();
    }
    expect(Date.now() - started).toBeLessThan(5000);

    await server.start();
    let recovered: unknown;
    for (let i = 0; i < 50; i++) {
      recovered = await store.get(idx).catch((e: unknown) => e);
      if (!(recovered instanceof Error)) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(recovered).toEqual(blob); // the data survived the restart
    await store.push(idx, sampleBlob(idx, { version: 2 }), { expectedVersion: 1 });
    expect(await neverConnected.get(idx)).toMatchObject({ version: 2 });
    await Promise.all([store.close(), neverConnected.close()]);
  });
});
