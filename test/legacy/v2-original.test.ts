import { pbkdf2Sync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { describe, expect, it, vi } from 'vitest';
import {
  decryptLegacyV2,
  encryptLegacyV2,
  getOrCreateUserKey,
  KMS_ENVELOPE_OLD_POOL_KEY_SALT,
  LEGACY_POOL_KEY_SALT,
  LegacyKey,
  legacyMasterKeyFromEnv,
  legacyPoolKey,
  pythonUrlsafeB64decode,
} from '../../src/legacy/v2.js';
import { parseIndexName } from '../../src/names.js';
import { StorageConfig } from '../../src/storage/config.js';
import { isCanonicalBase64UrlPadded } from '../../src/wire/base64.js';

interface DecodeCase {
  value: string;
  ok: boolean;
  hex?: string;
  comment: string;
}
const decodeVectors = JSON.parse(
  readFileSync(new URL('../vectors/python-urlsafe-b64decode.json', import.meta.url), 'utf8'),
) as { source: string; cases: DecodeCase[] };
const pythonTokens = JSON.parse(
  readFileSync(new URL('../vectors/legacy-v2-python.json', import.meta.url), 'utf8'),
) as { key: string; tokens: { token: string; plaintext: string }[] };

describe('v2: as the original api_key_encryption writes and reads it', () => {
  it('encryptLegacyV2 writes padded URL-safe base64 (urlsafe_b64encode), every length', () => {
    const key = LegacyKey.generate();
    for (let n = 0; n < 40; n++) {
      const token = encryptLegacyV2('x'.repeat(n), key);
      const body = token.slice(3);
      expect(isCanonicalBase64UrlPadded(body), `plaintext of ${n} bytes`).toBe(true);
      // What Python's urlsafe_b64decode makes of it (checked against Python below) is the blob.
      expect(pythonUrlsafeB64decode(body)?.toString('base64url')).toBe(body.replace(/=+$/, ''));
      expect(decryptLegacyV2(token, key)).toBe('x'.repeat(n));
    }
  });

  it('tokens written by Python (AESGCM + urlsafe_b64encode) decrypt', () => {
    const bytes = Buffer.from(pythonTokens.key, 'base64url');
    const key = LegacyKey.fromBytes(bytes);
    bytes.fill(0);
    for (const row of pythonTokens.tokens) expect(decryptLegacyV2(row.token, key)).toBe(row.plaintext);
  });

  it("pythonUrlsafeB64decode agrees with Python's base64.urlsafe_b64decode on every vector", () => {
    expect(decodeVectors.cases.length).toBeGreaterThan(40);
    for (const c of decodeVectors.cases) {
      const out = pythonUrlsafeB64decode(c.value);
      if (c.ok) expect(out?.toString('hex'), c.comment).toBe(c.hex);
      else expect(out, c.comment).toBeUndefined();
    }
  });

  it('API_KEY_MASTER_KEY: + and / are read, an unpadded 43-character value is disabled, exactly 32 bytes', () => {
    const spy = vi.spyOn(process, 'emitWarning').mockImplementation(() => {});
    try {
      const raw = Buffer.from(Array.from({ length: 32 }, (_, i) => (i * 37 + 251) & 0xff));
      const standard = raw.toString('base64'); // has + and /
      expect(standard).toMatch(/[+/]/);
      const state = legacyMasterKeyFromEnv({ API_KEY_MASTER_KEY: standard });
      expect(state.enabled).toBe(true);
      if (state.enabled) expect(state.key.expose().equals(raw)).toBe(true);

      const padded = `${raw.toString('base64url')}=`;
      expect(legacyMasterKeyFromEnv({ API_KEY_MASTER_KEY: padded }).enabled).toBe(true);
      const unpadded = raw.toString('base64url');
      expect(unpadded).toHaveLength(43);
      expect(legacyMasterKeyFromEnv({ API_KEY_MASTER_KEY: unpadded })).toMatchObject({ enabled: false });

      expect(
        legacyMasterKeyFromEnv({ API_KEY_MASTER_KEY: Buffer.alloc(31).toString('base64') }),
      ).toMatchObject({ enabled: false, reason: expect.stringMatching(/31 bytes/) });
      expect(
        legacyMasterKeyFromEnv({ API_KEY_MASTER_KEY: Buffer.alloc(33).toString('base64') }),
      ).toMatchObject({
        enabled: false,
      });
      // The Python vectors of 32 bytes: enabled here exactly when enabled there.
      for (const c of decodeVectors.cases) {
        if (c.value === '') continue;
        const expected = c.ok && c.hex!.length === 64;
        expect(legacyMasterKeyFromEnv({ API_KEY_MASTER_KEY: c.value }).enabled, c.comment).toBe(expected);
      }
    } finally {
      spy.mockRestore();
    }
  });

  it('legacyPoolKey without a salt uses the original fixed salt stargazer:api_key_pool', () => {
    const master = LegacyKey.fromBytes(Buffer.alloc(32, 7));
    expect(LEGACY_POOL_KEY_SALT).toBe('stargazer:api_key_pool');
    const expected = pbkdf2Sync(Buffer.alloc(32, 7), 'stargazer:api_key_pool', 100_000, 32, 'sha256');
    expect(legacyPoolKey(master).expose().equals(expected)).toBe(true);
    expect(legacyPoolKey(master).equals(legacyPoolKey(master, LEGACY_POOL_KEY_SALT))).toBe(true);
    // The salt earlier releases defaulted to stays available for their pool-key tokens.
    expect(legacyPoolKey(master).equals(legacyPoolKey(master, KMS_ENVELOPE_OLD_POOL_KEY_SALT))).toBe(false);
  });

  it('getOrCreateUserKey stores the documented format: meta/v2-user.<sha256 prefix>, a padded v2: token of the key text', async () => {
    const store = StorageConfig.memory();
    const index = parseIndexName('api-keys');
    const master = LegacyKey.generate();
    const key = await getOrCreateUserKey(store, index, 'user-1', master);
    const records = await store.listRecords(index, 'meta');
    // sha256("user-1") = c6c289e49e9c05b2145860387b73bcb18df43fb09a1e4a4a9713c76c88bb541b
    expect([...records.keys()]).toEqual(['v2-user.c6c289e49e9c05b2145860387b73bcb1']);
    const token = Buffer.from(records.get('v2-user.c6c289e49e9c05b2145860387b73bcb1')!).toString('utf8');
    expect(isCanonicalBase64UrlPadded(token.slice(3))).toBe(true);
    expect(decryptLegacyV2(token, master)).toBe(key.expose().toString('base64url'));
  });
});
