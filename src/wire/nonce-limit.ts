/**
 * The per-key invocation limit of AES-GCM with random 96-bit nonces (NIST SP 800-38D §8.3): at
 * most 2^32 encryptions under one key, which keeps the chance of a repeated nonce below 2^-32.
 *
 * Counts live in a `WeakMap` keyed by the key object, for this process only: a key object used in
 * several processes (or re-created from its bytes) is counted separately in each. Rotate DEKs well
 * before the limit; this is the backstop, not the policy.
 *
 * @module
 */
import { InvalidArgumentError, NonceLimitError } from '../errors.js';
import type { SecretKey } from '../keys/secret-key.js';

/** At most this many encryptions per key with random 96-bit nonces (2^32). */
export const GCM_RANDOM_NONCE_LIMIT = 2 ** 32;

const invocations = new WeakMap<SecretKey, number>();

/**
 * Counts one encryption under `key`.
 * @throws NonceLimitError when `key` has already been used for {@link GCM_RANDOM_NONCE_LIMIT}
 * encryptions in this process (the count is not increased then).
 */
export function countInvocation(key: SecretKey): void {
  const used = invocations.get(key) ?? 0;
  if (used >= GCM_RANDOM_NONCE_LIMIT) {
    throw new NonceLimitError(
      `this ${key.length * 8}-bit key reached 2^32 encryptions with random nonces (NIST SP 800-38D): encrypt new values under a new key`,
    );
  }
  invocations.set(key, used + 1);
}

/** Encryptions counted so far under `key` in this process. */
export function invocationCount(key: SecretKey): number {
  return invocations.get(key) ?? 0;
}

/**
 * Test seam: sets the count of `key` (e.g. to just below {@link GCM_RANDOM_NONCE_LIMIT}).
 * Not exported from the package root.
 * @throws InvalidArgumentError for a negative or non-integer count.
 */
export function setInvocationCountForTesting(key: SecretKey, count: number): void {
  if (!Number.isSafeInteger(count) || count < 0)
    throw new InvalidArgumentError('count must be a non-negative integer');
  invocations.set(key, count);
}
