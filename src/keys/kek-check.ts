import { createHmac, timingSafeEqual } from 'node:crypto';
import type { Kek } from './kek.js';

/** Length of a KEK check value in bytes (128 bits of HMAC-SHA256). */
export const KEK_CHECK_LENGTH = 16;

const LABEL = 'kms-envelope/kek-check/v1';

/**
 * The KEK check value stored in an envelope's `kek_check`: the first 16 bytes of
 * HMAC-SHA256(kek, label). It confirms that a KEK (unwrapped, or supplied by the caller with
 * provider `none`) is the index's KEK without revealing anything usable about it.
 */
export function kekCheckValue(kek: Kek): Uint8Array {
  return new Uint8Array(
    createHmac('sha256', kek.expose()).update(LABEL).digest().subarray(0, KEK_CHECK_LENGTH),
  );
}

/** Constant-time check of `kek` against a stored check value. */
export function kekMatchesCheck(kek: Kek, check: Uint8Array): boolean {
  const actual = kekCheckValue(kek);
  return actual.length === check.length && timingSafeEqual(actual, check);
}
