/**
 * One conformance suite for the DEK layer: the keyring's whole life — create, DEKs,
 * encrypt/decrypt, rotate (re-wrap, also to another slot), rotateKek (twice), delete and create
 * again, passphrase KEKs where the provider is `none` — through the client, over one provider and
 * every store (memory, disk, redis). Each provider's test file calls {@link runKeyringConformance}
 * with how to build two slots, `a` and `b`, of that provider; user-written providers can too.
 *
 * It exists so that a gap like "the keyring cannot be used with aws-kms" (its own context key
 * was refused as reserved) cannot come back for any provider or store.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KmsEnvelopeClient } from '../../src/client.js';
import {
  EnvelopeExistsError,
  EnvelopeNotFoundError,
  KekMismatchError,
  UnknownKeyError,
  UnwrapFailedError,
} from '../../src/errors.js';
import { IndexKeyring, kekSlotOf } from '../../src/keyring/keyring.js';
import { createPassphraseIndex, deriveAndVerifyKek } from '../../src/keyring/passphrase.js';
import { KEK_SLOT_CONTEXT_KEY } from '../../src/keyring/records.js';
import { Kek } from '../../src/keys/kek.js';
import { parseIndexName } from '../../src/names.js';
import type { KmsRegistryOptions } from '../../src/providers/registry.js';
import { StorageConfig } from '../../src/storage/config.js';
import type { EnvelopeStore, RecordStore } from '../../src/storage/store.js';
import { type RedisServerHandle, startRedisServer } from '../../src/testing/redis-server.js';
import { hasRedis } from '../helpers/services.js';

/** How a provider's test file sets up the suite. */
export interface KeyringProviderFixture {
  /** Registry options with two slots of the provider, `a` and `b` (`b` is the rotate target). */
  readonly kms: KmsRegistryOptions;
  /** Provider `none`: the caller supplies every KEK. */
  readonly suppliesKek?: boolean;
  /** Stops what the fixture started. */
  readonly cleanup?: () => Promise<void>;
}

type Store = EnvelopeStore & RecordStore;

/** A store and a way to open the same data again (another process's view). */
interface StoreFixture {
  readonly store: Store;
  readonly reopen: () => Store;
  readonly cleanup: () => Promise<void>;
}

const redisAvailable = hasRedis();

/** Registers nothing: a case that does not apply to this provider. */
const noCase = (_name: string, _fn: () => Promise<void>): void => {};
let redis: RedisServerHandle | undefined;
let prefixes = 0;

/** Every built-in store, by name. */
const stores: Record<string, () => Promise<StoreFixture>> = {
  memory: async () => {
    const store = StorageConfig.memory();
    return { store, reopen: () => store, cleanup: async () => {} };
  },
  disk: async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ke-keyring-'));
    return {
      store: StorageConfig.disk(dir),
      reopen: () => StorageConfig.disk(dir),
      cleanup: async () => rmSync(dir, { recursive: true, force: true }),
    };
  },
  redis: async () => {
    const keyPrefix = `keyring-${process.pid}-${++prefixes}:`;
    const opened: Store[] = [];
    const open = () => {
      const store = StorageConfig.redis({ url: redis!.url, keyPrefix });
      opened.push(store);
      return store;
    };
    return {
      store: open(),
      reopen: open,
      cleanup: async () => {
        for (const s of opened) await s.close();
      },
    };
  },
};

/** Registers the keyring conformance tests for one provider over every store. */
export function runKeyringConformance(
  name: string,
  makeProvider: () => Promise<KeyringProviderFixture>,
): void {
  beforeAll(async () => {
    if (redisAvailable && redis === undefined) redis = await startRedisServer();
  });
  afterAll(async () => {
    await redis?.stop();
    redis = undefined;
  });

  for (const storeName of Object.keys(stores)) {
    describe.skipIf(storeName === 'redis' && !redisAvailable)(
      `keyring conformance: ${name} on ${storeName}`,
      () => {
        /** A fixture: the client, the provider's KEK for `none`, and a fresh-client factory. */
        async function setup() {
          const provider = await makeProvider();
          const storage = await stores[storeName]!();
          const supplied = provider.suppliesKek ? Kek.generate() : undefined;
          const clients: KmsEnvelopeClient[] = [];
          const newClient = (store: Store = storage.store) => {
            const client = new KmsEnvelopeClient({ store, kms: provider.kms });
            clients.push(client);
            return client;
          };
          const client = newClient();
          const kekOption = supplied ? { kek: supplied } : {};
          /** A keyring on a new client over the reopened store: what another process sees. */
          const elsewhere = (kek: Kek | undefined = supplied) =>
            new IndexKeyring(newClient(storage.reopen()), 'users', kek ? { kek } : {});
          return {
            provider,
            storage,
            client,
            supplied,
            kekOption,
            elsewhere,
            newClient,
            async cleanup() {
              for (const c of clients) await c.kms.close();
              await storage.cleanup();
              await provider.cleanup?.();
            },
          };
        }
        type Fixture = Awaited<ReturnType<typeof setup>>;
        const withFixture = (fn: (f: Fixture) => Promise<void>) => async () => {
          const f = await setup();
          try {
            await fn(f);
          } finally {
            await f.cleanup();
          }
        };

        it(
          'create (the envelope names its KEK slot, bound with the context), DEKs, encrypt and decrypt, read elsewhere',
          withFixture(async ({ client, kekOption, elsewhere, provider }) => {
            const keyring = await IndexKeyring.createIndex(client, 'users', {
              slot: 'a',
              encryptionContext: { tenant: 't1' },
              ...kekOption,
            });
            const blob = await client.getEnvelope('users');
            expect(blob.encryptionContext).toMatchObject({ tenant: 't1' });
            expect(kekSlotOf(blob)).toBeDefined();
            expect(blob.provider).toBe(name);

            const dek = await keyring.createDek();
            const token = await keyring.encryptValue('alice@example.com');
            expect(token.split('$')[2]).toBe(dek.keyid);
            const bound = await keyring.encryptValue('row 42', { context: { table: 'users', row: '42' } });
            await keyring.createDeks(3);
            const deks = await keyring.listDeks();
            expect(deks).toHaveLength(4);
            expect(deks.filter((d) => d.active).map((d) => d.id)).toEqual([dek.keyid]);
            expect(await keyring.decryptValue(token)).toBe('alice@example.com');

            const other = elsewhere();
            expect(await other.decryptValue(token)).toBe('alice@example.com');
            expect(await other.decryptValue(bound, { context: { table: 'users', row: '42' } })).toBe(
              'row 42',
            );
            expect(await other.decryptValue(await other.encryptValue('bob'))).toBe('bob');
            if (provider.suppliesKek) {
              await expect(elsewhere(Kek.generate()).decryptValue(token)).rejects.toThrow(KekMismatchError);
            }
          }),
        );

        it(
          'rotate (the same KEK re-wrapped, then under slot b) keeps every value readable',
          withFixture(async ({ client, kekOption, elsewhere }) => {
            const keyring = await IndexKeyring.createIndex(client, 'users', { slot: 'a', ...kekOption });
            await keyring.createDek();
            const token = await keyring.encryptValue('v1');
            const before = await client.getEnvelope('users');

            const v2 = await client.rotate('users', kekOption);
            expect(v2.version).toBe(2);
            expect(kekSlotOf(v2)).toBe(kekSlotOf(before));
            expect(await elsewhere().decryptValue(token)).toBe('v1');

            const v3 = await client.rotate('users', { toSlot: 'b', ...kekOption });
            expect(v3).toMatchObject({ version: 3, kmsName: 'b' });
            const other = elsewhere();
            expect(await other.decryptValue(token)).toBe('v1');
            expect(await other.decryptValue(await other.encryptValue('v3'))).toBe('v3');
          }),
        );

        it(
          'rotateKek: a new KEK, every DEK re-wrapped, old and new values readable, twice',
          withFixture(async ({ client, kekOption, elsewhere, supplied, provider }) => {
            const keyring = await IndexKeyring.createIndex(client, 'users', { slot: 'a', ...kekOption });
            await keyring.createDek();
            const t1 = await keyring.encryptValue('one');
            await keyring.createDek();
            const t2 = await keyring.encryptValue('two');
            const kekBefore = provider.suppliesKek ? undefined : await client.unwrap('users');
            const slotBefore = kekSlotOf(await client.getEnvelope('users'));

            const newKek = supplied ? Kek.generate() : undefined;
            const report = await keyring.rotateKek(newKek ? { newKek } : {});
            expect(report).toMatchObject({ dryRun: false, rewrapped: 2, totalDeks: 2, version: 2 });
            const after = await client.getEnvelope('users');
            expect(kekSlotOf(after)).not.toBe(slotBefore);
            expect(kekSlotOf(after)).toBe(report.toKekSlotId);
            if (kekBefore !== undefined) {
              const kekAfter = await client.unwrap('users');
              expect(kekAfter.equals(kekBefore)).toBe(false);
              kekAfter.zero();
              kekBefore.zero();
            }

            const other = elsewhere(newKek);
            expect(await other.decryptValue(t1)).toBe('one');
            expect(await other.decryptValue(t2)).toBe('two');
            const t3 = await other.encryptValue('three');

            const newerKek = supplied ? Kek.generate() : undefined;
            const again = await new IndexKeyring(client, 'users', newKek ? { kek: newKek } : {}).rotateKek(
              newerKek ? { newKek: newerKek } : {},
            );
            expect(again).toMatchObject({ rewrapped: 2, version: 3 });
            const third = elsewhere(newerKek);
            for (const [t, v] of [
              [t1, 'one'],
              [t2, 'two'],
              [t3, 'three'],
            ] as const) {
              expect(await third.decryptValue(t)).toBe(v);
            }
          }),
        );

        it(
          'delete removes the envelope and every record; create again and encrypt works (the old DEK is gone)',
          withFixture(async ({ client, kekOption, elsewhere, storage }) => {
            const index = parseIndexName('users');
            await client.delete('never-created'); // a no-op, records or not
            const first = await IndexKeyring.createIndex(client, 'users', { slot: 'a', ...kekOption });
            const oldDek = await first.createDek();
            const oldToken = await first.encryptValue('old');
            await first.rotateKek(kekOption.kek ? { newKek: kekOption.kek } : {});

            await client.delete('users');
            await expect(client.getEnvelope('users')).rejects.toThrow(EnvelopeNotFoundError);
            expect((await storage.store.listRecords(index, 'dek')).size).toBe(0);
            expect((await storage.store.listRecords(index, 'meta')).size).toBe(0);
            await client.delete('users'); // idempotent

            const second = await IndexKeyring.createIndex(client, 'users', { slot: 'a', ...kekOption });
            const newDek = await second.createDek();
            const token = await second.encryptValue('new');
            const other = elsewhere();
            expect((await other.listDeks()).map((d) => ({ id: d.id, active: d.active }))).toEqual([
              { id: newDek.keyid, active: true },
            ]);
            expect(await other.decryptValue(token)).toBe('new');
            expect(await other.decryptValue(await other.encryptValue('more'))).toBe('more');
            await expect(other.decryptValue(oldToken)).rejects.toThrow(UnknownKeyError);
            expect(newDek.keyid).not.toBe(oldDek.keyid);
          }),
        );

        it(
          'delete with keepRecords keeps them for a saved envelope pushed back; create refuses until a full delete',
          withFixture(async ({ client, kekOption, elsewhere, storage }) => {
            const index = parseIndexName('users');
            const keyring = await IndexKeyring.createIndex(client, 'users', { slot: 'a', ...kekOption });
            await keyring.createDek();
            const token = await keyring.encryptValue('kept');
            const saved = await client.getEnvelope('users');

            await client.delete('users', { keepRecords: true });
            expect((await storage.store.listRecords(index, 'dek')).size).toBe(1);
            await expect(
              IndexKeyring.createIndex(client, 'users', { slot: 'a', ...kekOption }),
            ).rejects.toThrow(EnvelopeExistsError);
            await expect(client.getEnvelope('users')).rejects.toThrow(EnvelopeNotFoundError); // nothing created

            await storage.store.create(index, saved);
            expect(await elsewhere().decryptValue(token)).toBe('kept');

            await client.delete('users');
            const again = await IndexKeyring.createIndex(client, 'users', { slot: 'a', ...kekOption });
            await again.createDek();
            expect(await again.decryptValue(await again.encryptValue('fresh'))).toBe('fresh');
          }),
        );

        // Cases that do not apply to a provider are not registered for it (a skip would read as
        // a gap): 'none' binds nothing to a KMS; passphrase KEKs exist only for 'none'.
        (name === 'none' ? noCase : it)(
          'the KEK slot marker is bound by the provider: a store writer who changes it breaks the unwrap',
          withFixture(async ({ client, newClient, storage }) => {
            const index = parseIndexName('users');
            await IndexKeyring.createIndex(client, 'users', { slot: 'a' });
            const blob = await storage.store.get(index);
            const forged = {
              ...blob,
              encryptionContext: {
                ...blob.encryptionContext,
                [KEK_SLOT_CONTEXT_KEY]: 'ffffffff-ffff-7fff-bfff-ffffffffffff',
              },
            };
            await storage.store.push(index, forged);
            await expect(newClient(storage.reopen()).unwrap('users')).rejects.toThrow(UnwrapFailedError);
          }),
        );

        (name === 'none' ? it : noCase)(
          'passphrase KEKs: create, DEKs, derive elsewhere, delete removes the KDF parameters too',
          withFixture(async ({ client, newClient, storage }) => {
            const keyring = await createPassphraseIndex(client, 'users', {
              slot: 'a',
              passphrase: 'correct horse',
            });
            await keyring.createDek();
            const token = await keyring.encryptValue('secret');
            const other = newClient(storage.reopen());
            const kek = await deriveAndVerifyKek(other, 'users', 'correct horse');
            expect(await new IndexKeyring(other, 'users', { kek }).decryptValue(token)).toBe('secret');
            await expect(deriveAndVerifyKek(other, 'users', 'wrong horse')).rejects.toThrow(KekMismatchError);

            await client.delete('users');
            expect((await storage.store.listRecords(parseIndexName('users'), 'meta')).size).toBe(0);
            const again = await createPassphraseIndex(client, 'users', {
              slot: 'a',
              passphrase: 'new horse',
            });
            await again.createDek();
            expect(await again.decryptValue(await again.encryptValue('x'))).toBe('x');
            kek.zero();
          }),
        );
      },
    );
  }
}
