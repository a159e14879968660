/**
 * Cross-instance invalidation over a real PostgreSQL: the notify trigger reports every change of
 * the envelope table, by any client; a killed listening connection flushes and re-listens.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KmsEnvelopeClient } from '../../src/client.js';
import { EnvelopeNotFoundError, InvalidArgumentError } from '../../src/errors.js';
import { StorageConfig } from '../../src/storage/config.js';
import {
  postgresInvalidationDdl,
  postgresInvalidationFeed,
} from '../../src/storage/postgres-invalidation.js';
import { type PostgresServerHandle, startPostgres } from '../../src/testing/postgres-server.js';
import { deliversAgain, evictions } from '../helpers/invalidation.js';
import { hasPostgres } from '../helpers/services.js';

it('the feed validates its names and its trigger DDL names the store table', () => {
  expect(() => postgresInvalidationFeed({ connectionString: 'redis://x' })).toThrow(InvalidArgumentError);
  expect(() => postgresInvalidationFeed({ connectionString: 'postgres://x', table: 'a;b' })).toThrow(
    InvalidArgumentError,
  );
  expect(postgresInvalidationDdl({ schema: 'kms', table: 'env' })).toContain('ON "kms"."env"');
});

const available = hasPostgres();

describe.skipIf(!available)('invalidation feed against a real PostgreSQL', () => {
  let server: PostgresServerHandle;
  let raw: pg.Client;
  beforeAll(async () => {
    server = await startPostgres();
    raw = new pg.Client({ connectionString: server.connectionString });
    await raw.connect();
  }, 60_000);
  afterAll(async () => {
    await raw?.end();
    await server?.stop();
  });

  const master = () => `literal:${randomBytes(32).toString('base64url')}`;

  async function fleet(table: string, indexes: string[]) {
    const kms = {
      slots: { dev: { provider: 'local', masterKey: master(), keyId: 'k' } },
      secrets: { allowLiteral: true },
    };
    const store = () => StorageConfig.postgres({ connectionString: server.connectionString, table });
    const writer = new KmsEnvelopeClient({ store: store(), kms });
    for (const index of indexes) (await writer.createIndex(index, { slot: 'dev' })).zero();
    const reader = new KmsEnvelopeClient({
      store: store(),
      kms,
      cache: { ttlMs: 600_000 },
      invalidation: postgresInvalidationFeed({ connectionString: server.connectionString, table }),
    });
    await reader.invalidationReady();
    return { writer, reader };
  }

  it('a delete or rotation through another instance, or a write by any client, evicts the index', async () => {
    const { writer, reader } = await fleet('inv_a', ['orders', 'billing']);
    (await reader.unwrap('orders')).zero();
    (await reader.unwrap('billing')).zero();
    const hits = reader.stats().cacheHits;
    (await reader.unwrap('billing')).zero();
    expect(reader.stats().cacheHits).toBe(hits + 1);
    await evictions(reader, 1, () => writer.rotate('orders'));
    expect((await reader.getEnvelope('orders')).version).toBe(2);
    (await reader.unwrap('orders')).zero();
    await evictions(reader, 1, () => writer.delete('orders'));
    await expect(reader.unwrap('orders')).rejects.toThrow(EnvelopeNotFoundError);
    // psql, an operator, a store writer: the trigger reports it.
    await evictions(reader, 1, () => raw.query(`DELETE FROM "public"."inv_a" WHERE index_name = 'billing'`));
    await expect(reader.unwrap('billing')).rejects.toThrow(EnvelopeNotFoundError);
    await writer.close();
    await reader.close();
  });

  it('a killed listening connection flushes the cache, and the feed listens again', async () => {
    const { writer, reader } = await fleet('inv_b', ['orders', 'billing']);
    (await reader.unwrap('orders')).zero();
    (await reader.unwrap('billing')).zero();
    await evictions(reader, 2, () =>
      raw.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE 'LISTEN %'`),
    );
    expect(await deliversAgain(reader, writer, 'orders', 8000)).toBe(true);
    await writer.close();
    await reader.close();
  });

  it('TRUNCATE flushes every cached KEK', async () => {
    const { writer, reader } = await fleet('inv_c', ['orders', 'billing']);
    (await reader.unwrap('orders')).zero();
    (await reader.unwrap('billing')).zero();
    await evictions(reader, 2, () => raw.query(`TRUNCATE "public"."inv_c"`));
    await writer.close();
    await reader.close();
  });
});
