import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { KmsEnvelopeClient } from '../../src/client.js';
import {
  ContextBindingError,
  DecryptFailedError,
  KekMismatchError,
  MalformedTokenError,
  UnknownKeyError,
} from '../../src/errors.js';
import { IndexKeyring, kekSlotOf, keyctxResolver } from '../../src/keyring/keyring.js';
import { Kek } from '../../src/keys/kek.js';
import { parseIndexName } from '../../src/names.js';
import { StorageConfig } from '../../src/storage/config.js';
import { decryptString } from '../../src/wire/fields.js';
import { newKeyId } from '../../src/wire/key-id.js';

const literal = () => `literal:${randomBytes(32).toString('base64url')}`;

function setup() {
  const store = StorageConfig.memory();
  const client = new KmsEnvelopeClient({
    store,
    kms: {
      slots: { dev: { provider: 'local', masterKey: literal() }, byok: { provider: 'none' } },
      secrets: { allowLiteral: true },
    },
  });
  return { store, client };
}

describe('IndexKeyring', () => {
  it('DEKs wrapped under the KEK encrypt and decrypt values; the resolver needs no key id', async () => {
    const { client } = setup();
    const keyring = await IndexKeyring.createIndex(client, 'orders', { slot: 'dev' });
    const dek1 = await keyring.createDek();
    const t1 = await keyring.encryptValue('first');
    const dek2 = await keyring.createDek();
    const t2 = await keyring.encryptValue('second');
    expect(t1.split('$')[2]).toBe(dek1.keyid);
    expect(t2.split('$')[2]).toBe(dek2.keyid);
    // A fresh keyring (another process) finds both DEKs from the tokens alone.
    const fresh = new IndexKeyring(client, 'orders');
    expect(await fresh.decryptValue(t1)).toBe('first');
    expect(await decryptString(t2, keyctxResolver(fresh))).toBe('second');
    const list = await fresh.listDeks();
    expect(list.map((d) => [d.id, d.active, d.state])).toEqual(
      [
        [dek1.keyid, false, 'enabled'],
        [dek2.keyid, true, 'enabled'],
      ].sort(),
    );
    expect(JSON.stringify(list)).not.toContain(dek1.key.expose().toString('base64'));
  });

  it('unknown or wrong key ids are typed errors naming the id', async () => {
    const { client } = setup();
    const keyring = await IndexKeyring.createIndex(client, 'orders', { slot: 'dev' });
    await keyring.createDek();
    const token = await keyring.encryptValue('v');
    const stranger = newKeyId();
    const err = await keyring
      .decryptValue(token.replace(token.split('$')[2]!, stranger))
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UnknownKeyError);
    expect((err as UnknownKeyError).keyId).toBe(stranger);
    expect((err as Error).message).toContain(stranger);
    await expect(keyring.getDek('42')).rejects.toThrow(/integer/);
  });

  it('a wrong caller-supplied KEK (provider none) fails with KekMismatchError before any data is touched', async () => {
    const { client } = setup();
    const kek = Kek.generate();
    const keyring = await IndexKeyring.createIndex(client, 'byok', { slot: 'byok', kek });
    await keyring.createDek();
    const token = await keyring.encryptValue('secret');
    // The envelope's own check catches it first; the KEK-check record is the second line.
    const wrong = new IndexKeyring(client, 'byok', { kek: Kek.generate() });
    await expect(wrong.decryptValue(token)).rejects.toThrow(KekMismatchError);
    const right = new IndexKeyring(client, 'byok', { kek });
    expect(await right.decryptValue(token)).toBe('secret');
    await expect(
      right.verifyKek(Kek.generate(), kekSlotOf(await client.getEnvelope('byok'))!),
    ).rejects.toThrow(KekMismatchError);
  });

  it('a corrupt DEK record is a typed error, distinct from a wrong KEK', async () => {
    const { client, store } = setup();
    const keyring = await IndexKeyring.createIndex(client, 'orders', { slot: 'dev' });
    const dek = await keyring.createDek();
    const token = await keyring.encryptValue('v');
    const raw = JSON.parse(
      Buffer.from((await store.getRecord(parseIndexName('orders'), 'dek', dek.keyid))!).toString(),
    );
    const blob = raw.wrapped.split('$');
    blob[4] = `${blob[4].slice(0, 10)}${blob[4][10] === 'A' ? 'B' : 'A'}${blob[4].slice(11)}`;
    await store.putRecord(
      parseIndexName('orders'),
      'dek',
      dek.keyid,
      Buffer.from(JSON.stringify({ ...raw, wrapped: blob.join('$') })),
    );
    await expect(new IndexKeyring(client, 'orders').decryptValue(token)).rejects.toThrow(DecryptFailedError);
    await store.putRecord(parseIndexName('orders'), 'dek', dek.keyid, Buffer.from('{not json'));
    await expect(new IndexKeyring(client, 'orders').decryptValue(token)).rejects.toThrow(MalformedTokenError);
  });

  it('deactivated DEKs still decrypt but are no longer active', async () => {
    const { client } = setup();
    const keyring = await IndexKeyring.createIndex(client, 'orders', { slot: 'dev' });
    const dek = await keyring.createDek();
    const token = await keyring.encryptValue('v');
    await keyring.deactivateDek(dek.keyid);
    await expect(keyring.encryptValue('w')).rejects.toThrow(/no active DEK/);
    expect(await new IndexKeyring(client, 'orders').decryptValue(token)).toBe('v');
    expect((await keyring.listDeks())[0]).toMatchObject({ state: 'deactivated', active: false });
  });

  it('context binding goes through the keyring too', async () => {
    const { client } = setup();
    const keyring = await IndexKeyring.createIndex(client, 'orders', { slot: 'dev' });
    await keyring.createDek();
    const token = await keyring.encryptValue('v', { context: { tenant: 'acme' } });
    expect(await keyring.decryptValue(token, { context: { tenant: 'acme' } })).toBe('v');
    await expect(keyring.decryptValue(token)).rejects.toThrow(ContextBindingError);
  });
});

describe('rotateKek', () => {
  async function populated(n: number) {
    const { client, store } = setup();
    const keyring = await IndexKeyring.createIndex(client, 'orders', { slot: 'dev' });
    const tokens: [string, string][] = [];
    for (let i = 0; i < n; i++) {
      await keyring.createDek();
      tokens.push([await keyring.encryptValue(`value-${i}`), `value-${i}`]);
    }
    return { client, store, keyring, tokens };
  }

  it('re-wraps every DEK under a new KEK, version + 1, values and DEKs unchanged', async () => {
    const { client, keyring, tokens } = await populated(20);
    const before = await client.getEnvelope('orders');
    const kekBefore = await client.unwrap('orders');
    const progress: [number, number][] = [];
    const report = await keyring.rotateKek({ batchSize: 7, onProgress: (d, t) => progress.push([d, t]) });
    const after = await client.getEnvelope('orders');
    expect(after.version).toBe(before.version + 1);
    expect(kekSlotOf(after)).not.toBe(kekSlotOf(before));
    expect((await client.unwrap('orders')).equals(kekBefore)).toBe(false);
    expect(report).toMatchObject({
      dryRun: false,
      resumed: false,
      rewrapped: 20,
      alreadyDone: 0,
      totalDeks: 20,
      version: 2,
    });
    expect(progress.at(-1)).toEqual([20, 20]);
    const fresh = new IndexKeyring(client, 'orders');
    for (const [token, plaintext] of tokens) expect(await fresh.decryptValue(token)).toBe(plaintext);
    expect((await fresh.listDeks()).every((d) => d.kekSlotId === kekSlotOf(after))).toBe(true);
  });

  it('a dry run lists what would change and changes nothing', async () => {
    const { client, keyring } = await populated(3);
    const before = await client.getEnvelope('orders');
    const report = await keyring.rotateKek({ dryRun: true });
    expect(report).toMatchObject({ dryRun: true, rewrapped: 0, totalDeks: 3, version: 2 });
    expect(report.deks).toHaveLength(3);
    expect(await client.getEnvelope('orders')).toEqual(before);
  });

  it('an interrupted rotation leaves every value readable and finishes when run again', async () => {
    const { client, keyring, tokens } = await populated(30);
    await expect(
      keyring.rotateKek({
        batchSize: 5,
        onProgress: (done) => {
          if (done >= 10) throw new Error('crash');
        },
      }),
    ).rejects.toThrow('crash');
    // Half way: some records under the new KEK, the envelope still the old one.
    const mid = new IndexKeyring(client, 'orders');
    for (const [token, plaintext] of tokens) expect(await mid.decryptValue(token)).toBe(plaintext);
    expect((await client.getEnvelope('orders')).version).toBe(1);
    // New DEKs created mid-rotation go under the new KEK.
    await mid.createDek();
    const late = await mid.encryptValue('late');
    const report = await new IndexKeyring(client, 'orders').rotateKek({ batchSize: 5 });
    expect(report).toMatchObject({
      resumed: true,
      alreadyDone: 11,
      rewrapped: 20,
      totalDeks: 31,
      version: 2,
    });
    const done = new IndexKeyring(client, 'orders');
    for (const [token, plaintext] of [...tokens, [late, 'late'] as [string, string]]) {
      expect(await done.decryptValue(token)).toBe(plaintext);
    }
    // A further rotation starts afresh.
    expect(await done.rotateKek()).toMatchObject({ resumed: false, version: 3, rewrapped: 31 });
  });

  it('provider none needs the new KEK from the caller', async () => {
    const { client } = setup();
    const kek = Kek.generate();
    const keyring = await IndexKeyring.createIndex(client, 'byok', { slot: 'byok', kek });
    await keyring.createDek();
    const token = await keyring.encryptValue('v');
    await expect(keyring.rotateKek()).rejects.toThrow(/pass the new KEK/);
    const next = Kek.generate();
    await keyring.rotateKek({ newKek: next });
    expect(await new IndexKeyring(client, 'byok', { kek: next }).decryptValue(token)).toBe('v');
    await expect(new IndexKeyring(client, 'byok', { kek }).decryptValue(token)).rejects.toThrow(
      KekMismatchError,
    );
  });
});
