import { createCipheriv, createDecipheriv } from 'node:crypto';
import { InvalidArgumentError } from '../errors.js';
import { GCM_NONCE_LENGTH, noncePool } from './nonce-pool.js';

/** Length of an AES-GCM tag in bytes. */
export const GCM_TAG_LENGTH = 16;

/** Smallest sealed box: nonce ‖ tag with an empty plaintext. */
export const GCM_MIN_SEALED_LENGTH = GCM_NONCE_LENGTH + GCM_TAG_LENGTH;

/**
 * AES-256-GCM seal: returns `nonce(12) ‖ ciphertext ‖ tag(16)` with a fresh random nonce.
 * `key` must be 32 bytes; `aad` is authenticated, not encrypted. A string `plaintext` is sealed
 * as its UTF-8 bytes (encoded inside the cipher, which is cheaper than `Buffer.from` first).
 */
export function sealAes256Gcm(key: Uint8Array, plaintext: Uint8Array | string, aad?: Uint8Array): Buffer {
  return sealAes256GcmWithNonce(key, noncePool.take(), plaintext, aad);
}

/**
 * AES-256-GCM seal under a caller-chosen 12-byte nonce: `nonce ‖ ciphertext ‖ tag(16)`.
 *
 * Security: reusing a nonce under the same key reveals the XOR of the plaintexts and lets anyone
 * forge tags. This exists to reproduce published test vectors byte for byte; everything else
 * calls {@link sealAes256Gcm}, which draws a random nonce.
 * @throws InvalidArgumentError when `nonce` is not 12 bytes.
 */
export function sealAes256GcmWithNonce(
  key: Uint8Array,
  nonce: Uint8Array,
  plaintext: Uint8Array | string,
  aad?: Uint8Array,
): Buffer {
  if (nonce.length !== GCM_NONCE_LENGTH) {
    throw new InvalidArgumentError(`an AES-GCM nonce must be ${GCM_NONCE_LENGTH} bytes, got ${nonce.length}`);
  }
  const cipher = createCipheriv('aes-256-gcm', key, nonce);
  if (aad !== undefined && aad.length > 0) cipher.setAAD(aad);
  const ciphertext =
    typeof plaintext === 'string' ? cipher.update(plaintext, 'utf8') : cipher.update(plaintext);
  cipher.final();
  const out = Buffer.allocUnsafe(GCM_NONCE_LENGTH + ciphertext.length + GCM_TAG_LENGTH);
  out.set(nonce, 0);
  out.set(ciphertext, GCM_NONCE_LENGTH);
  out.set(cipher.getAuthTag(), GCM_NONCE_LENGTH + ciphertext.length);
  return out;
}

/**
 * AES-256-GCM open of `nonce(12) ‖ ciphertext ‖ tag(16)`. Returns the plaintext, or `undefined`
 * when the box is too short or does not authenticate (wrong key, wrong AAD, tampered bytes): the
 * caller turns that into the error that fits its layer. Never throws for bad input bytes.
 */
export function openAes256Gcm(key: Uint8Array, sealed: Uint8Array, aad?: Uint8Array): Buffer | undefined {
  if (sealed.length < GCM_MIN_SEALED_LENGTH) return undefined;
  const tagStart = sealed.length - GCM_TAG_LENGTH;
  const decipher = createDecipheriv('aes-256-gcm', key, sealed.subarray(0, GCM_NONCE_LENGTH), {
    authTagLength: GCM_TAG_LENGTH,
  });
  decipher.setAuthTag(sealed.subarray(tagStart));
  if (aad !== undefined && aad.length > 0) decipher.setAAD(aad);
  const plaintext = decipher.update(sealed.subarray(GCM_NONCE_LENGTH, tagStart));
  try {
    decipher.final();
  } catch {
    plaintext.fill(0);
    return undefined;
  }
  return plaintext;
}
