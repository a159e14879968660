import { describe, expect, it } from 'vitest';
import { KmsEnvelopeClient } from '../../src/client.js';
import { ConfigError, KekMismatchError } from '../../src/errors.js';
import { IndexKeyring } from '../../src/keyring/keyring.js';
import {
  createPassphraseIndex,
  DEFAULT_KDF_ITERATIONS,
  deriveAndVerifyKek,
  derivePassphraseKek,
  newKdfParams,
  parseKdfParams,
} from '../../src/keyring/passphrase.js';
import { parseIndexName } from '../../src/names.js';
import { StorageConfig } from '../../src/storage/config.js';

describe('passphrase KEKs', () => {
  it('persist their PBKDF2 parameters as sorted JSON and verify a passphrase against the KEK check', async () => {
    const store = StorageConfig.memory();
    const client = new KmsEnvelopeClient({ store, kms: { slots: { pass: { provider: 'none' } } } });
    const keyring = await createPassphraseIndex(client, 'notes', {
      slot: 'pass',
      passphrase: 'correct horse',
      iterations: 2000,
    });
    await keyring.createDek();
    const token = await keyring.encryptValue('hello');

    const raw = Buffer.from((await store.getRecord(parseIndexName('notes'), 'meta', 'kdf'))!).toString();
    expect(raw).toMatch(
      /^\{"hash":"sha256","iterations":2000,"kdf":"pbkdf2-hmac-sha256","length":32,"salt":"[A-Za-z0-9_-]+={0,2}"\}$/,
    );

    const kek = await deriveAndVerifyKek(client, 'notes', 'correct horse');
    expect(await new IndexKeyring(client, 'notes', { kek }).decryptValue(token)).toBe('hello');
    await expect(deriveAndVerifyKek(client, 'notes', 'wrong horse')).rejects.toThrow(KekMismatchError);
  });

  it('the stored parameters are the source of truth, not the defaults', async () => {
    const params = newKdfParams(1500);
    const a = await derivePassphraseKek('p', params);
    const b = await derivePassphraseKek('p', JSON.parse(JSON.stringify(params)));
    const c = await derivePassphraseKek('p', { ...params, iterations: 1501 });
    expect(a.equals(b)).toBe(true);
    expect(a.equals(c)).toBe(false);
    expect(newKdfParams().iterations).toBe(DEFAULT_KDF_ITERATIONS);
  });

  it('rejects unknown or weak parameters', () => {
    for (const bad of [
      null,
      {},
      { ...newKdfParams(), kdf: 'scrypt' },
      { ...newKdfParams(), iterations: 10 },
      { ...newKdfParams(), length: 16 },
    ]) {
      expect(() => parseKdfParams(bad)).toThrow(ConfigError);
    }
  });
});
