/**
 * The `v2:` tokens of the older API-key scheme (the Python module `api_key_encryption`):
 * `v2:` + URL-safe base64 with `=` padding (`base64.urlsafe_b64encode`) of
 * `nonce(12) ‖ ciphertext ‖ tag(16)`, AES-256-GCM without AAD, under per-user keys that are
 * wrapped under a master key from `API_KEY_MASTER_KEY`, or under the pool key derived from it.
 * Read here so that {@link migrateValue} can move them into the wire format; written padded, as
 * the original writes them, so that the original reads what this module writes.
 *
 * What is known of the original (its published module source, `api_key_encryption.py`):
 * `ENCRYPTED_PREFIX = "v2:"`, `POOL_KEY_SALT = b"stargazer:api_key_pool"`, per-user keys in a
 * SQLite table `encryption_keys` (`user_id TEXT PRIMARY KEY`, `encrypted_key BLOB`, a creation
 * timestamp) wrapped under the 32-byte master key with AES-256-GCM. What could not be read here
 * (only the module's opening was available): the function that derives the pool key from that
 * salt and its iteration count, and the byte layout of `encrypted_key`. {@link legacyPoolKey}
 * uses PBKDF2-HMAC-SHA256 with 100,000 iterations; check one pool-key token of yours before
 * relying on it.
 *
 * @module
 */
import { createHash, pbkdf2Sync } from 'node:crypto';
import { DecryptFailedError, InvalidArgumentError, MalformedTokenError } from '../errors.js';
import { SecretKey } from '../keys/secret-key.js';
import type { IndexName } from '../names.js';
import type { RecordStore } from '../storage/store.js';
import { algorithm } from '../wire/algorithms.js';
import { encodeBase64UrlPadded } from '../wire/base64.js';

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
  | {
      /** The key is configured. */
      readonly enabled: true;
      /** The legacy master key. */
      readonly key: LegacyKey;
    }
  | {
      /** The key is not configured or not usable. */
      readonly enabled: false;
      /** Why, in plain words (never the value). */
      readonly reason: string;
    };

let warnedDisabled = false;

/** Python's standard base64 alphabet (after `urlsafe_b64decode` maps `-`→`+`, `_`→`/`). */
const PY_B64_VALUE = (() => {
  const table = new Int8Array(128).fill(-1);
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
  for (let i = 0; i < 64; i++) table[alphabet.charCodeAt(i)] = i;
  table[45] = 62; // '-'
  table[95] = 63; // '_'
  return table;
})();

/**
 * Exactly what Python's `base64.urlsafe_b64decode(value)` returns for a `str`, or `undefined`
 * where it raises: a non-ASCII character (`ValueError`), or data that ends mid-quantum without
 * the padding that completes it (`binascii.Error`). Like CPython's non-strict `a2b_base64`, it
 * reads both alphabets (`+`/`/` and `-`/`_`), skips every other character, ignores a `=` that
 * cannot end a quantum yet, and stops at the first `=` that completes one (the rest is ignored).
 * Writes into a buffer of its own; the caller wipes it.
 */
export function pythonUrlsafeB64decode(value: string): Buffer | undefined {
  const out = Buffer.alloc(Math.floor((value.length * 3) / 4) + 3);
  let n = 0;
  let quad = 0;
  let pads = 0;
  let left = 0;
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (c > 0x7f) {
      out.fill(0);
      return undefined;
    }
    if (c === 61) {
      pads++;
      if (quad >= 2 && quad + pads >= 4) break; // a complete quantum: the rest is not read
      continue;
    }
    const v = PY_B64_VALUE[c]!;
    if (v < 0) continue;
    pads = 0;
    if (quad === 0) left = v;
    else if (quad === 1) {
      out[n++] = (left << 2) | (v >> 4);
      left = v & 0x0f;
    } else if (quad === 2) {
      out[n++] = (left << 4) | (v >> 2);
      left = v & 0x03;
    } else out[n++] = (left << 6) | v;
    quad = (quad + 1) & 3;
  }
  if (quad !== 0 && !(quad >= 2 && quad + pads >= 4)) {
    out.fill(0);
    return undefined;
  }
  const bytes = Buffer.alloc(n);
  out.copy(bytes, 0, 0, n);
  out.fill(0);
  return bytes;
}

/**
 * Reads `API_KEY_MASTER_KEY` as the original scheme does: `base64.urlsafe_b64decode` of the value,
 * which must give exactly 32 bytes. So, as there, a value in the standard alphabet (`+`, `/`) is
 * read, characters outside both alphabets are skipped, and an unpadded value whose length is not
 * a multiple of 4 (a 43-character encoding of 32 bytes) is refused (Python: "Incorrect padding").
 * Absent, empty or malformed → the disabled state, with a one-time warning (which never shows the
 * value).
 */
export function legacyMasterKeyFromEnv(env: NodeJS.ProcessEnv = process.env): LegacyMasterKeyState {
  const value = env.API_KEY_MASTER_KEY;
  let reason: string | undefined;
  let key: LegacyKey | undefined;
  if (value === undefined || value === '') {
    reason = 'API_KEY_MASTER_KEY is not set';
  } else {
    const bytes = pythonUrlsafeB64decode(value);
    if (bytes === undefined) reason = 'API_KEY_MASTER_KEY is not URL-safe base64 (with its padding)';
    else if (bytes.length !== 32) reason = `API_KEY_MASTER_KEY decodes to ${bytes.length} bytes, not 32`;
    else key = LegacyKey.fromBytes(bytes);
    bytes?.fill(0);
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

/**
 * Encrypts into a `v2:` token as the original scheme writes them: URL-safe base64 *with* `=`
 * padding (Python's `urlsafe_b64decode` refuses the unpadded form). Earlier releases of this
 * library wrote unpadded tokens; {@link decryptLegacyV2} still reads those.
 */
export function encryptLegacyV2(plaintext: string, key: LegacyKey): string {
  const blob = algorithm('A256GCM').encrypt(key, Buffer.from(plaintext, 'utf8'));
  return `v2:${encodeBase64UrlPadded(blob)}`;
}

/** The original scheme's fixed pool-key salt, `POOL_KEY_SALT` of `api_key_encryption.py`. */
export const LEGACY_POOL_KEY_SALT = 'stargazer:api_key_pool';

/**
 * The salt that {@link legacyPoolKey} used by default before it defaulted to the original's
 * ({@link LEGACY_POOL_KEY_SALT}); pass it to read pool-key tokens that those releases wrote.
 */
export const KMS_ENVELOPE_OLD_POOL_KEY_SALT = 'kms-envelope-v2-pool';

/**
 * The pool key: PBKDF2-HMAC-SHA256 of the master key with `salt`, 100,000 iterations, 32 bytes.
 * The salt defaults to the original scheme's fixed `POOL_KEY_SALT`, `stargazer:api_key_pool`
 * ({@link LEGACY_POOL_KEY_SALT}). The KDF and count are this library's: the original's could
 * not be read (see the module notes), so confirm with one of your pool-key tokens.
 */
export function legacyPoolKey(
  masterKey: LegacyKey,
  salt: string | Uint8Array = LEGACY_POOL_KEY_SALT,
): LegacyKey {
  return LegacyKey.fromBytes(pbkdf2Sync(masterKey.expose(), salt, 100_000, 32, 'sha256'));
}

/** `apiKeyHash`: hex SHA-256 of an API key, for lookups without storing the key. */
export function apiKeyHash(apiKey: string): string {
  return createHash('sha256').update(apiKey, 'utf8').digest('hex');
}

/**
 * A user's key, created on first use, kept in this library's store (not the original's SQLite
 * file). The format, per user:
 *
 * - record kind `meta`, id `v2-user.` + the first 32 hex digits of SHA-256(UTF-8 of `userId`)
 *   (so user ids never become store keys), of the given `index`;
 * - value: the UTF-8 text of a `v2:` token (as {@link encryptLegacyV2} writes it, under
 *   `masterKey`, no AAD) whose plaintext is the 32-byte user key as URL-safe base64 text
 *   (unpadded, 43 characters). Records written before tokens were padded are read too.
 *
 * Created with a strict insert, so racing creators agree on one key. The original scheme keeps
 * the same keys in its own SQLite table (`encryption_keys`: `user_id`, `encrypted_key` BLOB,
 * created at); importing that table needs rows the Python module wrote, which this library has
 * no sample of, so there is no importer yet.
 * @throws InvalidArgumentError for an empty user id; DecryptFailedError / MalformedTokenError for
 * a record that does not open under `masterKey`.
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
