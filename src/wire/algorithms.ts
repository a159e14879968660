/**
 * Algorithm dispatch by id, as in gemstone_utils: each algorithm encrypts bytes under a key of
 * its length into `nonce ‖ ciphertext ‖ tag`. `A256GCM` (AES-256-GCM, 32-byte key, 96-bit random
 * nonce, 128-bit tag) is registered.
 *
 * @module
 */
import { createCipheriv } from 'node:crypto';
import { openAes256Gcm } from '../crypto/aes-gcm.js';
import { GCM_NONCE_LENGTH, noncePool } from '../crypto/nonce-pool.js';
import { DecryptFailedError, NonceLimitError, UnsupportedAlgorithmError } from '../errors.js';
import { Dek } from '../keys/dek.js';
import type { SecretKey } from '../keys/secret-key.js';

/** One registered algorithm. */
export interface WireAlgorithm {
  /** Its id, segment 1 of a token. */
  readonly id: string;
  /** Key length in bytes. */
  readonly keyLength: number;
  /** Encrypts; returns nonce ‖ ciphertext ‖ tag. `nonce` is a test seam (normally random). */
  encrypt(key: SecretKey, plaintext: Uint8Array, aad?: Uint8Array, nonce?: Uint8Array): Buffer;
  /** Decrypts nonce ‖ ciphertext ‖ tag. @throws DecryptFailedError */
  decrypt(key: SecretKey, blob: Uint8Array, aad?: Uint8Array): Buffer;
}

/**
 * NIST SP 800-38D §8.3: with random 96-bit nonces, at most 2^32 invocations of the encryption
 * per key.
 */
export const GCM_RANDOM_NONCE_LIMIT = 2 ** 32;

const invocations = new WeakMap<SecretKey, number>();

function countInvocation(key: SecretKey): void {
  const used = invocations.get(key) ?? 0;
  if (used >= GCM_RANDOM_NONCE_LIMIT) {
    throw new NonceLimitError(
      'this key reached 2^32 encryptions with random nonces (NIST SP 800-38D): use a new key for new writes',
    );
  }
  invocations.set(key, used + 1);
}

/** Encryptions counted so far for `key` in this process. */
export function invocationCount(key: SecretKey): number {
  return invocations.get(key) ?? 0;
}

/** Test seam: sets the invocation counter of `key` (e.g. near the limit). */
export function setInvocationCountForTesting(key: SecretKey, count: number): void {
  invocations.set(key, count);
}

const A256GCM: WireAlgorithm = {
  id: 'A256GCM',
  keyLength: 32,
  encrypt(key, plaintext, aad, nonce) {
    countInvocation(key);
    const iv = nonce ?? noncePool.take();
    const cipher = createCipheriv('aes-256-gcm', key.expose(), iv);
    if (aad !== undefined) cipher.setAAD(aad);
    const out = Buffer.allocUnsafe(GCM_NONCE_LENGTH + plaintext.length + 16);
    out.set(iv, 0);
    const n = cipher.update(plaintext).copy(out, GCM_NONCE_LENGTH);
    cipher.final();
    cipher.getAuthTag().copy(out, GCM_NONCE_LENGTH + n);
    return out;
  },
  decrypt(key, blob, aad) {
    const plaintext = openAes256Gcm(key.expose(), blob, aad);
    if (plaintext === undefined) throw new DecryptFailedError('the value does not decrypt under this key');
    return plaintext;
  },
};

const registry = new Map<string, WireAlgorithm>([[A256GCM.id, A256GCM]]);

/** The algorithm registered as `id`. @throws UnsupportedAlgorithmError */
export function algorithm(id: string): WireAlgorithm {
  const found = registry.get(id);
  if (found === undefined) {
    throw new UnsupportedAlgorithmError(
      `unsupported algorithm "${String(id).slice(0, 32)}" (supported: ${[...registry.keys()].join(', ')})`,
    );
  }
  return found;
}

/** Registers another algorithm (plugins). @throws UnsupportedAlgorithmError if the id is taken. */
export function registerAlgorithm(alg: WireAlgorithm): void {
  if (registry.has(alg.id))
    throw new UnsupportedAlgorithmError(`algorithm "${alg.id}" is already registered`);
  registry.set(alg.id, alg);
}

/** The algorithm new data should use: `A256GCM`. */
export function recommendedDataAlg(): string {
  return A256GCM.id;
}

/** A new random key for algorithm `id`. @throws UnsupportedAlgorithmError */
export function generateKeyByAlg(id: string): Dek {
  return Dek.generate(algorithm(id).keyLength);
}

/** Encrypts with algorithm `id`. @throws UnsupportedAlgorithmError, NonceLimitError */
export function encryptAlg(id: string, key: SecretKey, plaintext: Uint8Array, aad?: Uint8Array): Buffer {
  return algorithm(id).encrypt(key, plaintext, aad);
}

/** Decrypts with algorithm `id`. @throws UnsupportedAlgorithmError, DecryptFailedError */
export function decryptAlg(id: string, key: SecretKey, blob: Uint8Array, aad?: Uint8Array): Buffer {
  return algorithm(id).decrypt(key, blob, aad);
}
