import { describe, expect, it } from 'vitest';
import { KmsEnvelopeClient } from '../../src/client.js';
import {
  ConfigError,
  EnvelopeNotFoundError,
  InvalidArgumentError,
  KekMismatchError,
  WeakKdfParamsError,
} from '../../src/errors.js';
import { IndexKeyring } from '../../src/keyring/keyring.js';
import {
  createPassphraseIndex,
  DEFAULT_KDF_ITERATIONS,
  deriveAndVerifyKek,
  derivePassphraseKek,
  MAX_KDF_ITERATIONS,
  MIN_KDF_ITERATIONS,
  newKdfParams,
  parseKdfParams,
} from '../../src/keyring/passphrase.js';
import { parseIndexName } from '../../src/names.js';
import { StorageConfig } from '../../src/storage/config.js';
import { canonicalJson } from '../../src/wire/params.js';

const salt = (bytes: number) =>
  Buffer.alloc(bytes, 1).toString('base64url') + '='.repeat((3 - (bytes % 3)) % 3);

async function passphraseIndex() {
  const store = StorageConfig.memory();
  const client = new KmsEnvelopeClient({ store, kms: { slots: { pass: { provider: 'none' } } } });
  const keyring = await createPassphraseIndex(client, 'notes', { slot: 'pass', passphrase: 'correct horse' });
  return { store, client, keyring };
}

describe('passphrase KEKs', () => {
  it('persist their PBKDF2 parameters as sorted JSON and verify a passphrase against the KEK check', async () => {
    const { store, client, keyring } = await passphraseIndex();
    await keyring.createDek();
    const token = await keyring.encryptValue('hello');

    const raw = Buffer.from((await store.getRecord(parseIndexName('notes'), 'meta', 'kdf'))!).toString();
    expect(raw).toMatch(
      /^\{"hash":"sha256","iterations":600000,"kdf":"pbkdf2-hmac-sha256","length":32,"salt":"[A-Za-z0-9_-]{22}=="\}$/,
    );

    const kek = await deriveAndVerifyKek(client, 'notes', 'correct horse');
    expect(await new IndexKeyring(client, 'notes', { kek }).decryptValue(token)).toBe('hello');
    await expect(deriveAndVerifyKek(client, 'notes', 'wrong horse')).rejects.toThrow(KekMismatchError);
  });

  it('the stored parameters are the source of truth, not the defaults', async () => {
    const params = { ...newKdfParams(), iterations: MIN_KDF_ITERATIONS };
    const a = await derivePassphraseKek('p', params);
    const b = await derivePassphraseKek('p', JSON.parse(JSON.stringify(params)));
    const c = await derivePassphraseKek('p', { ...params, iterations: MIN_KDF_ITERATIONS + 1 });
    expect(a.equals(b)).toBe(true);
    expect(a.equals(c)).toBe(false);
    expect(newKdfParams().iterations).toBe(DEFAULT_KDF_ITERATIONS);
  });

  it('rejects unknown parameters', () => {
    for (const bad of [null, {}, { ...newKdfParams(), kdf: 'scrypt' }, { ...newKdfParams(), length: 16 }]) {
      expect(() => parseKdfParams(bad)).toThrow(ConfigError);
    }
  });
});

describe('passphrase KDF floors', () => {
  it('a params record with 1000 iterations or an 8-byte salt is refused on read with WeakKdfParamsError', () => {
    for (const weak of [
      { ...newKdfParams(), iterations: 1000 },
      { ...newKdfParams(), iterations: MIN_KDF_ITERATIONS - 1 },
      { ...newKdfParams(), salt: salt(8) },
      { ...newKdfParams(), salt: salt(15) },
      { ...newKdfParams(), salt: '' },
      // A count so high that deriving would stall the process is refused as well.
      { ...newKdfParams(), iterations: MAX_KDF_ITERATIONS + 1 },
      { ...newKdfParams(), iterations: Number.MAX_SAFE_INTEGER },
    ]) {
      const err = (() => {
        try {
          parseKdfParams(weak);
        } catch (e) {
          return e;
        }
      })();
      expect(err, JSON.stringify(weak)).toBeInstanceOf(WeakKdfParamsError);
      expect((err as WeakKdfParamsError).code).toBe('KMS_ENVELOPE_WEAK_KDF');
    }
    expect(
      parseKdfParams({ ...newKdfParams(), iterations: MIN_KDF_ITERATIONS, salt: salt(16) }).iterations,
    ).toBe(MIN_KDF_ITERATIONS);
  });

  it('weak parameters written into the store by someone else are refused before any derivation', async () => {
    const { store, client } = await passphraseIndex();
    const index = parseIndexName('notes');
    for (const weak of [
      { ...newKdfParams(), iterations: 1000 },
      { ...newKdfParams(), salt: salt(8) },
    ]) {
      await store.putRecord(index, 'meta', 'kdf', Buffer.from(canonicalJson(weak), 'utf8'));
      await expect(deriveAndVerifyKek(client, 'notes', 'correct horse')).rejects.toThrow(WeakKdfParamsError);
    }
    await expect(derivePassphraseKek('p', { ...newKdfParams(), iterations: 1000 })).rejects.toThrow(
      WeakKdfParamsError,
    );
  });

  it('no API writes weaker parameters: fewer iterations than 600,000 are refused, the salt is always 16 random bytes', async () => {
    for (const iterations of [
      1000,
      2000,
      MIN_KDF_ITERATIONS,
      DEFAULT_KDF_ITERATIONS - 1,
      1.5,
      MAX_KDF_ITERATIONS + 1,
    ]) {
      expect(() => newKdfParams(iterations)).toThrow(InvalidArgumentError);
    }
    const client = new KmsEnvelopeClient({
      store: StorageConfig.memory(),
      kms: { slots: { pass: { provider: 'none' } } },
    });
    await expect(
      createPassphraseIndex(client, 'weak', { slot: 'pass', passphrase: 'p', iterations: 2000 }),
    ).rejects.toThrow(InvalidArgumentError);
    await expect(client.getEnvelope('weak')).rejects.toThrow(EnvelopeNotFoundError);
    const fresh = newKdfParams();
    expect(Buffer.from(fresh.salt, 'base64url')).toHaveLength(16);
    expect(fresh.salt).not.toBe(newKdfParams().salt);
    expect(newKdfParams(DEFAULT_KDF_ITERATIONS + 1).iterations).toBe(DEFAULT_KDF_ITERATIONS + 1);
  });
});
