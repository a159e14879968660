/**
 * The Postgres store against a bare `pg` query of the same row (one in flight), and rotateKek
 * records/s on Postgres. Section `postgres` of `npm run bench` (`BENCH_ONLY=postgres`).
 */
import { randomBytes } from 'node:crypto';
import { asReference, type CaseResult, runCase } from '../src/bench/harness.js';
import { KmsEnvelopeClient } from '../src/client.js';
import { IndexKeyring } from '../src/keyring/keyring.js';
import { parseIndexName } from '../src/names.js';
import { StorageConfig } from '../src/storage/config.js';
import { startPostgres } from '../src/testing/postgres-server.js';

export async function postgresCases(): Promise<{ rows: CaseResult[]; notes: string[] }> {
  let server: Awaited<ReturnType<typeof startPostgres>>;
  try {
    server = await startPostgres();
  } catch (err) {
    console.warn(`skipping Postgres cases: ${(err as Error).message} (apt-get install postgresql)`);
    return { rows: [], notes: [] };
  }
  const pg = (await import('pg')).default;
  // The baseline pool has the settings of the store's own pool (PostgresStore #open), so the two
  // differ by what the store does, not by how they connect.
  const pool = new pg.Pool({
    connectionString: server.connectionString,
    max: 10,
    connectionTimeoutMillis: 2000,
    statement_timeout: 5000,
    lock_timeout: 5000,
    keepAlive: true,
    application_name: 'kms-envelope',
  });
  pool.on('error', () => {}); // the server stops at the end: an idle connection reports it here
  const store = StorageConfig.postgres({ connectionString: server.connectionString });
  const master = `literal:${randomBytes(32).toString('base64url')}`;
  const client = new KmsEnvelopeClient({
    store,
    kms: { slots: { dev: { provider: 'local', masterKey: master } }, secrets: { allowLiteral: true } },
  });
  try {
    (await client.createIndex('orders', { slot: 'dev' })).zero();
    const index = parseIndexName('orders');
    const sql = 'SELECT envelope FROM "public"."kms_envelopes" WHERE index_name = $1';
    const get = await runCase({
      name: 'Postgres store get (verified decode) vs a bare pg query of the same row (1 in flight)',
      ours: () => store.get(index),
      baseline: () => pool.query(sql, ['orders']),
      target: { maxRatio: 1.1 },
      rounds: 31,
    });
    // The store sends named (prepared) statements; a bare query can too: for comparison.
    const named = await runCase({
      name: 'Postgres store get vs a bare pg query of the same row as a named prepared statement',
      ours: () => store.get(index),
      baseline: () => pool.query({ name: 'bench-get', text: sql, values: ['orders'] }),
      target: { maxRatio: 1.1 },
      rounds: 21,
    });
    const unnamed = StorageConfig.postgres({
      connectionString: server.connectionString,
      preparedStatements: false,
    });
    await unnamed.get(index);
    const unprepared = await runCase({
      name: 'Postgres store get with preparedStatements: false vs the bare pg query',
      ours: () => unnamed.get(index),
      baseline: () => pool.query(sql, ['orders']),
      target: { maxRatio: 1.1 },
      rounds: 21,
    });
    await unnamed.close();
    const keyring = await IndexKeyring.createIndex(client, 'bench-rotate', { slot: 'dev' });
    await keyring.createDeks(10_000);
    const start = process.hrtime.bigint();
    const report = await keyring.rotateKek({ batchSize: 500 });
    const seconds = Number(process.hrtime.bigint() - start) / 1e9;
    return {
      rows: [get, asReference(named), asReference(unprepared)],
      notes: [
        `rotateKek on Postgres: ${report.rewrapped} DEK records in ${seconds.toFixed(2)} s, ${Math.round(report.rewrapped / seconds)} records/s (batches of 500)`,
      ],
    };
  } finally {
    await client.close();
    await pool.end();
    await server.stop();
  }
}
