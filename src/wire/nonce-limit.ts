/**
 * The per-key invocation limit of AES-GCM with random 96-bit nonces (NIST SP 800-38D §8.3): at
 * most 2^32 encryptions under one key, which keeps the chance of a repeated nonce below 2^-32.
 *
 * What is counted: every encryption in this process under the same key *bytes*, whichever key
 * object (a `Dek`, a `Kek`, a copy made with `fromBytes`, a key unwrapped again after a cache
 * eviction) carries them. A key is identified by a fingerprint, HMAC-SHA256 of its bytes under a
 * random key drawn once per process and never exported, truncated to 128 bits; the key bytes
 * themselves are never a map key and are not kept. Each key object finds its shared counter once
 * (one HMAC) and keeps a reference to it, so the count on the hot path is a property increment.
 *
 * What is not counted: encryptions in other processes or before a restart (the count lives in
 * this process's memory only), and keys used outside this library. That is why DEK rotation is
 * the policy and this limit the backstop: encrypt new values under a new DEK long before any one
 * key could approach 2^32 encryptions across every process and restart that uses it.
 *
 * Memory is bounded: the counts of keys that no live key object holds any more are kept, up to
 * {@link MAX_RETIRED_KEY_COUNTS} keys; past that, the lowest of those counts are dropped (a key
 * re-created later from dropped bytes starts again from zero, having lost at most the smallest
 * counts in the table). Counts of keys still held by a key object are never dropped.
 *
 * @module
 */
import { createHmac, randomBytes } from 'node:crypto';
import { InvalidArgumentError, NonceLimitError } from '../errors.js';
import type { SecretKey } from '../keys/secret-key.js';

/** At most this many encryptions per key with random 96-bit nonces (2^32). */
export const GCM_RANDOM_NONCE_LIMIT = 2 ** 32;

/** How many counts of keys no longer held by any key object are kept (about 100 bytes each). */
export const MAX_RETIRED_KEY_COUNTS = 65_536;

/** The shared count of one key (one fingerprint). */
interface KeyCount {
  readonly fingerprint: string;
  count: number;
  /** Key objects alive that use this count (decremented when one is garbage-collected). */
  holders: number;
}

/** Every key's count in this process, by fingerprint. */
const byFingerprint = new Map<string, KeyCount>();
/** The count each key object uses: one fingerprint per object, not one per encryption. */
const byKeyObject = new WeakMap<SecretKey, KeyCount>();
/** How many entries of {@link byFingerprint} have no holder (candidates for dropping). */
let retired = 0;
/** {@link MAX_RETIRED_KEY_COUNTS}, lowered by a test seam. */
let maxRetired = MAX_RETIRED_KEY_COUNTS;

const released = new FinalizationRegistry<KeyCount>((entry) => {
  entry.holders--;
  if (entry.holders === 0) {
    retired++;
    if (retired > maxRetired) dropLowestRetired();
  }
});

/** Drawn on first use, not at import, so that it is never captured in a V8 startup snapshot. */
let fingerprintKey: Buffer | undefined;

function fingerprintOf(bytes: Buffer): string {
  fingerprintKey ??= randomBytes(32);
  return createHmac('sha256', fingerprintKey).update(bytes).digest().toString('base64', 0, 16);
}

/** Keeps the highest half of the retired counts (sorting once per MAX/2 retirements). */
function dropLowestRetired(): void {
  const candidates = [...byFingerprint.values()].filter((entry) => entry.holders === 0);
  candidates.sort((a, b) => a.count - b.count);
  const drop = candidates.length - Math.floor(maxRetired / 2);
  for (let i = 0; i < drop; i++) byFingerprint.delete(candidates[i]!.fingerprint);
  retired -= Math.max(drop, 0);
}

/**
 * The count of `key`'s bytes, shared with every other key object holding the same bytes.
 * `key` must not be zeroed (its bytes are read once, for the fingerprint).
 */
function countOf(key: SecretKey): KeyCount {
  let entry = byKeyObject.get(key);
  if (entry !== undefined) return entry;
  const fingerprint = fingerprintOf(key.expose());
  entry = byFingerprint.get(fingerprint);
  if (entry === undefined) {
    entry = { fingerprint, count: 0, holders: 0 };
    byFingerprint.set(fingerprint, entry);
  } else if (entry.holders === 0) {
    retired--;
  }
  entry.holders++;
  byKeyObject.set(key, entry);
  released.register(key, entry);
  return entry;
}

/**
 * Counts one encryption under `key` (under its bytes: see the module comment).
 * @throws NonceLimitError when these key bytes have already been used for
 * {@link GCM_RANDOM_NONCE_LIMIT} encryptions in this process (the count is not increased then).
 * @throws InvalidArgumentError if `key` was zeroed.
 */
export function countInvocation(key: SecretKey): void {
  const entry = countOf(key);
  if (entry.count >= GCM_RANDOM_NONCE_LIMIT) {
    throw new NonceLimitError(
      `this ${key.length * 8}-bit key reached 2^32 encryptions with random nonces (NIST SP 800-38D): encrypt new values under a new key`,
    );
  }
  entry.count++;
}

/**
 * Encryptions counted so far in this process under `key`'s bytes (by any key object). A zeroed
 * key reports the count it had, or 0 if it never encrypted.
 */
export function invocationCount(key: SecretKey): number {
  const entry = byKeyObject.get(key);
  if (entry !== undefined) return entry.count;
  if (key.isZeroed) return 0;
  return countOf(key).count;
}

/**
 * Test seam: sets the count of `key`'s bytes (e.g. to just below {@link GCM_RANDOM_NONCE_LIMIT}).
 * Not exported from the package root.
 * @throws InvalidArgumentError for a negative or non-integer count, or a zeroed key.
 */
export function setInvocationCountForTesting(key: SecretKey, count: number): void {
  if (!Number.isSafeInteger(count) || count < 0)
    throw new InvalidArgumentError('count must be a non-negative integer');
  countOf(key).count = count;
}

/** Test seam: how many key counts this process keeps (held and retired). Not exported from the root. */
export function keyCountsKeptForTesting(): number {
  return byFingerprint.size;
}

/** Test seam: lowers {@link MAX_RETIRED_KEY_COUNTS} for this process. Not exported from the root. */
export function setMaxRetiredKeyCountsForTesting(max: number): void {
  if (!Number.isSafeInteger(max) || max < 2) throw new InvalidArgumentError('max must be an integer ≥ 2');
  maxRetired = max;
}
