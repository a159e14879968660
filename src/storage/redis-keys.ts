/**
 * The Redis key layout of the Redis store, and the one it replaced (for `migrate-store`).
 *
 * Layout: `<prefix>{<index>}:kmsblob` (the envelope, a string) and
 * `<prefix>{<index>}:records:<kind>` (a hash of id → record per kind). It is injective: a prefix
 * may not contain `{` or `}` and an index name is `[A-Za-z0-9._-]+`, so the first `{` of a key ends
 * the prefix and the next `}` ends the index: two stores with different prefixes never share a
 * key. The braces are also a Redis Cluster hash tag: every key of one index hashes to the slot of
 * `<index>`, so a script over several keys of one index stays legal in a cluster.
 *
 * @module
 */
import { InvalidArgumentError } from '../errors.js';
import type { IndexName } from '../names.js';
import type { RecordKind } from './store.js';

/** Default key prefix. */
export const DEFAULT_KEY_PREFIX = 'kms-envelope:';

/**
 * Validates a key prefix where it enters.
 * @throws InvalidArgumentError when it is not a string or contains `{` or `}` (they would make
 * the layout ambiguous and move the Cluster hash tag).
 */
export function parseKeyPrefix(prefix: unknown): string {
  if (typeof prefix !== 'string') throw new InvalidArgumentError('keyPrefix must be a string');
  if (/[{}]/.test(prefix)) {
    throw new InvalidArgumentError(
      "keyPrefix must not contain '{' or '}': the store puts the index between them (the Redis Cluster hash tag)",
    );
  }
  return prefix;
}

/** The key of an index's envelope. */
export function envelopeKey(prefix: string, index: IndexName): string {
  return `${prefix}{${index}}:kmsblob`;
}

/** The key of an index's records of one kind. @throws InvalidArgumentError for another kind */
export function recordsKey(prefix: string, index: IndexName, kind: RecordKind): string {
  if (kind !== 'dek' && kind !== 'meta')
    throw new InvalidArgumentError('record kind must be "dek" or "meta"');
  return `${prefix}{${index}}:records:${kind}`;
}

/**
 * The envelope key before the hash-tagged layout: `<prefix><index>:kmsblob`. Not injective
 * (prefix `tn` + index `ab` and prefix `tna` + index `b` are one key); only `migrate-store`
 * reads it, and it checks the envelope's own `index_name` before it moves anything.
 */
export function legacyEnvelopeKey(prefix: string, index: IndexName): string {
  return `${prefix}${index}:kmsblob`;
}

/** The records key before the hash-tagged layout: `<prefix><index>:<kind>`. */
export function legacyRecordsKey(prefix: string, index: IndexName, kind: RecordKind): string {
  return `${prefix}${index}:${kind}`;
}

/** Record kinds, for code that walks all of an index's keys. */
export const RECORD_KINDS: readonly RecordKind[] = ['dek', 'meta'];
