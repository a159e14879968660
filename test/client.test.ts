import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { KmsEnvelopeClient } from '../src/client.js';
import {
  ConfigError,
  EnvelopeExistsError,
  EnvelopeNotFoundError,
  InvalidArgumentError,
  KekMismatchError,
  VersionConflictError,
} from '../src/errors.js';
import { Kek } from '../src/keys/kek.js';
import { StorageConfig } from '../src/storage/config.js';

const literal = (key: Buffer) => `literal:${key.toString('base64url')}`;

function makeClient(now = () => 1_700_000_000) {
  const master = randomBytes(32);
  return new KmsEnvelopeClient({
    store: StorageConfig.memory(),
    now,
    kms: {
      slots: {
        dev: { provider: 'local', masterKey: literal(master), keyId: 'dev-key' },
        other: { provider: 'local', masterKey: literal(randomBytes(32)), keyId: 'other-key' },
        byok: { provider: 'none' },
      },
      secrets: { allowLiteral: true },
    },
  });
}

describe('KmsEnvelopeClient', () => {
  it('creates an envelope with the fields of the design', async () => {
    const client = makeClient();
    const kek = await client.createIndex('orders', { slot: 'dev', encryptionContext: { tenant: 'acme' } });
    const blob = await client.getEnvelope('orders');
    expect(blob).toMatchObject({
      kmsName: 'dev',
      provider: 'local',
      keyId: 'dev-key',
      region: '',
      version: 1,
      createdAt: 1_700_000_000,
      updatedAt: 1_700_000_000,
      indexName: 'orders',
      encryptionContext: { tenant: 'acme' },
      schemaVersion: 2,
    });
    expect(blob.wrappedKek).toHaveLength(60);
    expect(blob.kekCheck).toHaveLength(16);
    expect(blob.creationId).toHaveLength(16);
    expect((await client.unwrap('orders')).equals(kek)).toBe(true);
  });

  it('create is strict and names the index', async () => {
    const client = makeClient();
    await client.createIndex('orders', { slot: 'dev' });
    await expect(client.createIndex('orders', { slot: 'dev' })).rejects.toThrow(EnvelopeExistsError);
  });

  it('unknown slots fail with ConfigError naming index and slot, and store nothing', async () => {
    const client = makeClient();
    const err = await client.createIndex('orders', { slot: 'nope' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).message).toMatch(/index "orders".*slot "nope"/);
    await expect(client.getEnvelope('orders')).rejects.toThrow(EnvelopeNotFoundError);
  });

  it('rotate re-wraps the same KEK, bumps the version, keeps created_at, sets updated_at', async () => {
    let now = 1_700_000_000;
    const client = makeClient(() => now);
    const kek = await client.createIndex('orders', { slot: 'dev' });
    const v1 = await client.getEnvelope('orders');
    now += 60;
    const v2 = await client.rotate('orders');
    expect(v2.version).toBe(2);
    expect(v2.createdAt).toBe(v1.createdAt);
    expect(v2.updatedAt).toBe(now);
    expect(Buffer.from(v2.wrappedKek).equals(Buffer.from(v1.wrappedKek))).toBe(false);
    expect(await client.getEnvelope('orders')).toEqual(v2);
    expect((await client.unwrap('orders')).equals(kek)).toBe(true);
  });

  it('rotate can move the KEK to another slot', async () => {
    const client = makeClient();
    const kek = await client.createIndex('orders', { slot: 'dev' });
    const moved = await client.rotate('orders', { toSlot: 'other' });
    expect(moved).toMatchObject({ kmsName: 'other', keyId: 'other-key', version: 2 });
    expect((await client.unwrap('orders')).equals(kek)).toBe(true);
  });

  it('two racing rotators: exactly one wins, the other gets VersionConflictError', async () => {
    const client = makeClient();
    await client.createIndex('orders', { slot: 'dev' });
    const results = await Promise.allSettled([client.rotate('orders'), client.rotate('orders')]);
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    const rejected = results.find((r) => r.status === 'rejected') as PromiseRejectedResult;
    expect(rejected.reason).toBeInstanceOf(VersionConflictError);
    expect((await client.getEnvelope('orders')).version).toBe(2);
  });

  it('provider none: the caller keeps the KEK; a wrong one is a KekMismatchError', async () => {
    const client = makeClient();
    const mine = Kek.generate();
    const kek = await client.createIndex('byok-index', { slot: 'byok', kek: mine });
    expect(kek.equals(mine)).toBe(true);
    const blob = await client.getEnvelope('byok-index');
    expect(blob.wrappedKek).toHaveLength(0);
    await expect(client.unwrap('byok-index')).rejects.toThrow(/pass the KEK/);
    expect((await client.unwrap('byok-index', { kek: mine })).equals(mine)).toBe(true);
    await expect(client.unwrap('byok-index', { kek: Kek.generate() })).rejects.toThrow(KekMismatchError);
    expect((await client.rotate('byok-index', { kek: mine })).version).toBe(2);
  });

  it('a KEK may be supplied only for provider none', async () => {
    const client = makeClient();
    await client.createIndex('orders', { slot: 'dev' });
    await expect(client.unwrap('orders', { kek: Kek.generate() })).rejects.toThrow(InvalidArgumentError);
  });

  it('verify reports without returning the key; delete is idempotent', async () => {
    const client = makeClient();
    await client.createIndex('orders', { slot: 'dev' });
    expect(await client.verify('orders')).toEqual({
      index: 'orders',
      slot: 'dev',
      provider: 'local',
      version: 1,
      kekChecked: true,
    });
    await client.delete('orders');
    await client.delete('orders');
    await expect(client.unwrap('orders')).rejects.toThrow(EnvelopeNotFoundError);
  });

  it('a failed create zeroes the KEK it made', async () => {
    const client = makeClient();
    await client.createIndex('orders', { slot: 'dev' });
    const mine = Kek.generate();
    await expect(client.createIndex('orders', { slot: 'dev', kek: mine })).rejects.toThrow(
      EnvelopeExistsError,
    );
    // The caller's own KEK is copied, never consumed.
    expect(mine.isZeroed).toBe(false);
  });
});
