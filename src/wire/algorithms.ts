/**
 * Algorithm dispatch by id, as in gemstone_utils (`encrypt_alg`, `decrypt_alg`,
 * `generate_key_by_alg`, `recommended_data_alg`). Each algorithm encrypts bytes under a key of its
 * length into the blob `nonce ‖ ciphertext ‖ tag`. Registered: `A256GCM` (AES-256-GCM, 32-byte
 * key, random 96-bit nonce, 128-bit tag, no algorithm parameters).
 *
 * "Algorithm parameters" here are gemstone's: what the algorithm itself needs in the params
 * segment (`A256GCM` needs none). The context-binding marker `aad` in the params segment belongs
 * to the field layer (`encryptString` in `fields.ts`), not to the algorithm.
 *
 * @module
 */
import { openAes256Gcm, sealAes256Gcm, sealAes256GcmWithNonce } from '../crypto/aes-gcm.js';
import { DecryptFailedError, InvalidArgumentError, UnsupportedAlgorithmError } from '../errors.js';
import { Dek } from '../keys/dek.js';
import type { SecretKey } from '../keys/secret-key.js';
import { countInvocation } from './nonce-limit.js';
import { EMPTY_PARAMS, type WireParams } from './params.js';

export { GCM_RANDOM_NONCE_LIMIT, invocationCount, setInvocationCountForTesting } from './nonce-limit.js';

/** One registered algorithm. */
export interface WireAlgorithm {
  /** Its id: segment 1 of a token. */
  readonly id: string;
  /** Key length in bytes. */
  readonly keyLength: number;
  /**
   * Why `params` are not acceptable to this algorithm, or `undefined` when they are. Callers
   * turn the reason into the error of their layer.
   */
  paramsProblem(params: WireParams): string | undefined;
  /**
   * Encrypts `plaintext`; returns `nonce ‖ ciphertext ‖ tag`.
   * @throws InvalidArgumentError for a key of the wrong length or a zeroed key.
   * @throws NonceLimitError when the key reached its invocation limit.
   */
  encrypt(key: SecretKey, plaintext: Uint8Array, aad?: Uint8Array): Buffer;
  /**
   * Optional: encrypts the UTF-8 of `text`, as `encrypt(key, utf8(text), aad)` would, for
   * algorithms that can encode inside the cipher (cheaper than encoding first).
   * @throws as {@link WireAlgorithm.encrypt}.
   */
  encryptText?(key: SecretKey, text: string, aad?: Uint8Array): Buffer;
  /**
   * Decrypts `nonce ‖ ciphertext ‖ tag`.
   * @throws DecryptFailedError when the blob does not authenticate (wrong key, wrong AAD,
   * tampered) or is too short.
   * @throws InvalidArgumentError for a key of the wrong length or a zeroed key.
   */
  decrypt(key: SecretKey, blob: Uint8Array, aad?: Uint8Array): Buffer;
}

function requireKeyLength(key: SecretKey, alg: WireAlgorithm): Buffer {
  const bytes = key.expose();
  if (bytes.length !== alg.keyLength) {
    throw new InvalidArgumentError(`${alg.id} needs a ${alg.keyLength}-byte key, got ${bytes.length} bytes`);
  }
  return bytes;
}

const A256GCM: WireAlgorithm = {
  id: 'A256GCM',
  keyLength: 32,
  paramsProblem(params) {
    if (params === EMPTY_PARAMS) return undefined;
    const names = Object.keys(params);
    return names.length === 0 ? undefined : `A256GCM takes no algorithm parameters (got ${names.length})`;
  },
  encrypt(key, plaintext, aad) {
    const bytes = requireKeyLength(key, A256GCM);
    countInvocation(key);
    return sealAes256Gcm(bytes, plaintext, aad);
  },
  encryptText(key, text, aad) {
    const bytes = requireKeyLength(key, A256GCM);
    countInvocation(key);
    return sealAes256Gcm(bytes, text, aad);
  },
  decrypt(key, blob, aad) {
    const plaintext = openAes256Gcm(requireKeyLength(key, A256GCM), blob, aad);
    if (plaintext === undefined) throw new DecryptFailedError('the value does not decrypt under this key');
    return plaintext;
  },
};

const registry = new Map<string, WireAlgorithm>([[A256GCM.id, A256GCM]]);

/** True when `id` is a registered algorithm id. Never throws. */
export function isRegisteredAlgorithm(id: string): boolean {
  return registry.has(id);
}

/**
 * The algorithm registered as `id`.
 * @throws UnsupportedAlgorithmError when no algorithm is registered under `id`.
 */
export function algorithm(id: string): WireAlgorithm {
  const found = registry.get(id);
  if (found === undefined) {
    throw new UnsupportedAlgorithmError(
      `unsupported algorithm ${JSON.stringify(String(id).slice(0, 32))} (supported: ${[...registry.keys()].join(', ')})`,
    );
  }
  return found;
}

/**
 * Registers another algorithm (plugins). Its id must be 1–32 characters of `A–Z a–z 0–9 _ . -`,
 * starting with a letter or digit, so that it fits segment 1 of a token.
 *
 * Security: a registered algorithm is trusted with keys and plaintext; it must count its own
 * nonce budget and authenticate its ciphertext.
 * @throws UnsupportedAlgorithmError if the id is taken; InvalidArgumentError if it is not a
 * valid id.
 */
export function registerAlgorithm(alg: WireAlgorithm): void {
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$/.test(alg.id)) {
    throw new InvalidArgumentError(`algorithm id ${JSON.stringify(alg.id)} cannot appear in a token`);
  }
  if (registry.has(alg.id))
    throw new UnsupportedAlgorithmError(`algorithm "${alg.id}" is already registered`);
  registry.set(alg.id, alg);
}

/** The algorithm new application values should use: `A256GCM`. */
export function recommendedDataAlg(): 'A256GCM' {
  return 'A256GCM';
}

/**
 * A new random key (from the CSPRNG) of the length algorithm `id` needs.
 * @throws UnsupportedAlgorithmError for an unregistered id.
 */
export function generateKeyByAlg(id: string): Dek {
  return Dek.generate(algorithm(id).keyLength);
}

function checkedParams(alg: WireAlgorithm, params: WireParams | undefined): void {
  if (params === undefined || params === EMPTY_PARAMS) return;
  if (typeof params !== 'object' || params === null || Array.isArray(params) || ArrayBuffer.isView(params)) {
    throw new InvalidArgumentError('algorithm parameters must be a plain object');
  }
  const problem = alg.paramsProblem(params);
  if (problem !== undefined) throw new InvalidArgumentError(problem);
}

/**
 * Encrypts `plaintext` with algorithm `id` (gemstone's `encrypt_alg`); returns the blob
 * `nonce ‖ ciphertext ‖ tag`. `params` are the algorithm's parameters (`{}` for `A256GCM`);
 * `aad` is authenticated, not encrypted.
 *
 * Security: every call draws a fresh random nonce and counts against the key's limit of 2^32
 * encryptions.
 * @throws UnsupportedAlgorithmError, InvalidArgumentError (params the algorithm does not take,
 * wrong key length), NonceLimitError.
 */
export function encryptAlg(
  id: string,
  key: SecretKey,
  plaintext: Uint8Array,
  params?: WireParams,
  aad?: Uint8Array,
): Buffer {
  const alg = algorithm(id);
  checkedParams(alg, params);
  return alg.encrypt(key, plaintext, aad);
}

/**
 * Decrypts a blob with algorithm `id` (gemstone's `decrypt_alg`). The returned buffer is the
 * caller's: wipe it (`fill(0)`) when done if it is secret.
 * @throws UnsupportedAlgorithmError, InvalidArgumentError (params the algorithm does not take,
 * wrong key length), DecryptFailedError (wrong key, wrong AAD, tampered or truncated blob).
 */
export function decryptAlg(
  id: string,
  key: SecretKey,
  blob: Uint8Array,
  params?: WireParams,
  aad?: Uint8Array,
): Buffer {
  const alg = algorithm(id);
  checkedParams(alg, params);
  return alg.decrypt(key, blob, aad);
}

/**
 * Test seam: encrypts under a caller-chosen nonce, to reproduce a published token byte for byte.
 * A string is encrypted as its UTF-8, through the same path as `encryptString`. Counts against
 * the key's limit like any encryption. Not exported from the package root.
 *
 * Security: never use a nonce twice under one key; outside tests, use {@link encryptAlg}.
 * @throws UnsupportedAlgorithmError when `id` is not `A256GCM`; InvalidArgumentError for a nonce
 * that is not 12 bytes.
 */
export function encryptWithNonceForTesting(
  id: string,
  key: SecretKey,
  plaintext: Uint8Array | string,
  nonce: Uint8Array,
  aad?: Uint8Array,
): Buffer {
  if (algorithm(id) !== A256GCM) throw new UnsupportedAlgorithmError(`no fixed-nonce seam for ${id}`);
  const bytes = requireKeyLength(key, A256GCM);
  countInvocation(key);
  return sealAes256GcmWithNonce(bytes, nonce, plaintext, aad);
}
