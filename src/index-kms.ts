/**
 * Low-level envelope operations, named after the seed system's API. They store and fetch
 * envelopes as they are; wrapping and unwrapping is the client's job ({@link KmsEnvelopeClient}).
 *
 * @module
 */
import type { KmsBlob } from './envelope/kms-blob.js';
import { parseIndexName } from './names.js';
import type { EnvelopeStore, PushOptions } from './storage/store.js';

/**
 * Strict insert of `blob` as the envelope of `indexName`.
 * @throws EnvelopeExistsError if one is stored; InvalidArgumentError for a bad name or a blob
 * bound to another index.
 */
export function createIndexKms(storage: EnvelopeStore, indexName: string, blob: KmsBlob): Promise<void> {
  return storage.create(parseIndexName(indexName), blob);
}

/**
 * Upsert of the envelope of `indexName`, whole or nothing; with `expectedVersion`, a
 * compare-and-set decided by the store.
 * @throws VersionConflictError when `expectedVersion` does not match.
 */
export function pushIndexKms(
  storage: EnvelopeStore,
  indexName: string,
  blob: KmsBlob,
  options: PushOptions = {},
): Promise<void> {
  return storage.push(parseIndexName(indexName), blob, options);
}

/**
 * Reads and verifies the envelope of `indexName`.
 * @throws EnvelopeNotFoundError; MalformedEnvelopeError for a corrupt stored value.
 */
export function getIndexKms(storage: EnvelopeStore, indexName: string): Promise<KmsBlob> {
  return storage.get(parseIndexName(indexName));
}

/** Deletes the envelope of `indexName`; a no-op when there is none. */
export function deleteIndexKms(storage: EnvelopeStore, indexName: string): Promise<void> {
  return storage.delete(parseIndexName(indexName));
}
