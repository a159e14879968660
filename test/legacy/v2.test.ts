import { randomBytes } from 'node:crypto';
import { describe, expect, it, vi } from 'vitest';
import { KmsEnvelopeClient } from '../../src/client.js';
import { DecryptFailedError, MalformedTokenError } from '../../src/errors.js';
import { IndexKeyring } from '../../src/keyring/keyring.js';
import { migrateValue } from '../../src/legacy/migrate.js';
import {
  apiKeyHash,
  decryptLegacyV2,
  encryptLegacyV2,
  getOrCreateUserKey,
  isLegacyV2,
  LegacyKey,
  legacyMasterKeyFromEnv,
  legacyPoolKey,
} from '../../src/legacy/v2.js';
import { parseIndexName } from '../../src/names.js';
import { StorageConfig } from '../../src/storage/config.js';
import { isEncryptedValue } from '../../src/wire/format.js';

describe('legacy v2: tokens', () => {
  const key = LegacyKey.generate();

  it('are recognised and decrypted, padded or unpadded', () => {
    const token = encryptLegacyV2('sk-live-123', key);
    expect(isLegacyV2(token)).toBe(true);
    expect(isLegacyV2('sk-live-123')).toBe(false);
    expect(decryptLegacyV2(token, key)).toBe('sk-live-123');
    expect(decryptLegacyV2(encryptLegacyV2('\ufeffbom', key), key)).toBe('\ufeffbom');
    const body = token.slice(3);
    const padded = `v2:${body}${'='.repeat((4 - (body.length % 4)) % 4)}`;
    expect(decryptLegacyV2(padded, key)).toBe('sk-live-123');
    expect(() => decryptLegacyV2(token, LegacyKey.generate())).toThrow(DecryptFailedError);
    expect(() => decryptLegacyV2('v2:!!!', key)).toThrow(MalformedTokenError);
    expect(() => decryptLegacyV2('v2:AAAA', key)).toThrow(MalformedTokenError);
  });

  it('API_KEY_MASTER_KEY: absent or malformed is an explicit disabled state with a warning, never a crash', () => {
    const spy = vi.spyOn(process, 'emitWarning').mockImplementation(() => {});
    expect(legacyMasterKeyFromEnv({})).toEqual({ enabled: false, reason: 'API_KEY_MASTER_KEY is not set' });
    expect(legacyMasterKeyFromEnv({ API_KEY_MASTER_KEY: 'short' })).toMatchObject({ enabled: false });
    expect(legacyMasterKeyFromEnv({ API_KEY_MASTER_KEY: 'not base64!' })).toMatchObject({ enabled: false });
    const value = `${randomBytes(32).toString('base64url')}=`; // padded: the original refuses 43 unpadded characters
    const state = legacyMasterKeyFromEnv({ API_KEY_MASTER_KEY: value });
    expect(state.enabled).toBe(true);
    expect(spy).toHaveBeenCalledTimes(1);
    expect(String(spy.mock.calls[0]![0])).not.toContain(value);
    spy.mockRestore();
  });

  it('per-user keys are created once, wrapped under the master key, and the pool key is derived', async () => {
    const store = StorageConfig.memory();
    const master = LegacyKey.generate();
    const index = parseIndexName('api-keys');
    const k1 = await getOrCreateUserKey(store, index, 'user-1', master);
    const k1again = await getOrCreateUserKey(store, index, 'user-1', master);
    const k2 = await getOrCreateUserKey(store, index, 'user-2', master);
    expect(k1.equals(k1again)).toBe(true);
    expect(k1.equals(k2)).toBe(false);
    const records = await store.listRecords(index, 'meta');
    for (const raw of records.values()) expect(Buffer.from(raw).toString()).toMatch(/^v2:/);
    await expect(getOrCreateUserKey(store, index, 'user-1', LegacyKey.generate())).rejects.toThrow(
      DecryptFailedError,
    );
    expect(legacyPoolKey(master, 'salt-a').equals(legacyPoolKey(master, 'salt-a'))).toBe(true);
    expect(legacyPoolKey(master, 'salt-a').equals(legacyPoolKey(master, 'salt-b'))).toBe(false);
    expect(apiKeyHash('abc')).toBe('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
  });
});

describe('migrateValue', () => {
  it('plaintext → wire, v2: → wire, wire → unchanged', async () => {
    const client = new KmsEnvelopeClient({
      store: StorageConfig.memory(),
      kms: {
        slots: { dev: { provider: 'local', masterKey: `literal:${randomBytes(32).toString('base64')}` } },
        secrets: { allowLiteral: true },
      },
    });
    const keyring = await IndexKeyring.createIndex(client, 'users', { slot: 'dev' });
    await keyring.createDek();
    const legacyKey = LegacyKey.generate();
    const fromPlain = await migrateValue('hello', { keyring, legacyKey });
    expect(fromPlain.kind).toBe('plaintext');
    expect(isEncryptedValue(fromPlain.value)).toBe(true);
    const fromV2 = await migrateValue(encryptLegacyV2('api-secret', legacyKey), { keyring, legacyKey });
    expect(fromV2.kind).toBe('v2');
    expect(await keyring.decryptValue(fromV2.value)).toBe('api-secret');
    expect(await migrateValue(fromV2.value, { keyring, legacyKey })).toEqual({
      kind: 'wire',
      value: fromV2.value,
    });
    await expect(migrateValue(encryptLegacyV2('x', legacyKey), { keyring })).rejects.toThrow(/legacy key/);
  });
});
