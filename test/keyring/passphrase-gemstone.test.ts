import { describe, expect, it } from 'vitest';
import { KmsEnvelopeClient } from '../../src/client.js';
import { ConfigError, WeakKdfParamsError } from '../../src/errors.js';
import { IndexKeyring } from '../../src/keyring/keyring.js';
import {
  createPassphraseIndex,
  DEFAULT_KDF_ITERATIONS,
  deriveAndVerifyKek,
  formatKdfParams,
  newKdfParams,
  parseKdfParams,
} from '../../src/keyring/passphrase.js';
import { parseIndexName } from '../../src/names.js';
import { StorageConfig } from '../../src/storage/config.js';

/** An index created with the default parameters, and a way to restore its kdf record in another spelling. */
async function passphraseIndex() {
  const store = StorageConfig.memory();
  const client = new KmsEnvelopeClient({ store, kms: { slots: { pass: { provider: 'none' } } } });
  const keyring = await createPassphraseIndex(client, 'notes', { slot: 'pass', passphrase: 'correct horse' });
  await keyring.createDek();
  const token = await keyring.encryptValue('hello');
  const index = parseIndexName('notes');
  const stored = JSON.parse(Buffer.from((await store.getRecord(index, 'meta', 'kdf'))!).toString()) as {
    salt: string;
  };
  const storeParams = (json: string) => store.putRecord(index, 'meta', 'kdf', Buffer.from(json, 'utf8'));
  const opens = async () => {
    const kek = await deriveAndVerifyKek(client, 'notes', 'correct horse');
    try {
      return await new IndexKeyring(client, 'notes', { kek }).decryptValue(token);
    } finally {
      kek.zero();
    }
  };
  return { salt: stored.salt, storeParams, opens };
}

describe('KDF parameters as gemstone_utils reads and writes them', () => {
  it('{"kdf":"pbkdf2-hmac-sha256","salt":…} alone: hash sha256, 600,000 iterations, length 32 by default', async () => {
    const { salt, storeParams, opens } = await passphraseIndex();
    await storeParams(JSON.stringify({ kdf: 'pbkdf2-hmac-sha256', salt }));
    expect(await opens()).toBe('hello');
    expect(parseKdfParams({ kdf: 'pbkdf2-hmac-sha256', salt })).toEqual({
      kdf: 'pbkdf2-hmac-sha256',
      hash: 'sha256',
      salt,
      iterations: DEFAULT_KDF_ITERATIONS,
      length: 32,
    });
  }, 30_000);

  it('"hash":"SHA256" and numeric strings are read', async () => {
    const { salt, storeParams, opens } = await passphraseIndex();
    await storeParams(
      JSON.stringify({ kdf: 'pbkdf2-hmac-sha256', hash: 'SHA256', salt, iterations: '600000', length: '32' }),
    );
    expect(await opens()).toBe('hello');
    expect(
      parseKdfParams({ kdf: 'pbkdf2-hmac-sha256', salt, iterations: ' 600_000 ', hash: 'Sha256' }),
    ).toMatchObject({ iterations: 600_000, hash: 'sha256' });
  }, 30_000);

  it('the floors hold for every spelling; other shapes are refused', () => {
    const salt = newKdfParams().salt;
    const base = { kdf: 'pbkdf2-hmac-sha256', salt };
    expect(() => parseKdfParams({ ...base, iterations: '1000' })).toThrow(WeakKdfParamsError);
    expect(() => parseKdfParams({ ...base, iterations: '-600000' })).toThrow(WeakKdfParamsError);
    expect(() => parseKdfParams({ ...base, iterations: '99999999999' })).toThrow(WeakKdfParamsError);
    expect(() => parseKdfParams({ ...base, salt: 'AAAA' })).toThrow(WeakKdfParamsError);
    for (const bad of [
      { ...base, iterations: '6e5' },
      { ...base, iterations: '600000.5' },
      { ...base, iterations: '' },
      { ...base, iterations: null },
      { ...base, length: '64' },
      { ...base, length: 16 },
      { ...base, hash: 'sha512' },
      { ...base, hash: 7 },
      { salt },
      { ...base, kdf: 'PBKDF2' },
      { kdf: 'pbkdf2-hmac-sha256' },
    ]) {
      expect(() => parseKdfParams(bad), JSON.stringify(bad)).toThrow(ConfigError);
    }
  });

  it('writes what gemstone writes: the five fields, sorted compact JSON, numbers as numbers', () => {
    const params = newKdfParams();
    expect(formatKdfParams(params)).toBe(
      `{"hash":"sha256","iterations":600000,"kdf":"pbkdf2-hmac-sha256","length":32,"salt":"${params.salt}"}`,
    );
    // A spelling that was read is written back in the one form.
    expect(
      formatKdfParams(
        parseKdfParams({
          kdf: 'pbkdf2-hmac-sha256',
          salt: params.salt,
          hash: 'SHA256',
          iterations: '700000',
        }),
      ),
    ).toBe(
      `{"hash":"sha256","iterations":700000,"kdf":"pbkdf2-hmac-sha256","length":32,"salt":"${params.salt}"}`,
    );
  });
});
