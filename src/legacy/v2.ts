/**
 * The `v2:` tokens of the older API-key scheme: `v2:` + URL-safe base64 (padded or not) of
 * `nonce(12) ‖ ciphertext ‖ tag(16)`, AES-256-GCM without AAD, under per-user keys that are
 * wrapped under a master key from `API_KEY_MASTER_KEY`, or under the pool key derived from it.
 * Read here so that {@link migrateValue} can move them into the wire format.
 *
 * @module
 */
import { createHash, pbkdf2Sync } from 'node:crypto';
import { DecryptFailedError, InvalidArgumentError, MalformedTokenError } from '../errors.js';
import { SecretKey } from '../keys/secret-key.js';
import type { IndexName } from '../names.js';
import type { RecordStore } from '../storage/store.js';
import { algorithm } from '../wire/algorithms.js';

/** The 32-byte master key of the `v2:` scheme, and the per-user and pool keys made from it. */
export class LegacyKey extends SecretKey {
  declare private readonly brand: 'LegacyKey';
  protected get kind(): string {
    return 'LegacyKey';
  }
  /** Copies 32 bytes. @throws InvalidArgumentError */
  static fromBytes(bytes: Uint8Array): LegacyKey {
    return new LegacyKey(bytes);
  }
  /** A new random key (a new user's key). */
  static generate(): LegacyKey {
    return SecretKey.fresh(32, (bytes) => new LegacyKey(bytes));
  }
  private constructor(bytes: Uint8Array) {
    super(bytes, 32, 'LegacyKey');
  }
}

/**
 * The state of `API_KEY_MASTER_KEY`: either a key, or encryption explicitly disabled (absent or
 * malformed variable) with the reason. Callers must handle the disabled state; nothing crashes.
 */
export type LegacyMasterKeyState =
  | { readonly enabled: true; readonly key: LegacyKey }
  | { readonly enabled: false; readonly reason: string };

let warnedDisabled = false;

/**
 * Reads `API_KEY_MASTER_KEY` (URL-safe base64 of exactly 32 bytes). Absent or malformed → the
 * disabled state, with a one-time warning (which never shows the value).
 */
export function legacyMasterKeyFromEnv(env: NodeJS.ProcessEnv = process.env): LegacyMasterKeyState {
  const value = env.API_KEY_MASTER_KEY;
  let reason: string | undefined;
  let key: LegacyKey | undefined;
  if (value === undefined || value === '') {
    reason = 'API_KEY_MASTER_KEY is not set';
  } else if (!/^[A-Za-z0-9_-]+={0,2}$/.test(value)) {
    reason = 'API_KEY_MASTER_KEY is not URL-safe base64';
  } else {
    const bytes = Buffer.from(value, 'base64url');
    if (bytes.length !== 32) reason = `API_KEY_MASTER_KEY decodes to ${bytes.length} bytes, not 32`;
    else key = LegacyKey.fromBytes(bytes);
    bytes.fill(0);
  }
  if (key !== undefined) return { enabled: true, key };
  if (!warnedDisabled) {
    warnedDisabled = true;
    process.emitWarning(`kms-envelope: legacy v2 encryption disabled: ${reason}`, {
      code: 'KMS_ENVELOPE_V2_DISABLED',
    });
  }
  return { enabled: false, reason: reason! };
}

/** True for a `v2:` token (a cheap prefix test). */
export function isLegacyV2(value: unknown): value is string {
  return typeof value === 'string' && value.startsWith('v2:');
}

const B64URL = /^[A-Za-z0-9_-]*={0,2}$/;

/**
 * Decrypts a `v2:` token (padded or unpadded base64url) with `key`.
 * @throws MalformedTokenError, DecryptFailedError
 */
export function decryptLegacyV2(token: string, key: LegacyKey): string {
  if (!isLegacyV2(token)) throw new MalformedTokenError('not a v2: token');
  const body = token.slice(3);
  if (!B64URL.test(body) || body.replace(/=+$/, '').length % 4 === 1) {
    throw new MalformedTokenError('v2: token is not URL-safe base64');
  }
  const blob = Buffer.from(body, 'base64url');
  if (blob.length < 28) throw new MalformedTokenError('v2: token is too short');
  const plaintext = algorithm('A256GCM').decrypt(key, blob);
  try {
    return new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(plaintext);
  } catch {
    throw new MalformedTokenError('v2: value is not UTF-8 text');
  } finally {
    plaintext.fill(0);
  }
}

/** Encrypts into a `v2:` token (unpadded), as the older scheme wrote them (tests, fixtures). */
export function encryptLegacyV2(plaintext: string, key: LegacyKey): string {
  const blob = algorithm('A256GCM').encrypt(key, Buffer.from(plaintext, 'utf8'));
  return `v2:${blob.toString('base64url')}`;
}

/** The pool key: PBKDF2-HMAC-SHA256 of the master key with `salt`, 100,000 iterations, 32 bytes. */
export function legacyPoolKey(
  masterKey: LegacyKey,
  salt: string | Uint8Array = 'kms-envelope-v2-pool',
): LegacyKey {
  return LegacyKey.fromBytes(pbkdf2Sync(masterKey.expose(), salt, 100_000, 32, 'sha256'));
}

/** `apiKeyHash`: hex SHA-256 of an API key, for lookups without storing the key. */
export function apiKeyHash(apiKey: string): string {
  return createHash('sha256').update(apiKey, 'utf8').digest('hex');
}

/**
 * A user's key, created on first use: stored as a record `meta/v2-user.<sha256(user)>` of
 * `index` in the project's store, wrapped under the master key (`v2:` form).
 */
export async function getOrCreateUserKey(
  store: RecordStore,
  index: IndexName,
  userId: string,
  masterKey: LegacyKey,
): Promise<LegacyKey> {
  if (typeof userId !== 'string' || userId === '')
    throw new InvalidArgumentError('user id must be a non-empty string');
  const id = `v2-user.${apiKeyHash(userId).slice(0, 32)}`;
  const unwrap = (raw: Uint8Array) => {
    const text = Buffer.from(raw).toString('utf8');
    const bytes = Buffer.from(decryptLegacyV2(text, masterKey), 'base64url');
    try {
      return LegacyKey.fromBytes(bytes);
    } finally {
      bytes.fill(0);
    }
  };
  const existing = await store.getRecord(index, 'meta', id);
  if (existing !== undefined) return unwrap(existing);
  const key = LegacyKey.generate();
  const wrapped = encryptLegacyV2(key.expose().toString('base64url'), masterKey);
  if (await store.createRecord(index, 'meta', id, Buffer.from(wrapped, 'utf8'))) return key;
  key.zero();
  const raced = await store.getRecord(index, 'meta', id); // another process created it first
  if (raced === undefined) throw new DecryptFailedError('user key vanished while being created');
  return unwrap(raced);
}
