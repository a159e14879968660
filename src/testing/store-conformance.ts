/**
 * The conformance suite of an envelope store, for the built-in stores and for plugin authors'
 * own: create/get/push/delete semantics, compare-and-set with the creation id (ABA), name
 * validation, corrupt values, concurrent creators and writers, and records. It registers its
 * cases with the test framework the caller passes ({@link ConformanceTestApi}: vitest's or
 * jest's `{ describe, it, expect }`), so this module imports none.
 *
 * @example
 * ```ts
 * import { describe, expect, it } from 'vitest';
 * import { runStoreConformance } from 'kms-envelope/testing';
 * runStoreConformance({ describe, it, expect }, 'my-store', async () => ({ store, another, corrupt, cleanup }));
 * ```
 *
 * @module
 */
import { randomBytes } from 'node:crypto';
import { decodeKmsBlob, encodeKmsBlob } from '../envelope/codec.js';
import type { KmsBlob } from '../envelope/kms-blob.js';
import {
  EnvelopeExistsError,
  EnvelopeNotFoundError,
  InvalidArgumentError,
  MalformedEnvelopeError,
  VersionConflictError,
} from '../errors.js';
import { type IndexName, parseIndexName } from '../names.js';
import type { EnvelopeStore, RecordStore } from '../storage/store.js';
import type { ConformanceTestApi } from './test-api.js';

/** What a store's test file provides. */
export interface StoreFixture {
  /** A fresh, empty store. */
  readonly store: EnvelopeStore & RecordStore;
  /** More clients of the same storage (separate connections where the store has them). */
  readonly another: () => Promise<EnvelopeStore>;
  /** Overwrites what is stored for `index` with junk, bypassing the store's checks. */
  readonly corrupt: (index: IndexName) => Promise<void>;
  /** Closes what the fixture opened and removes what it stored. */
  readonly cleanup: () => Promise<void>;
}

/**
 * A structurally valid envelope for `index` (random wrapped KEK, KEK check and creation id; no
 * real key behind it), with overrides: what a store test writes and reads back.
 */
export function sampleEnvelope(index: string, overrides: Partial<KmsBlob> = {}): KmsBlob {
  return {
    kmsName: 'dev',
    provider: 'local',
    keyId: 'local:0123456789abcdef',
    region: '',
    wrappedKek: new Uint8Array(randomBytes(60)),
    version: 1,
    createdAt: 1_763_900_000,
    indexName: index,
    encryptionContext: {},
    schemaVersion: 2,
    updatedAt: 1_763_900_000,
    kekCheck: new Uint8Array(randomBytes(16)),
    creationId: new Uint8Array(randomBytes(16)),
    ...overrides,
  };
}

const BAD_NAMES = ['..', 'a/b', 'a\\b', 'a\0b', '', 'x'.repeat(200), '.hidden', '../escape', 'sp ace'];

/**
 * Registers the store conformance cases under `store conformance: <name>`. `makeFixture` is called
 * once per case and must give a fresh, empty store; each case calls its `cleanup`.
 * The concurrency cases open 16 more clients through `another`.
 */
export function runStoreConformance(
  test: ConformanceTestApi,
  name: string,
  makeFixture: () => Promise<StoreFixture>,
): void {
  const { describe, it, expect } = test;
  describe(`store conformance: ${name}`, () => {
    const idx = parseIndexName('orders');

    async function withFixture(fn: (f: StoreFixture) => Promise<void>) {
      const fixture = await makeFixture();
      try {
        await fn(fixture);
      } finally {
        await fixture.cleanup();
      }
    }

    it('create then get returns the same envelope', () =>
      withFixture(async ({ store }) => {
        const blob = sampleEnvelope(idx, {
          encryptionContext: { tenant: 'acme', b: 'ü' },
          region: 'eu-west-1',
        });
        await store.create(idx, blob);
        expect(await store.get(idx)).toEqual(blob);
      }));

    it('create is strict; get of a missing envelope is EnvelopeNotFoundError', () =>
      withFixture(async ({ store }) => {
        await expect(store.get(idx)).rejects.toThrow(EnvelopeNotFoundError);
        await store.create(idx, sampleEnvelope(idx));
        await expect(store.create(idx, sampleEnvelope(idx))).rejects.toThrow(EnvelopeExistsError);
      }));

    it('push upserts: creates, then replaces whole', () =>
      withFixture(async ({ store }) => {
        const v1 = sampleEnvelope(idx);
        await store.push(idx, v1);
        expect(await store.get(idx)).toEqual(v1);
        const v2 = sampleEnvelope(idx, { version: 2, kmsName: 'other', keyId: 'k2', kekCheck: undefined });
        await store.push(idx, v2);
        expect(await store.get(idx)).toEqual(v2);
        await store.push(idx, v2); // idempotent
        expect(await store.get(idx)).toEqual(v2);
      }));

    it('push with expectedVersion is a compare-and-set', () =>
      withFixture(async ({ store }) => {
        await expect(
          store.push(idx, sampleEnvelope(idx, { version: 2 }), { expectedVersion: 1 }),
        ).rejects.toMatchObject({
          constructor: VersionConflictError,
          expectedVersion: 1,
          actualVersion: undefined,
        });
        await store.create(idx, sampleEnvelope(idx));
        const v2 = sampleEnvelope(idx, { version: 2 });
        await store.push(idx, v2, { expectedVersion: 1 });
        const err = await store
          .push(idx, sampleEnvelope(idx, { version: 3 }), { expectedVersion: 1 })
          .catch((e: unknown) => e);
        expect(err).toBeInstanceOf(VersionConflictError);
        expect(err).toMatchObject({ expectedVersion: 1, actualVersion: 2 });
        expect(await store.get(idx)).toEqual(v2);
      }));

    it('envelopes of several wraps (schema 2) and of threshold shares (schema 3) round-trip, and compare-and-set reads their version and creation id', () =>
      withFixture(async ({ store }) => {
        const wraps = [
          {
            kmsName: 'gcp-eu',
            provider: 'gcp-kms',
            keyId: 'projects/p/k/1',
            region: 'eu',
            wrappedKek: new Uint8Array([1, 2, 3]),
          },
          {
            kmsName: 'recovery',
            provider: 'recipient',
            keyId: '',
            region: '',
            wrappedKek: new Uint8Array(80).fill(4),
          },
        ];
        const v1 = sampleEnvelope(idx, { wraps });
        await store.create(idx, v1);
        expect(await store.get(idx)).toEqual(v1);
        const v2 = sampleEnvelope(idx, {
          version: 2,
          creationId: v1.creationId,
          wraps,
          threshold: 2,
          schemaVersion: 3,
        });
        await expect(
          store.push(idx, v2, { expectedVersion: 1, expectedCreationId: new Uint8Array(16) }),
        ).rejects.toThrow(VersionConflictError);
        await store.push(idx, v2, { expectedVersion: 1, expectedCreationId: v1.creationId! });
        expect(await store.get(idx)).toEqual(v2);
        await expect(
          store.push(idx, sampleEnvelope(idx, { version: 3, creationId: v1.creationId }), {
            expectedVersion: 1,
            expectedCreationId: v1.creationId!,
          }),
        ).rejects.toMatchObject({ constructor: VersionConflictError, actualVersion: 2 });
      }));

    it('compare-and-set compares the creation id: a delete and re-create between a read and the push is a VersionConflictError (ABA)', () =>
      withFixture(async ({ store, another }) => {
        const other = await another();
        await store.create(idx, sampleEnvelope(idx));
        const read = await store.get(idx); // the rotator reads v1
        await other.delete(idx); // meanwhile: deleted and created again, also v1, a new creation id
        const recreated = sampleEnvelope(idx);
        await other.create(idx, recreated);
        const err = await store
          .push(idx, { ...read, version: 2 }, { expectedVersion: 1, expectedCreationId: read.creationId! })
          .catch((e: unknown) => e);
        expect(err).toBeInstanceOf(VersionConflictError);
        expect(err).toMatchObject({ expectedVersion: 1, actualVersion: 1, recreated: true });
        expect(await store.get(idx)).toEqual(recreated);
        // The right creation id passes; without expectedCreationId only the version is compared.
        await store.push(
          idx,
          { ...recreated, version: 2 },
          { expectedVersion: 1, expectedCreationId: recreated.creationId! },
        );
        await store.push(idx, { ...recreated, version: 3 }, { expectedVersion: 2 });
        // An envelope written before creation ids (schema 1) is matched by an empty creation id only.
        const legacy = sampleEnvelope(idx, { schemaVersion: 1, creationId: undefined, version: 3 });
        await store.push(idx, legacy);
        await expect(
          store.push(
            idx,
            { ...legacy, version: 4 },
            { expectedVersion: 3, expectedCreationId: read.creationId! },
          ),
        ).rejects.toMatchObject({ recreated: true });
        await store.push(
          idx,
          { ...legacy, version: 4 },
          { expectedVersion: 3, expectedCreationId: new Uint8Array(0) },
        );
        expect((await store.get(idx)).version).toBe(4);
        await other.close();
      }));

    it('delete is idempotent, and create works again after it', () =>
      withFixture(async ({ store }) => {
        await store.delete(parseIndexName('never-created'));
        await store.create(idx, sampleEnvelope(idx));
        await store.delete(idx);
        await store.delete(idx);
        await expect(store.get(idx)).rejects.toThrow(EnvelopeNotFoundError);
        await expect(
          store.push(idx, sampleEnvelope(idx, { version: 2 }), { expectedVersion: 1 }),
        ).rejects.toThrow(VersionConflictError);
        await store.create(idx, sampleEnvelope(idx, { version: 5 }));
        expect((await store.get(idx)).version).toBe(5);
      }));

    it('getEncoded returns the stored bytes as stored (a buffer of the caller), and NotFound like get', () =>
      withFixture(async ({ store, corrupt }) => {
        if (store.getEncoded === undefined) throw new Error('the built-in stores all implement getEncoded');
        await expect(store.getEncoded(idx)).rejects.toThrow(EnvelopeNotFoundError);
        const blob = sampleEnvelope(idx, { encryptionContext: { tenant: 'acme' } });
        await store.create(idx, blob);
        const bytes = await store.getEncoded(idx);
        expect(decodeKmsBlob(bytes)).toEqual(blob);
        expect(Buffer.from(bytes).equals(Buffer.from(encodeKmsBlob(blob)))).toBe(true);
        // The caller's own buffer: changing it changes nothing stored.
        bytes.fill(0);
        expect(await store.get(idx)).toEqual(blob);
        // Not verified: a corrupt value comes back as it is; get still refuses it.
        await corrupt(idx);
        const junk = await store.getEncoded(idx);
        expect(() => decodeKmsBlob(junk)).toThrow(MalformedEnvelopeError);
        await store.delete(idx);
        await expect(store.getEncoded(idx)).rejects.toThrow(EnvelopeNotFoundError);
        for (const bad of BAD_NAMES)
          await expect(store.getEncoded(bad as IndexName)).rejects.toThrow(InvalidArgumentError);
      }));

    it('invalid index names are refused by every method', () =>
      withFixture(async ({ store }) => {
        for (const bad of BAD_NAMES) {
          const blob = sampleEnvelope('ok', { indexName: bad });
          const n = bad as IndexName;
          await expect(store.create(n, blob)).rejects.toThrow(InvalidArgumentError);
          await expect(store.push(n, blob)).rejects.toThrow(InvalidArgumentError);
          await expect(store.get(n)).rejects.toThrow(InvalidArgumentError);
          await expect(store.delete(n)).rejects.toThrow(InvalidArgumentError);
        }
      }));

    it('an envelope bound to another index is refused on write', () =>
      withFixture(async ({ store }) => {
        await expect(store.create(idx, sampleEnvelope('elsewhere'))).rejects.toThrow(InvalidArgumentError);
        await expect(store.push(idx, sampleEnvelope('elsewhere'))).rejects.toThrow(InvalidArgumentError);
        await expect(store.get(idx)).rejects.toThrow(EnvelopeNotFoundError);
      }));

    it('a corrupt stored value is MalformedEnvelopeError naming the index', () =>
      withFixture(async ({ store, corrupt }) => {
        await store.create(idx, sampleEnvelope(idx));
        await corrupt(idx);
        const err = await store.get(idx).catch((e: unknown) => e);
        expect(err).toBeInstanceOf(MalformedEnvelopeError);
        expect((err as Error).message).toContain('"orders"');
        const cas = await store
          .push(idx, sampleEnvelope(idx, { version: 2 }), { expectedVersion: 1 })
          .catch((e: unknown) => e);
        expect(cas).toBeInstanceOf(MalformedEnvelopeError);
        expect((cas as Error).message).toContain('"orders"');
      }));

    it('a corrupt envelope can still be deleted or replaced by a plain push, but not created over', () =>
      withFixture(async ({ store, corrupt }) => {
        await store.create(idx, sampleEnvelope(idx));
        await corrupt(idx);
        await expect(store.create(idx, sampleEnvelope(idx))).rejects.toThrow(EnvelopeExistsError);
        await store.delete(idx);
        await expect(store.get(idx)).rejects.toThrow(EnvelopeNotFoundError);
        await store.create(idx, sampleEnvelope(idx));
        await corrupt(idx);
        const repaired = sampleEnvelope(idx, { version: 9 });
        await store.push(idx, repaired);
        expect(await store.get(idx)).toEqual(repaired);
      }));

    it('16 concurrent creators of one index: exactly one wins', () =>
      withFixture(async ({ another }) => {
        const stores = await Promise.all(Array.from({ length: 16 }, () => another()));
        const results = await Promise.allSettled(
          stores.map((s, i) => s.create(idx, sampleEnvelope(idx, { keyId: `writer-${i}` }))),
        );
        const won = results.filter((r) => r.status === 'fulfilled');
        expect(won).toHaveLength(1);
        for (const r of results)
          if (r.status === 'rejected') expect(r.reason).toBeInstanceOf(EnvelopeExistsError);
        const winner = results.findIndex((r) => r.status === 'fulfilled');
        expect((await stores[0]!.get(idx)).keyId).toBe(`writer-${winner}`);
        await Promise.all(stores.map((s) => s.close()));
      }));

    it('16 clients x 100 compare-and-set increments: no update is lost', () =>
      withFixture(async ({ store, another }) => {
        await store.create(idx, sampleEnvelope(idx));
        const clients = await Promise.all(Array.from({ length: 16 }, () => another()));
        let successes = 0;
        let conflicts = 0;
        await Promise.all(
          clients.map(async (client) => {
            for (let i = 0; i < 100; i++) {
              const current: KmsBlob = await client.get(idx);
              try {
                await client.push(
                  idx,
                  { ...current, version: current.version + 1 },
                  { expectedVersion: current.version },
                );
                successes++;
              } catch (err) {
                expect(err).toBeInstanceOf(VersionConflictError);
                conflicts++;
              }
            }
          }),
        );
        expect(successes + conflicts).toBe(1600);
        expect(successes).toBeGreaterThan(0);
        expect((await store.get(idx)).version).toBe(1 + successes);
        await Promise.all(clients.map((c) => c.close()));
      }));

    it('records: put, get, list, replace, delete, batch', () =>
      withFixture(async ({ store }) => {
        const bytes = (text: string) => new Uint8Array(Buffer.from(text));
        expect(await store.getRecord(idx, 'dek', 'a')).toBeUndefined();
        expect(await store.listRecords(idx, 'dek')).toEqual(new Map());
        await store.putRecord(idx, 'dek', 'a', bytes('one'));
        await store.putRecord(idx, 'dek', 'a', bytes('two'));
        await store.putRecords(
          idx,
          'dek',
          new Map([
            ['b', bytes('\u0000\r\n')],
            ['c', bytes('c')],
          ]),
        );
        await store.putRecord(idx, 'meta', 'a', bytes('meta'));
        expect(await store.createRecord(idx, 'meta', 'lock', bytes('first'))).toBe(true);
        expect(await store.createRecord(idx, 'meta', 'lock', bytes('second'))).toBe(false);
        expect(await store.getRecord(idx, 'meta', 'lock')).toEqual(bytes('first'));
        expect(await store.getRecord(idx, 'dek', 'a')).toEqual(bytes('two'));
        expect([...(await store.listRecords(idx, 'dek')).entries()]).toEqual([
          ['a', bytes('two')],
          ['b', bytes('\u0000\r\n')],
          ['c', bytes('c')],
        ]);
        await store.deleteRecord(idx, 'dek', 'a');
        await store.deleteRecord(idx, 'dek', 'a');
        expect(await store.getRecord(idx, 'dek', 'a')).toBeUndefined();
        expect(await store.getRecord(idx, 'meta', 'a')).toEqual(bytes('meta'));
        expect(await store.getRecord(parseIndexName('other'), 'dek', 'b')).toBeUndefined();
        for (const bad of ['', '..', 'a/b', '.tmp-x', 'x'.repeat(129)]) {
          await expect(store.putRecord(idx, 'dek', bad, bytes('x'))).rejects.toThrow(InvalidArgumentError);
          await expect(store.getRecord(idx, 'dek', bad)).rejects.toThrow(InvalidArgumentError);
        }
      }));
  });
}
