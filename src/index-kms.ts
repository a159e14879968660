/**
 * Low-level envelope operations, named after the seed system's API. They store and fetch
 * envelopes as they are; wrapping and unwrapping is the client's job ({@link KmsEnvelopeClient}).
 *
 * They take an envelope as the seed's users write one, with exactly its documented fields
 * (`kmsName`, `provider`, `keyId`, `region`, `wrappedKek`, `version`, and `createdAt` optional),
 * and fill the rest ({@link seedEnvelope}). The seed's rotation recipe works as written:
 *
 * ```ts
 * const blob = await getIndexKms(storage, 'my_index');
 * await pushIndexKms(storage, 'my_index', { ...blob, wrappedKek: rewrapped, version: blob.version + 1 });
 * ```
 *
 * @module
 */
import type { KmsBlobInput } from './envelope/codec.js';
import type { KmsBlob } from './envelope/kms-blob.js';
import { InvalidArgumentError } from './errors.js';
import { type IndexName, parseIndexName } from './names.js';
import type { EnvelopeStore, PushOptions } from './storage/store.js';

/**
 * An envelope as the seed system documents it: `kmsName`, `provider`, `keyId`, `region`,
 * `wrappedKek`, `version`, `createdAt` optional; any other {@link KmsBlob} field may be given too.
 */
export type SeedKmsBlob = Omit<KmsBlobInput, 'indexName'> & {
  /** The bound index; when given it must equal the call's index. */
  readonly indexName?: string;
};

/**
 * The whole envelope of `index` from a seed-style `blob`, filling what it leaves out:
 *
 * - `indexName`: `index` (a blob that names another index is refused);
 * - `createdAt`: now; `updatedAt`: now (never before `createdAt`);
 * - `encryptionContext`: `{}`; `kekCheck`: none;
 * - `schemaVersion`: 2 with a `creationId`, otherwise **1**.
 *
 * Why schema 1 and not a fresh creation id: schema 2 means the wrap is bound to `version` and
 * `creation_id` (schemas/README.md), and the client unwraps an envelope with the binding its
 * schema names. A seed blob's `wrappedKek` was made outside this library, by a wrap that never saw
 * a creation id; an id invented here would be bound by nothing and guarantee that the unwrap
 * fails. Without one the envelope is what it is, schema 1: bound to provider, slot, index and
 * context, the binding the client then unwraps it with. Schema 1 envelopes have no rollback
 * binding (docs/threat-model.md); `client.rotate` upgrades one to schema 2.
 * @throws InvalidArgumentError for a blob bound to another index or that is not an object.
 */
export function seedEnvelope(
  index: IndexName,
  blob: SeedKmsBlob,
  now = Math.floor(Date.now() / 1000),
): KmsBlob {
  if (typeof blob !== 'object' || blob === null) {
    throw new InvalidArgumentError('the envelope must be an object', { index });
  }
  if (blob.indexName !== undefined && blob.indexName !== index) {
    throw new InvalidArgumentError('the envelope is bound to another index', { index });
  }
  // `=== undefined`, not `??`: a null field is refused by the encoder, not taken as left out.
  const createdAt = blob.createdAt === undefined ? now : blob.createdAt;
  return {
    kmsName: blob.kmsName,
    provider: blob.provider,
    keyId: blob.keyId,
    region: blob.region,
    wrappedKek: blob.wrappedKek,
    version: blob.version,
    createdAt,
    indexName: index,
    encryptionContext: blob.encryptionContext === undefined ? {} : blob.encryptionContext,
    schemaVersion:
      blob.schemaVersion === undefined ? (blob.creationId === undefined ? 1 : 2) : blob.schemaVersion,
    updatedAt: blob.updatedAt === undefined ? Math.max(now, createdAt) : blob.updatedAt,
    kekCheck: blob.kekCheck,
    ...(blob.creationId === undefined ? {} : { creationId: blob.creationId }),
  };
}

/**
 * Strict insert of `blob` as the envelope of `indexName`; a seed-style blob is completed by
 * {@link seedEnvelope} (index from this call, timestamps now, empty context, schema 1 without a
 * creation id).
 * @throws EnvelopeExistsError if one is stored; InvalidArgumentError for a bad name, a blob
 * bound to another index, or an invalid field.
 */
export async function createIndexKms(
  storage: EnvelopeStore,
  indexName: string,
  blob: SeedKmsBlob,
): Promise<void> {
  const index = parseIndexName(indexName);
  return storage.create(index, seedEnvelope(index, blob));
}

/**
 * Upsert of the envelope of `indexName`, whole or nothing; with `expectedVersion`, a
 * compare-and-set decided by the store. A seed-style blob is completed as by
 * {@link createIndexKms}; a blob read with {@link getIndexKms} and changed (the seed's rotation
 * recipe) keeps every field it had.
 * @throws VersionConflictError when `expectedVersion` does not match; InvalidArgumentError as
 * {@link createIndexKms}.
 */
export async function pushIndexKms(
  storage: EnvelopeStore,
  indexName: string,
  blob: SeedKmsBlob,
  options: PushOptions = {},
): Promise<void> {
  const index = parseIndexName(indexName);
  return storage.push(index, seedEnvelope(index, blob), options);
}

/**
 * Reads and verifies the envelope of `indexName`.
 * @throws EnvelopeNotFoundError; MalformedEnvelopeError for a corrupt stored value.
 */
export function getIndexKms(storage: EnvelopeStore, indexName: string): Promise<KmsBlob> {
  return storage.get(parseIndexName(indexName));
}

/**
 * Deletes the envelope of `indexName`, and only it; a no-op when there is none. To delete an index
 * with its DEK records (everything it owns), use `KmsEnvelopeClient.delete`.
 */
export function deleteIndexKms(storage: EnvelopeStore, indexName: string): Promise<void> {
  return storage.delete(parseIndexName(indexName));
}
