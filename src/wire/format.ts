/**
 * The DEK wire format `$<alg>$<keyid>$<params>$<blob>`, byte-compatible with gemstone_utils v0.5
 * (`format_encrypted_field` / `parse_encrypted_field`):
 *
 * - split on `$`, the first part empty;
 * - `alg`: an algorithm id (`A256GCM`);
 * - `keyid`: canonical lower-case UUID text: a DEK id in application ciphertext, a KEK slot id
 *   in wrapped DEK records and KEK-check records (the format functions are generic over which);
 * - `params`: the parameters as canonical JSON, URL-safe base64 with padding (`{}` → `e30=`);
 * - `blob`: URL-safe base64 with padding of `nonce(12) ‖ ciphertext ‖ tag(16)`, at least 28 bytes.
 *
 * The legacy four-part form `$alg$keyid$blob` (no params) is read, with a one-time
 * `DeprecationWarning` (code `KMS_ENVELOPE_LEGACY_WIRE`), and never written.
 *
 * Reading is strict: only the one spelling gemstone_utils writes for each segment is accepted
 * (key ids excepted: the UUID spellings of `key-id.ts` are read and written canonical).
 *
 * @module
 */
import { InvalidArgumentError, MalformedTokenError } from '../errors.js';
import { algorithm, isRegisteredAlgorithm } from './algorithms.js';
import { decodeBase64UrlPadded, encodeBase64UrlPadded, isCanonicalBase64UrlPadded } from './base64.js';
import {
  canonicalKeyId,
  type DekId,
  isIntegerKeyIdText,
  isKeyIdText,
  type KeyIdParser,
  parseDekId,
  type WireKeyId,
} from './key-id.js';
import { decodeParams, EMPTY_PARAMS, EMPTY_PARAMS_SEGMENT, encodeParams, type WireParams } from './params.js';

/** Shortest blob: 12-byte nonce and 16-byte tag around an empty ciphertext. */
export const MIN_BLOB_LENGTH = 28;

/** Longest token accepted, in characters (a guard against absurd input). */
export const MAX_TOKEN_LENGTH = 16 * 1024 * 1024;

/** What an algorithm id in segment 1 may look like. */
const ALG = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$/;

const DOLLAR = 36;

/** The parts of a token, as {@link parseEncryptedField} returns them. */
export interface ParsedField<K extends WireKeyId = DekId> {
  /** Algorithm id, segment 1 (well formed; whether it is registered is checked on use). */
  readonly alg: string;
  /** Segment 2, parsed into canonical form. */
  readonly keyId: K;
  /** The decoded params (the shared frozen {@link EMPTY_PARAMS} for `e30=` and legacy tokens). */
  readonly params: WireParams;
  /** `nonce ‖ ciphertext ‖ tag`, at least {@link MIN_BLOB_LENGTH} bytes. */
  readonly blob: Buffer;
  /** True for the deprecated four-part form (no params segment). */
  readonly legacy: boolean;
}

/** Former name of {@link ParsedField}. */
export type EncryptedField<K extends WireKeyId = DekId> = ParsedField<K>;

/** The parts {@link formatEncryptedField} writes. */
export interface FieldParts<K extends WireKeyId = WireKeyId> {
  /** Algorithm id. */
  readonly alg: string;
  /** Segment 2: a DEK id or a KEK slot id. */
  readonly keyId: K;
  /** Parameters; `{}` (written `e30=`) when absent. */
  readonly params?: WireParams;
  /** `nonce ‖ ciphertext ‖ tag`. */
  readonly blob: Uint8Array;
}

let warnedLegacy = false;

function warnLegacyOnce(): void {
  if (warnedLegacy) return;
  warnedLegacy = true;
  process.emitWarning(
    'kms-envelope: read a legacy four-part wire token ($alg$keyid$blob, no params segment); re-encrypt it to write the $alg$keyid$params$blob form',
    { type: 'DeprecationWarning', code: 'KMS_ENVELOPE_LEGACY_WIRE' },
  );
}

/**
 * Splits and decodes a token, checking its structure: segment count, algorithm id shape, key id,
 * base64 of params and blob, canonical params JSON, blob length. Whether the algorithm is
 * registered, the params are ones it takes, and the blob decrypts are checked by the caller.
 *
 * `parseKeyId` says what segment 2 is: {@link parseDekId} (the default) for application values,
 * `parseKekSlotId` for wrapped DEK records and KEK-check records.
 *
 * Reading a legacy four-part token emits a `DeprecationWarning` once per process.
 * @throws MalformedTokenError for anything but a well-formed token; InvalidKeyIdError when
 * segment 2 is not a UUID (integer ids: with a hint to migrate them).
 */
export function parseEncryptedField(token: string): ParsedField<DekId>;
export function parseEncryptedField<K extends WireKeyId>(
  token: string,
  parseKeyId: KeyIdParser<K>,
): ParsedField<K>;
export function parseEncryptedField(
  token: string,
  parseKeyId: KeyIdParser<WireKeyId> = parseDekId,
): ParsedField<WireKeyId> {
  if (typeof token !== 'string')
    throw new MalformedTokenError(`a token must be a string, got ${typeof token}`);
  if (token.length > MAX_TOKEN_LENGTH) throw new MalformedTokenError('token is too long');
  // indexOf rather than split: no array on the hot path of every decrypt. `$` at 0, a, b and,
  // unless legacy, c.
  const a = token.charCodeAt(0) === DOLLAR ? token.indexOf('$', 1) : -1;
  const b = a < 0 ? -1 : token.indexOf('$', a + 1);
  if (b < 0) throw new MalformedTokenError('a token must look like $alg$keyid$params$blob');
  const c = token.indexOf('$', b + 1);
  if (c >= 0 && token.indexOf('$', c + 1) >= 0) {
    throw new MalformedTokenError('a token must look like $alg$keyid$params$blob (too many "$")');
  }
  const alg = token.slice(1, a);
  // Registered ids are well formed; the shape is only checked for the others (a map lookup is
  // cheaper than the regex). Whether an unregistered id is supported is the caller's question.
  if (!isRegisteredAlgorithm(alg) && !ALG.test(alg)) {
    throw new MalformedTokenError('token has a malformed algorithm id');
  }
  const keyId = parseKeyId(token.slice(a + 1, b));
  const legacy = c < 0;
  const params = legacy ? EMPTY_PARAMS : decodeParams(token.slice(b + 1, c));
  const blob = decodeBase64UrlPadded(token.slice((legacy ? b : c) + 1), 'blob');
  if (blob.length < MIN_BLOB_LENGTH) {
    throw new MalformedTokenError(
      `blob is ${blob.length} bytes, shorter than nonce and tag (${MIN_BLOB_LENGTH})`,
    );
  }
  if (legacy) warnLegacyOnce();
  return { alg, keyId, params, blob, legacy };
}

/**
 * Writes a token from its parts: always the five-part form, the key id canonical, the params
 * canonical JSON (`e30=` for none), the blob URL-safe base64 with padding (gemstone's
 * `format_encrypted_field`). Generic over segment 2: a {@link DekId} or a `KekSlotId`.
 * @throws UnsupportedAlgorithmError for an unregistered algorithm; InvalidKeyIdError for a key
 * id that is not a UUID; InvalidArgumentError for params that are not a plain object or a blob
 * shorter than {@link MIN_BLOB_LENGTH} bytes (it could not be read back).
 */
export function formatEncryptedField<K extends WireKeyId>(parts: FieldParts<K>): string {
  algorithm(parts.alg);
  const { params, blob } = parts;
  if (params !== undefined && (typeof params !== 'object' || params === null || Array.isArray(params))) {
    throw new InvalidArgumentError('params must be a plain object');
  }
  if (!(blob instanceof Uint8Array) || blob.length < MIN_BLOB_LENGTH) {
    throw new InvalidArgumentError(`a blob must be at least ${MIN_BLOB_LENGTH} bytes (nonce and tag)`);
  }
  return joinToken(
    parts.alg,
    canonicalKeyId(parts.keyId),
    params === undefined ? EMPTY_PARAMS_SEGMENT : encodeParams(params),
    blob,
  );
}

/** `$alg$keyId$paramsSegment$blob` from parts already checked (the encrypt hot path). */
export function joinToken(alg: string, keyId: string, paramsSegment: string, blob: Uint8Array): string {
  return `$${alg}$${keyId}$${paramsSegment}$${encodeBase64UrlPadded(blob)}`;
}

/**
 * A cheap structural test (no decryption, no key): does `value` look like a wire token? True
 * for five- or four-part tokens whose algorithm is registered, whose segment 2 is a UUID in an
 * accepted spelling or an integer (a gemstone_utils token from before 0.5: ciphertext that still
 * needs its key id migrated, not plaintext), and whose other segments are canonical URL-safe
 * base64 with padding.
 *
 * Security: true does not mean the value decrypts or is authentic. A false positive would leave
 * a plaintext unencrypted by callers that encrypt "what is not encrypted yet", hence the checks
 * beyond the `$` shape (crypt(3) and bcrypt hashes such as `$2b$12$…` are not tokens).
 */
export function isEncryptedValue(value: unknown): value is string {
  if (typeof value !== 'string' || value.charCodeAt(0) !== DOLLAR || value.length > MAX_TOKEN_LENGTH) {
    return false;
  }
  const parts = value.split('$');
  if (parts.length !== 5 && parts.length !== 4) return false;
  if (!isRegisteredAlgorithm(parts[1]!)) return false;
  const keyId = parts[2]!;
  if (!isKeyIdText(keyId) && !isIntegerKeyIdText(keyId)) return false;
  for (let i = 3; i < parts.length; i++) if (!isCanonicalBase64UrlPadded(parts[i]!)) return false;
  return true;
}

/** Test seam: lets the once-per-process legacy warning be observed again. */
export function resetLegacyWarningForTesting(): void {
  warnedLegacy = false;
}
