/**
 * The DEK wire format `$<alg>$<keyid>$<params>$<blob>`, byte-compatible with gemstone_utils v0.5.
 *
 * - `alg`: a registered algorithm id (`A256GCM`).
 * - `keyid`: canonical lower-case UUID text (a DEK id in application ciphertext, a KEK slot id in
 *   wrapped DEK records and KEK-check records).
 * - `params`: the algorithm parameters as sorted, compact JSON, URL-safe base64 with padding
 *   (`{}` → `e30=`).
 * - `blob`: URL-safe base64 with padding of `nonce(12) ‖ ciphertext ‖ tag(16)`.
 *
 * The legacy four-part form `$alg$keyid$blob` (no params) is read, with a one-time
 * `DeprecationWarning`.
 *
 * @module
 */
import { MalformedTokenError } from '../errors.js';
import { decodeBase64UrlPadded, encodeBase64UrlPadded } from './base64.js';
import { decodeParams, EMPTY_PARAMS_SEGMENT, encodeParams, type WireParams } from './params.js';

/** Shortest blob: 12-byte nonce and 16-byte tag around an empty ciphertext. */
export const MIN_BLOB_LENGTH = 28;

/** Longest token accepted, in characters (a guard against absurd input). */
export const MAX_TOKEN_LENGTH = 16 * 1024 * 1024;

const ALG = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$/;

/** The parts of a token, as {@link parseEncryptedField} returns them. */
export interface EncryptedField {
  /** Algorithm id (not yet checked against the registry). */
  readonly alg: string;
  /** Segment 2 as written (validate it with parseDekId / parseKekSlotId). */
  readonly keyId: string;
  /** The decoded parameters. */
  readonly params: WireParams;
  /** nonce ‖ ciphertext ‖ tag. */
  readonly blob: Buffer;
  /** True for the deprecated four-part form. */
  readonly legacy: boolean;
}

let warnedLegacy = false;

/**
 * Splits and decodes a token. Checks structure only: the algorithm, key id and decryption are
 * checked by the caller.
 * @throws MalformedTokenError
 */
export function parseEncryptedField(token: string): EncryptedField {
  if (typeof token !== 'string') throw new MalformedTokenError('token must be a string');
  if (token.length > MAX_TOKEN_LENGTH) throw new MalformedTokenError('token is too long');
  const parts = token.split('$');
  if (parts[0] !== '' || (parts.length !== 5 && parts.length !== 4)) {
    throw new MalformedTokenError('token must look like $alg$keyid$params$blob');
  }
  const legacy = parts.length === 4;
  const alg = parts[1]!;
  const keyId = parts[2]!;
  if (!ALG.test(alg)) throw new MalformedTokenError('token has an invalid algorithm id');
  if (keyId === '') throw new MalformedTokenError('token has an empty key id');
  const params = legacy ? {} : decodeParams(parts[3]!);
  const blob = decodeBase64UrlPadded(parts[legacy ? 3 : 4]!, 'blob');
  if (blob.length < MIN_BLOB_LENGTH)
    throw new MalformedTokenError(`blob is shorter than ${MIN_BLOB_LENGTH} bytes`);
  if (legacy && !warnedLegacy) {
    warnedLegacy = true;
    process.emitWarning(
      'kms-envelope: read a legacy four-part token ($alg$keyid$blob); re-encrypt it to write the $alg$keyid$params$blob form',
      { type: 'DeprecationWarning', code: 'KMS_ENVELOPE_LEGACY_WIRE' },
    );
  }
  return { alg, keyId, params, blob, legacy };
}

/** Writes a token from its parts (always the four-segment form, params canonical). */
export function formatEncryptedField(field: {
  readonly alg: string;
  readonly keyId: string;
  readonly params?: WireParams;
  readonly blob: Uint8Array;
}): string {
  const params = field.params === undefined ? EMPTY_PARAMS_SEGMENT : encodeParams(field.params);
  return `$${field.alg}$${field.keyId}$${params}$${encodeBase64UrlPadded(field.blob)}`;
}

/**
 * A cheap structural test: does `value` look like a wire token (`$alg$keyid$…`)? Does not
 * decode or decrypt.
 */
export function isEncryptedValue(value: unknown): value is string {
  if (typeof value !== 'string' || value.charCodeAt(0) !== 36 /* $ */) return false;
  const parts = value.split('$', 6);
  return (parts.length === 5 || parts.length === 4) && ALG.test(parts[1]!) && parts[2] !== '';
}

/** Test seam: lets the legacy warning be observed again. */
export function resetLegacyWarningForTesting(): void {
  warnedLegacy = false;
}
