/**
 * What a person who can write the envelope store, but not use the KMS, must not be able to do
 * (docs/threat-model.md): choose the slot, roll an index back, confuse a re-created index with
 * the one a rotator read, or drop the check value of a `none` envelope. Each test here fails on
 * the code before the store-writer boundary was closed.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAzureKvProvider } from '../../providers/azure-kv.js';
import { KmsEnvelopeClient, type KmsEnvelopeClientOptions } from '../../src/client.js';
import { crc32c } from '../../src/envelope/checksum.js';
import { decodeKmsBlob, encodeKmsBlob } from '../../src/envelope/codec.js';
import type { KmsBlob } from '../../src/envelope/kms-blob.js';
import {
  DeadlineExceededError,
  InvalidArgumentError,
  MalformedEnvelopeError,
  RollbackError,
  SlotNotAllowedError,
  StoreUnavailableError,
  UnwrapFailedError,
  VersionConflictError,
} from '../../src/errors.js';
import { IndexKeyring } from '../../src/keyring/keyring.js';
import { Kek } from '../../src/keys/kek.js';
import { kekCheckValue } from '../../src/keys/kek-check.js';
import { parseIndexName, parseSlotName } from '../../src/names.js';
import type { KmsSlotInput } from '../../src/providers/slot.js';
import { StorageConfig } from '../../src/storage/config.js';
import type { EnvelopeStore } from '../../src/storage/store.js';
import { type FakeAzureKvHandle, startFakeAzureKv } from '../../src/testing/fake-azure-kv.js';
import { faultClient } from '../unwrap/fault-provider.js';

const literal = (key: Buffer) => `literal:${key.toString('base64url')}`;

/** A client over `store` with local slots of their own master keys. */
function localClient(
  store: EnvelopeStore,
  slots: Record<string, Partial<KmsSlotInput>>,
  options: Partial<KmsEnvelopeClientOptions> = {},
  masters: Record<string, Buffer> = Object.fromEntries(
    Object.keys(slots).map((name) => [name, randomBytes(32)]),
  ),
) {
  return new KmsEnvelopeClient({
    store,
    kms: {
      slots: Object.fromEntries(
        Object.entries(slots).map(([name, extra]) => [
          name,
          { provider: 'local', masterKey: literal(masters[name]!), keyId: `${name}-key`, ...extra },
        ]),
      ),
      secrets: { allowLiteral: true },
    },
    ...options,
  });
}

/** An envelope with fields changed and a valid checksum: what a store writer can write. */
const rewritten = (blob: KmsBlob, changes: Partial<KmsBlob>) => encodeKmsBlob({ ...blob, ...changes });

describe('a store writer cannot choose the slot', () => {
  let fake: FakeAzureKvHandle;
  beforeAll(async () => {
    fake = await startFakeAzureKv();
    await fake.createKey('hsm', 'oct-HSM');
    await fake.createKey('rsa', 'RSA');
  });
  afterAll(() => fake.close());

  const azureSlot = (key: string, extra: Record<string, unknown> = {}): KmsSlotInput => ({
    provider: 'azure-kv',
    keyId: fake.keyId(key),
    options: { credential: fake.credential, clientOptions: fake.clientOptions(), ...extra },
  });

  /**
   * The attack of the issue: an index created under an A256KW (HSM) slot is re-homed by the
   * store writer onto an RSA slot, wrapping a KEK of their choosing under the RSA key's public
   * half (here through the vault's wrap, which needs nothing but that public key).
   */
  async function rehomedToRsa(slots: Record<string, KmsSlotInput>) {
    const store = StorageConfig.memory();
    const client = new KmsEnvelopeClient({ store, kms: { slots }, cache: false });
    const kek = await client.createIndex('orders', { slot: 'hsm' });
    const genuine = await client.getEnvelope('orders');
    const chosen = Kek.generate();
    const attacker = createAzureKvProvider({
      keyId: fake.keyId('rsa'),
      credential: fake.credential,
      clientOptions: fake.clientOptions(),
    });
    const forged = await attacker.wrap(chosen, {
      index: parseIndexName('orders'),
      slot: parseSlotName('rsa'),
      encryptionContext: {},
      version: genuine.version + 1,
      creationId: genuine.creationId!,
    });
    await store.push(parseIndexName('orders'), {
      ...genuine,
      ...forged,
      kmsName: 'rsa',
      version: genuine.version + 1,
      kekCheck: kekCheckValue(chosen),
    });
    return { client, kek, chosen };
  }

  it('an envelope moved onto an RSA slot is refused before any KMS call (no allowPublicKeyWrap)', async () => {
    const { client, kek, chosen } = await rehomedToRsa({
      hsm: azureSlot('hsm', { algorithm: 'A256KW' }),
      rsa: azureSlot('rsa'),
    });
    const calls = fake.calls();
    const err = await client.unwrap('orders').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SlotNotAllowedError);
    expect((err as SlotNotAllowedError).code).toBe('KMS_ENVELOPE_SLOT_NOT_ALLOWED');
    expect(fake.calls()).toBe(calls);
    // Nor can rotation launder it into the trusted slot.
    await expect(client.rotate('orders', { toSlot: 'hsm' })).rejects.toThrow(SlotNotAllowedError);
    expect(fake.calls()).toBe(calls);
    kek.zero();
    chosen.zero();
    await client.close();
  });

  it("with allowPublicKeyWrap, the RSA slot still serves only the indexes its 'indexes' name", async () => {
    const { client, kek, chosen } = await rehomedToRsa({
      hsm: azureSlot('hsm', { algorithm: 'A256KW' }),
      rsa: { ...azureSlot('rsa'), allowPublicKeyWrap: true, indexes: ['public-*'] },
    });
    const calls = fake.calls();
    await expect(client.unwrap('orders')).rejects.toThrow(SlotNotAllowedError);
    expect(fake.calls()).toBe(calls);
    kek.zero();
    chosen.zero();
    await client.close();
  });

  it('an RSA wrap relabelled onto the HSM slot is refused by the provider before any call', async () => {
    const store = StorageConfig.memory();
    const client = new KmsEnvelopeClient({
      store,
      kms: { slots: { hsm: azureSlot('hsm', { algorithm: 'A256KW' }) } },
      cache: false,
    });
    (await client.createIndex('orders', { slot: 'hsm' })).zero();
    const genuine = await client.getEnvelope('orders');
    const attacker = createAzureKvProvider({
      keyId: fake.keyId('rsa'),
      credential: fake.credential,
      clientOptions: fake.clientOptions(),
    });
    const chosen = Kek.generate();
    const forged = await attacker.wrap(chosen, {
      index: parseIndexName('orders'),
      slot: parseSlotName('hsm'),
      encryptionContext: {},
      version: 2,
      creationId: genuine.creationId!,
    });
    // The slot's own key id, an RSA-format wrap: only the envelope's format byte says RSA.
    await store.push(parseIndexName('orders'), {
      ...genuine,
      wrappedKek: forged.wrappedKek,
      version: 2,
      kekCheck: kekCheckValue(chosen),
    });
    const calls = fake.calls();
    await expect(client.unwrap('orders')).rejects.toThrow(SlotNotAllowedError);
    expect(fake.calls()).toBe(calls);
    chosen.zero();
    await client.close();
  });

  it('creating an index under a slot that may not serve it, or an RSA slot without the opt-in, is refused', async () => {
    const client = new KmsEnvelopeClient({
      store: StorageConfig.memory(),
      kms: {
        slots: {
          rsa: azureSlot('rsa'),
          narrow: { ...azureSlot('hsm', { algorithm: 'A256KW' }), indexes: ['billing', 'tenant-*'] },
        },
      },
    });
    const calls = fake.calls();
    await expect(client.createIndex('orders', { slot: 'rsa' })).rejects.toThrow(SlotNotAllowedError);
    await expect(client.createIndex('orders', { slot: 'narrow' })).rejects.toThrow(SlotNotAllowedError);
    expect(fake.calls()).toBe(calls);
    (await client.createIndex('tenant-7', { slot: 'narrow' })).zero();
    (await client.createIndex('billing', { slot: 'narrow' })).zero();
    await client.close();
  });

  it('with local slots: a co-tenant holding slot b cannot serve an index that only slot a may', async () => {
    const store = StorageConfig.memory();
    const masters = { a: randomBytes(32), b: randomBytes(32) };
    const client = localClient(
      store,
      { a: { indexes: ['a-*'] }, b: { indexes: ['b-*'] } },
      { cache: false },
      masters,
    );
    (await client.createIndex('a-orders', { slot: 'a' })).zero();
    const genuine = await client.getEnvelope('a-orders');
    await expect(client.createIndex('a-other', { slot: 'b' })).rejects.toThrow(SlotNotAllowedError);
    // The co-tenant, who holds slot b's key, wraps a KEK of their choosing bound to a-orders.
    const coTenant = localClient(StorageConfig.memory(), { b: {} }, {}, { b: masters.b });
    const chosen = Kek.generate();
    const forged = await coTenant.prepareEnvelope('a-orders', chosen, {
      slot: 'b',
      version: 5,
      creationId: genuine.creationId!,
    });
    await expect(client.unwrapEnvelope('a-orders', forged)).rejects.toThrow(SlotNotAllowedError);
    await store.push(parseIndexName('a-orders'), forged);
    await expect(client.unwrap('a-orders')).rejects.toThrow(SlotNotAllowedError);
    chosen.zero();
  });
});

describe('a store writer cannot roll an index back', () => {
  it('an older envelope replayed after a rotation is refused (in-process high-water mark)', async () => {
    const store = StorageConfig.memory();
    const client = localClient(store, { dev: {}, next: {} }, { cache: false });
    const kek = await client.createIndex('orders', { slot: 'dev' });
    const v1 = await store.getEncoded!(parseIndexName('orders'));
    await client.rotate('orders', { toSlot: 'next' });
    expect((await client.unwrap('orders')).equals(kek)).toBe(true);
    await store.push(parseIndexName('orders'), decodeKmsBlob(v1));
    const err = await client.unwrap('orders').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RollbackError);
    expect((err as Error).message).toMatch(/version 1, older than version 2/);
    await expect(client.verify('orders')).rejects.toThrow(RollbackError);
    await expect(client.rotate('orders')).rejects.toThrow(RollbackError);
    kek.zero();
  });

  it('a minVersion source refuses it in a fresh process too, before any KMS call', async () => {
    const { client: writer, store, kms, controls } = faultClient({ cache: false });
    (await writer.createIndex('orders', { slot: 'a' })).zero();
    const v1 = await store.getEncoded!(parseIndexName('orders'));
    await writer.rotate('orders');
    await store.push(parseIndexName('orders'), decodeKmsBlob(v1));
    const asked: string[] = [];
    const fresh = new KmsEnvelopeClient({
      store,
      kms,
      cache: false,
      minVersion: async (index) => {
        asked.push(index);
        return 2;
      },
    });
    const calls = controls.unwrapCalls;
    await expect(fresh.unwrap('orders')).rejects.toThrow(RollbackError);
    expect(asked).toEqual(['orders']);
    expect(controls.unwrapCalls).toBe(calls);
    // Without the source, a fresh process has nothing to compare with: documented.
    (await new KmsEnvelopeClient({ store, kms, cache: false }).unwrap('orders')).zero();
  });

  it('version and creation id are bound by the KMS: editing either in the stored envelope breaks the unwrap', async () => {
    const store = StorageConfig.memory();
    const client = localClient(store, { dev: {} }, { cache: false });
    (await client.createIndex('orders', { slot: 'dev' })).zero();
    const genuine = await client.getEnvelope('orders');
    const index = parseIndexName('orders');
    await store.push(index, decodeKmsBlob(rewritten(genuine, { version: 7 })));
    await expect(client.unwrap('orders')).rejects.toThrow(UnwrapFailedError);
    await store.push(index, decodeKmsBlob(rewritten(genuine, { creationId: new Uint8Array(16) })));
    await expect(client.unwrap('orders')).rejects.toThrow(UnwrapFailedError);
    await store.push(index, genuine);
    (await client.unwrap('orders')).zero();
  });

  it('a schema 1 envelope stays readable, rotate upgrades it, and the old one is then refused', async () => {
    const store = StorageConfig.memory();
    const slots = { dev: { provider: 'local', masterKey: literal(randomBytes(32)), keyId: 'k' } };
    const client = new KmsEnvelopeClient({
      store,
      kms: { slots, secrets: { allowLiteral: true } },
      cache: false,
    });
    // A schema 1 envelope as the previous release wrote it: bound without version or creation id.
    const kek = Kek.generate();
    const provider = await client.kms.provider('dev');
    const wrapped = await provider.wrap(kek, {
      index: parseIndexName('orders'),
      slot: parseSlotName('dev'),
      encryptionContext: {},
    });
    const legacy: KmsBlob = {
      kmsName: 'dev',
      provider: 'local',
      ...wrapped,
      version: 3,
      createdAt: 1_700_000_000,
      updatedAt: 1_700_000_000,
      indexName: 'orders',
      encryptionContext: {},
      schemaVersion: 1,
      kekCheck: kekCheckValue(kek),
    };
    await store.create(parseIndexName('orders'), legacy);
    expect((await client.unwrap('orders')).equals(kek)).toBe(true);
    const upgraded = await client.rotate('orders');
    expect(upgraded).toMatchObject({ schemaVersion: 2, version: 4 });
    expect(upgraded.creationId).toHaveLength(16);
    expect((await client.unwrap('orders')).equals(kek)).toBe(true);
    await store.push(parseIndexName('orders'), legacy);
    await expect(client.unwrap('orders')).rejects.toThrow(RollbackError);
    kek.zero();
  });

  it('rotateKek keeps the creation, so the envelope it replaced cannot come back as "another creation"', async () => {
    const store = StorageConfig.memory();
    const client = localClient(store, { dev: {} }, { cache: false });
    const keyring = await IndexKeyring.createIndex(client, 'orders', { slot: 'dev' });
    await keyring.createDek();
    const before = await client.getEnvelope('orders');
    const old = await store.getEncoded!(parseIndexName('orders'));
    await keyring.rotateKek();
    const after = await client.getEnvelope('orders');
    expect(after.version).toBe(before.version + 1);
    expect(Buffer.from(after.creationId!)).toEqual(Buffer.from(before.creationId!));
    (await client.unwrap('orders')).zero();
    await store.push(parseIndexName('orders'), decodeKmsBlob(old));
    await expect(client.unwrap('orders')).rejects.toThrow(RollbackError);
  });

  it('a delete and re-create by this client starts a new creation at version 1', async () => {
    const store = StorageConfig.memory();
    const client = localClient(store, { dev: {} }, { cache: false });
    (await client.createIndex('orders', { slot: 'dev' })).zero();
    await client.rotate('orders');
    await client.delete('orders');
    const kek = await client.createIndex('orders', { slot: 'dev' });
    expect((await client.unwrap('orders')).equals(kek)).toBe(true);
    kek.zero();
  });
});

describe('compare-and-set across a delete and re-create (ABA)', () => {
  const stores = (): [string, () => EnvelopeStore][] => [
    ['memory', () => StorageConfig.memory()],
    [
      'disk',
      () => StorageConfig.disk(`${process.env.TMPDIR ?? '/tmp'}/kms-aba-${randomBytes(6).toString('hex')}`),
    ],
  ];

  it.each(stores())(
    '%s: a rotation that read v1 before a delete does not overwrite the re-created v1',
    async (_, make) => {
      const store = make();
      const client = localClient(store, { dev: {} }, { cache: false });
      (await client.createIndex('orders', { slot: 'dev' })).zero();
      const read = await client.getEnvelope('orders');
      // Meanwhile another instance deletes the index and creates it again: version 1 once more.
      await client.delete('orders');
      const fresh = await client.createIndex('orders', { slot: 'dev' });
      const next = await client.prepareEnvelope('orders', Kek.generate(), {
        slot: 'dev',
        version: 2,
        creationId: read.creationId!,
      });
      const err = await store
        .push(parseIndexName('orders'), next, { expectedVersion: 1, expectedCreationId: read.creationId! })
        .catch((e: unknown) => e);
      expect(err).toBeInstanceOf(VersionConflictError);
      expect((err as VersionConflictError).recreated).toBe(true);
      expect((await client.unwrap('orders')).equals(fresh)).toBe(true);
      fresh.zero();
      await store.close();
    },
  );

  it('client.rotate over a store re-created between its read and its push gets VersionConflictError', async () => {
    const inner = StorageConfig.memory();
    let client!: KmsEnvelopeClient;
    let recreate = true;
    const store: EnvelopeStore = {
      kind: 'racy',
      description: 'racy',
      create: (i, b) => inner.create(i, b),
      get: async (i) => {
        const blob = await inner.get(i);
        if (recreate) {
          recreate = false;
          await inner.delete(i);
          // Another instance, with the same slot, creates the index again.
          (await client.createIndex(i, { slot: 'dev' })).zero();
        }
        return blob;
      },
      push: (i, b, o) => inner.push(i, b, o),
      delete: (i) => inner.delete(i),
      close: () => inner.close(),
    };
    client = localClient(store, { dev: {} }, { cache: false });
    (await client.createIndex('orders', { slot: 'dev' })).zero();
    await inner.get(parseIndexName('orders'));
    recreate = true;
    const err = await client.rotate('orders').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(VersionConflictError);
    expect((err as VersionConflictError).recreated).toBe(true);
    expect((await inner.get(parseIndexName('orders'))).version).toBe(1);
  });
});

describe('provider none', () => {
  it('an envelope without kek_check is malformed, so no supplied KEK can pass for it', async () => {
    const store = StorageConfig.memory();
    const client = new KmsEnvelopeClient({ store, kms: { slots: { byok: { provider: 'none' } } } });
    const kek = Kek.generate();
    (await client.createIndex('orders', { slot: 'byok', kek })).zero();
    const genuine = await client.getEnvelope('orders');
    expect(genuine.kekCheck).toBeDefined();
    // The store writer drops the check value (re-encoding around the encoder's own refusal).
    expect(() => rewritten(genuine, { kekCheck: undefined })).toThrow(InvalidArgumentError);
    const bytes = Buffer.from(encodeKmsBlob(genuine));
    const dropped = dropKekCheck(bytes);
    expect(() => decodeKmsBlob(dropped)).toThrow(MalformedEnvelopeError);
    kek.zero();
  });
});

/** The stored bytes with the kek_check field's vtable entry zeroed (absent) and a fresh CRC. */
function dropKekCheck(stored: Buffer): Uint8Array {
  const fb = Buffer.from(stored.subarray(0, stored.length - 4));
  const root = fb.readUInt32LE(0);
  const vtable = root - fb.readInt32LE(root);
  fb.writeUInt16LE(0, vtable + 4 + 2 * 11); // field 11: kek_check
  return withCrc(fb);
}

function withCrc(fb: Buffer): Uint8Array {
  // Re-encode the trailer with the codec's own checksum.
  const out = Buffer.alloc(fb.length + 4);
  fb.copy(out);
  out.writeUInt32LE(crc32cOf(fb), fb.length);
  return out;
}

const crc32cOf = (fb: Buffer) => crc32c(fb, 0, fb.length);

describe('in-process hazards', () => {
  it("the cache key is checked before the fast path: 'acme\\0billing' is not tenant acme's billing", async () => {
    const client = localClient(StorageConfig.memory(), { dev: {} });
    const billing = await client.createIndex('billing', { slot: 'dev' });
    (await client.unwrap('billing', { tenant: 'acme' })).zero(); // cached under tenant acme
    await expect(client.unwrap('acme\u0000billing')).rejects.toThrow(InvalidArgumentError);
    await expect(client.withKek('acme\u0000billing', () => 1)).rejects.toThrow(InvalidArgumentError);
    // A tenant with a NUL of its own still partitions, and invalidate reaches it.
    (await client.unwrap('billing', { tenant: 'x\u0000y' })).zero();
    const hits = client.stats().cacheHits;
    (await client.unwrap('billing', { tenant: 'x\u0000y' })).zero();
    expect(client.stats().cacheHits).toBe(hits + 1);
    client.invalidate('billing');
    (await client.unwrap('billing', { tenant: 'x\u0000y' })).zero();
    expect(client.stats().cacheHits).toBe(hits + 1);
    await expect(client.unwrap('billing', { tenant: 42 as unknown as string })).rejects.toThrow(
      InvalidArgumentError,
    );
    billing.zero();
  });

  it("one caller's aborted signal abandons only its own wait, never the shared load", async () => {
    const { client, controls } = faultClient();
    (await client.createIndex('orders', { slot: 'a' })).zero();
    client.clearCache();
    controls.delayMs = 200;
    const impatient = new AbortController();
    const first = client.unwrap('orders', { signal: impatient.signal });
    const second = client.unwrap('orders');
    const third = client.withKek('orders', (kek) => kek.expose().length);
    setTimeout(() => impatient.abort(), 20);
    await expect(first).rejects.toThrow(DeadlineExceededError);
    (await second).zero();
    expect(await third).toBe(32);
    expect(controls.unwrapCalls).toBe(1);
    // The shared load ran under the client's deadline, not the impatient caller's signal.
    expect(controls.unwrapSignals[0]).not.toBe(impatient.signal);
    expect(controls.unwrapSignals[0]?.aborted).toBe(false);
  });

  it('a createIndex whose store write failed retryably but did store its envelope succeeds', async () => {
    const inner = StorageConfig.memory();
    const store: EnvelopeStore = {
      kind: 'paused',
      description: 'paused',
      create: async (i, b) => {
        await inner.create(i, b);
        throw new StoreUnavailableError('injected: the answer came after the timeout', { index: i });
      },
      get: (i) => inner.get(i),
      push: (i, b, o) => inner.push(i, b, o),
      delete: (i) => inner.delete(i),
      close: () => inner.close(),
    };
    const client = localClient(store, { dev: {} }, { cache: false });
    const kek = await client.createIndex('orders', { slot: 'dev' });
    expect(kek.expose().some((b) => b !== 0)).toBe(true);
    expect((await client.unwrap('orders')).equals(kek)).toBe(true);
    // A retry of the same create finds the envelope: strict create says so, and the KEK it
    // returned the first time is still the index's.
    await expect(client.createIndex('orders', { slot: 'dev' })).rejects.toThrow(/already exists/);
    expect((await client.unwrap('orders')).equals(kek)).toBe(true);
    kek.zero();
  });

  it('a retryable create failure that stored nothing (or something else) still fails', async () => {
    const inner = StorageConfig.memory();
    const store: EnvelopeStore = {
      kind: 'down',
      description: 'down',
      create: async (i) => {
        throw new StoreUnavailableError('injected: down', { index: i });
      },
      get: (i) => inner.get(i),
      push: (i, b, o) => inner.push(i, b, o),
      delete: (i) => inner.delete(i),
      close: () => inner.close(),
    };
    const client = localClient(store, { dev: {} }, { cache: false });
    await expect(client.createIndex('orders', { slot: 'dev' })).rejects.toThrow(StoreUnavailableError);
  });

  it("decoded byte fields have buffers of their own: transferring one envelope's never empties another's", () => {
    const blobs = Array.from({ length: 20 }, () =>
      decodeKmsBlob(
        encodeKmsBlob({
          kmsName: 'dev',
          provider: 'local',
          keyId: 'k',
          region: '',
          wrappedKek: new Uint8Array(randomBytes(184)),
          version: 1,
          createdAt: 1,
          updatedAt: 1,
          indexName: 'orders',
          encryptionContext: {},
          schemaVersion: 2,
          kekCheck: new Uint8Array(randomBytes(16)),
          creationId: new Uint8Array(randomBytes(16)),
        }),
      ),
    );
    const copies = blobs.map((b) => Buffer.from(b.wrappedKek));
    const transferred = blobs[0]!.wrappedKek.buffer as ArrayBuffer;
    structuredClone(transferred, { transfer: [transferred] });
    expect(blobs[0]!.wrappedKek.length).toBe(0);
    for (let i = 1; i < blobs.length; i++) expect(Buffer.from(blobs[i]!.wrappedKek)).toEqual(copies[i]);
  });
});
