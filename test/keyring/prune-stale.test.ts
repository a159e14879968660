/**
 * Indexes already broken by the delete of earlier releases (it removed only the envelope): after
 * `create` again, `dek list` showed the old DEK as active, `encrypt` failed with "KEK slot … is
 * neither the current KEK nor a rotation in progress" and `rotateKek` refused the old records.
 * `pruneStaleRecords` removes what no KEK of the index can open any more.
 */
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { KmsEnvelopeClient } from '../../src/client.js';
import { UnknownKeyError, VersionConflictError } from '../../src/errors.js';
import { IndexKeyring } from '../../src/keyring/keyring.js';
import { parseIndexName } from '../../src/names.js';
import { StorageConfig } from '../../src/storage/config.js';

async function brokenIndex() {
  const store = StorageConfig.memory();
  const kms = {
    slots: { dev: { provider: 'local', masterKey: `literal:${randomBytes(32).toString('base64url')}` } },
    secrets: { allowLiteral: true },
  };
  const client = new KmsEnvelopeClient({ store, kms });
  const index = parseIndexName('users');
  const old = await IndexKeyring.createIndex(client, 'users', { slot: 'dev' });
  const oldDek = await old.createDek();
  const oldDeks = await store.listRecords(index, 'dek');
  const oldMeta = await store.listRecords(index, 'meta');
  // What the earlier delete and a create after it left: the new envelope and KEK check, and the
  // old DEK records, old KEK check and old active pointer beside them.
  await client.delete('users');
  await IndexKeyring.createIndex(client, 'users', { slot: 'dev' });
  await store.putRecords(index, 'dek', oldDeks);
  await store.putRecords(index, 'meta', oldMeta);
  return { store, kms, client, index, oldDek: oldDek.keyid };
}

describe('pruneStaleRecords', () => {
  it('repairs an index created again over the records an earlier delete left', async () => {
    const { store, client, index, oldDek } = await brokenIndex();
    const keyring = new IndexKeyring(client, 'users');
    expect(await keyring.listDeks()).toMatchObject([{ id: oldDek, active: true }]);
    await expect(keyring.encryptValue('x')).rejects.toThrow(/neither the current KEK nor a rotation/);

    const dry = await keyring.pruneStaleRecords({ dryRun: true });
    expect(dry).toMatchObject({ dryRun: true, deks: [oldDek], active: true });
    expect(dry.kekChecks).toHaveLength(1);
    expect((await store.listRecords(index, 'dek')).size).toBe(1); // nothing changed

    const report = await keyring.pruneStaleRecords();
    expect(report).toMatchObject({ dryRun: false, deks: [oldDek], active: true });
    expect(await keyring.listDeks()).toEqual([]);
    const meta = [...(await store.listRecords(index, 'meta')).keys()];
    expect(meta).toHaveLength(1); // the current KEK check only
    expect(meta[0]).toMatch(/^kek-check\./);

    await keyring.createDek();
    const token = await keyring.encryptValue('works');
    expect(await keyring.decryptValue(token)).toBe('works');
    expect(await keyring.rotateKek()).toMatchObject({ rewrapped: 1 });
    expect(await keyring.pruneStaleRecords()).toMatchObject({ deks: [], kekChecks: [], active: false });
    await expect(keyring.getDek(oldDek)).rejects.toThrow(UnknownKeyError);
  });

  it('keeps everything a live KEK opens, and changes nothing when the index moves while it looks', async () => {
    const { store, kms, client, index } = await brokenIndex();
    const keyring = new IndexKeyring(client, 'users');
    await keyring.pruneStaleRecords();
    await keyring.createDek();
    const token = await keyring.encryptValue('kept');
    expect(await keyring.pruneStaleRecords()).toMatchObject({ deks: [], kekChecks: [], active: false });
    expect(await keyring.decryptValue(token)).toBe('kept');

    // A rotation lands between its two reads of the envelope: it refuses and deletes nothing.
    const racing = new Proxy(store, {
      get(target, property) {
        if (property === 'listRecords') {
          return async (...args: Parameters<typeof store.listRecords>) => {
            if (args[1] === 'meta') await client.rotate('users');
            return target.listRecords(...args);
          };
        }
        const value = Reflect.get(target, property, target) as unknown;
        return typeof value === 'function' ? value.bind(target) : value;
      },
    });
    const before = await store.listRecords(index, 'dek');
    const raced = new IndexKeyring(new KmsEnvelopeClient({ store: racing, kms }), 'users');
    await expect(raced.pruneStaleRecords()).rejects.toThrow(VersionConflictError);
    expect((await store.listRecords(index, 'dek')).size).toBe(before.size);
  });
});
