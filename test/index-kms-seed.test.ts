/**
 * The seed system's envelope API as its users write it: exactly the documented fields (kms_name,
 * provider, key_id, region, wrapped_kek, version, created_at), everything else filled.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { KmsEnvelopeClient } from '../src/client.js';
import { decodeKmsBlob, encodeKmsBlob } from '../src/envelope/codec.js';
import { EnvelopeExistsError, InvalidArgumentError, VersionConflictError } from '../src/errors.js';
import { createIndexKms, getIndexKms, pushIndexKms } from '../src/index-kms.js';
import { Kek } from '../src/keys/kek.js';
import { parseIndexName, parseSlotName } from '../src/names.js';
import { StorageConfig } from '../src/storage/config.js';
import type { EnvelopeStore } from '../src/storage/store.js';

const now = () => Math.floor(Date.now() / 1000);
const ARN = 'arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab';

/** The seed's documented fields, as its examples write them. */
const seedFields = (wrappedKek: Uint8Array, version = 1) => ({
  kmsName: 'prod-kms',
  provider: 'aws-kms',
  keyId: ARN,
  region: 'us-east-1',
  wrappedKek,
  version,
});

const stores: Record<string, () => EnvelopeStore> = {
  memory: () => StorageConfig.memory(),
  disk: () => StorageConfig.disk(mkdtempSync(join(tmpdir(), 'ke-seed-'))),
};

describe.each(Object.keys(stores))('the seed API on %s', (storeName) => {
  it('createIndexKms with exactly the seed fields fills index, timestamps, context and schema 1', async () => {
    const storage = stores[storeName]!();
    const wrappedKek = randomBytes(184);
    const before = now();
    await createIndexKms(storage, 'my_index', {
      kmsName: 'prod-kms',
      provider: 'aws-kms',
      keyId: ARN,
      region: 'us-east-1',
      wrappedKek,
      version: 1,
    });
    const blob = await getIndexKms(storage, 'my_index');
    expect(blob).toMatchObject({
      kmsName: 'prod-kms',
      provider: 'aws-kms',
      keyId: ARN,
      region: 'us-east-1',
      version: 1,
      indexName: 'my_index',
      encryptionContext: {},
      schemaVersion: 1,
      kekCheck: undefined,
    });
    expect(Buffer.from(blob.wrappedKek).equals(wrappedKek)).toBe(true);
    expect(blob.creationId).toBeUndefined();
    expect(blob.createdAt).toBeGreaterThanOrEqual(before);
    expect(blob.createdAt).toBeLessThanOrEqual(now());
    expect(blob.updatedAt).toBe(blob.createdAt);
    await expect(
      createIndexKms(storage, 'my_index', { ...blob, wrappedKek: randomBytes(184) }),
    ).rejects.toThrow(EnvelopeExistsError);
  });

  it('createdAt given is kept (updatedAt is now); a blob bound to another index is refused', async () => {
    const storage = stores[storeName]!();
    const seed = { ...seedFields(randomBytes(184)), createdAt: 1_700_000_000 };
    await createIndexKms(storage, 'my_index', seed);
    const blob = await getIndexKms(storage, 'my_index');
    expect(blob.createdAt).toBe(1_700_000_000);
    expect(blob.updatedAt).toBeGreaterThanOrEqual(now() - 5);
    await expect(createIndexKms(storage, 'other', { ...seed, indexName: 'my_index' })).rejects.toThrow(
      InvalidArgumentError,
    );
  });

  it("the seed's rotation recipe works as written: get, change wrappedKek, version + 1, push", async () => {
    const storage = stores[storeName]!();
    await createIndexKms(storage, 'my_index', seedFields(randomBytes(184)));
    const blob = await getIndexKms(storage, 'my_index');
    const rewrapped = randomBytes(184);
    await pushIndexKms(storage, 'my_index', { ...blob, wrappedKek: rewrapped, version: blob.version + 1 });
    const v2 = await getIndexKms(storage, 'my_index');
    expect(v2.version).toBe(2);
    expect(Buffer.from(v2.wrappedKek).equals(rewrapped)).toBe(true);

    // The same with compare-and-set, and with a blob of the seed's fields only.
    await pushIndexKms(storage, 'my_index', seedFields(randomBytes(184), v2.version + 1), {
      expectedVersion: v2.version,
    });
    expect((await getIndexKms(storage, 'my_index')).version).toBe(3);
    await expect(
      pushIndexKms(storage, 'my_index', { ...v2, version: 9 }, { expectedVersion: 1 }),
    ).rejects.toThrow(VersionConflictError);
  });
});

describe('encodeKmsBlob with the seed fields', () => {
  it('fills updatedAt, context and schema version; the index cannot be made up', () => {
    const seed = { ...seedFields(new Uint8Array(184).fill(7)), createdAt: 1_700_000_000 };
    const blob = decodeKmsBlob(encodeKmsBlob({ ...seed, indexName: 'my_index' }));
    expect(blob).toMatchObject({
      ...seed,
      indexName: 'my_index',
      updatedAt: 1_700_000_000,
      encryptionContext: {},
      schemaVersion: 1,
      kekCheck: undefined,
    });
    expect(blob.creationId).toBeUndefined();
    // Deterministic, and the same bytes as the complete blob.
    expect(encodeKmsBlob({ ...seed, indexName: 'my_index' })).toEqual(encodeKmsBlob(blob));
    // With a creation id it is schema 2.
    expect(
      decodeKmsBlob(encodeKmsBlob({ ...seed, indexName: 'my_index', creationId: new Uint8Array(16).fill(1) }))
        .schemaVersion,
    ).toBe(2);
    // createdAt optional.
    const unstamped = decodeKmsBlob(encodeKmsBlob({ ...seed, createdAt: undefined, indexName: 'my_index' }));
    expect(Math.abs(unstamped.createdAt - now())).toBeLessThanOrEqual(5);
    expect(() => encodeKmsBlob(seed)).toThrow(InvalidArgumentError);
    expect(() => encodeKmsBlob(seed)).toThrow(/indexName is missing: an envelope is bound to its index/);
  });
});

describe('a seed-style envelope unwraps as the schema it is', () => {
  it('wrapped with the schema 1 binding (no creation id), stored by createIndexKms, unwrapped by the client; rotate upgrades it', async () => {
    const store = StorageConfig.memory();
    const client = new KmsEnvelopeClient({
      store,
      kms: {
        slots: { dev: { provider: 'local', masterKey: `literal:${randomBytes(32).toString('base64url')}` } },
        secrets: { allowLiteral: true },
      },
    });
    const provider = await client.kms.provider('dev');
    const kek = Kek.generate();
    // What a schema 1 writer binds: provider, slot, index, context; no version, no creation id.
    const wrapped = await provider.wrap(kek, {
      index: parseIndexName('my_index'),
      slot: parseSlotName('dev'),
      encryptionContext: {},
    });
    await createIndexKms(store, 'my_index', {
      kmsName: 'dev',
      provider: 'local',
      keyId: wrapped.keyId,
      region: wrapped.region,
      wrappedKek: wrapped.wrappedKek,
      version: 1,
    });
    expect((await client.unwrap('my_index')).equals(kek)).toBe(true);
    const rotated = await client.rotate('my_index');
    expect(rotated).toMatchObject({ schemaVersion: 2, version: 2 });
    expect(rotated.creationId).toHaveLength(16);
    client.clearCache();
    expect((await client.unwrap('my_index')).equals(kek)).toBe(true);
    await client.close();
  });
});
