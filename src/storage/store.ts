import type { KmsBlob } from '../envelope/kms-blob.js';
import type { IndexName } from '../names.js';

/** Options of {@link EnvelopeStore.push}. */
export interface PushOptions {
  /**
   * Compare-and-set: write only if the stored envelope currently has exactly this version.
   * Otherwise (another version, or no envelope) the push throws `VersionConflictError` and
   * changes nothing. The store decides this atomically (filesystem link protocol, Redis script).
   */
  readonly expectedVersion?: number;
  /**
   * With `expectedVersion`: the stored envelope's `creationId` must also equal these bytes (an
   * empty array: an envelope written before creation ids, which has none). A delete and re-create
   * starts again at version 1, so the version alone cannot tell the envelope a rotator read from
   * the one created since (ABA); the creation id can. Ignored without `expectedVersion`.
   */
  readonly expectedCreationId?: Uint8Array;
}

/**
 * Where envelopes live. One envelope per index; every implementation passes the same
 * conformance suite (test/storage/conformance.ts), which user-written stores can run too.
 *
 * Every method validates `index` with `parseIndexName` before it becomes a path or a key, and
 * every write checks that the blob is bound to it (`blob.indexName === index`); both refusals are
 * `InvalidArgumentError`. Every read verifies the stored bytes (structure and checksum).
 *
 * Every method may also throw `StoreUnavailableError` (retryable: Redis unreachable or timed out,
 * a disk that cannot be written, too many racing writers) or `AccessDeniedError` (file
 * permissions, Redis credentials), naming the index and carrying the underlying error as `cause`.
 * No message contains key material or a password.
 */
export interface EnvelopeStore {
  /** `disk`, `redis`, `memory`, or a plugin's id. */
  readonly kind: string;
  /** Where the store points, for messages and the CLI (`disk:/var/lib/idx`); never a password. */
  readonly description: string;
  /**
   * Strict insert: of any number of racing creators (processes, Redis clients) exactly one wins.
   * @throws EnvelopeExistsError if anything is stored for `index`, even a corrupt value.
   */
  create(index: IndexName, blob: KmsBlob): Promise<void>;
  /**
   * Idempotent upsert that replaces the whole envelope or nothing. Without `expectedVersion` it
   * replaces whatever is stored, even a corrupt value (the way to repair one).
   * @throws VersionConflictError with `expectedVersion` when the stored version differs or
   * nothing is stored; MalformedEnvelopeError with `expectedVersion` when the stored value cannot
   * be read as an envelope.
   */
  push(index: IndexName, blob: KmsBlob, options?: PushOptions): Promise<void>;
  /**
   * Reads and verifies the envelope; each call returns a fresh copy.
   * @throws EnvelopeNotFoundError if none is stored; MalformedEnvelopeError if the stored value is
   * corrupt or bound to another index.
   */
  get(index: IndexName): Promise<KmsBlob>;
  /**
   * Optional: the stored envelope's bytes exactly as stored, neither decoded nor verified, in a
   * buffer the caller may keep. The client's `readEnvelope: 'every-call'` cache compares them
   * with the bytes a cached KEK was unwrapped from and decodes them (as {@link get} would, with
   * `decodeStored`) only when they differ. A store without it is read with {@link get}.
   * @throws EnvelopeNotFoundError if none is stored.
   */
  getEncoded?(index: IndexName): Promise<Uint8Array>;
  /**
   * Removes the envelope, even a corrupt one; deleting a missing envelope is a no-op. Until an
   * envelope is created again, every compare-and-set push fails.
   */
  delete(index: IndexName): Promise<void>;
  /** Releases connections the store opened itself (never a client the caller passed in). */
  close(): Promise<void>;
}

/** Kinds of per-index records kept beside the envelope. */
export type RecordKind = 'dek' | 'meta';

/**
 * Small per-index records kept in the same store as the envelope (DEK records, the KEK-check
 * record, rotation state): on disk beside it (`<root>/<index>/records/<kind>/<id>`), in Redis
 * under the same prefix (a hash per index and kind). Every write replaces one record whole.
 *
 * Record ids are validated like names: `[A-Za-z0-9][A-Za-z0-9._-]*`, at most 128 characters.
 */
export interface RecordStore {
  /** Writes (creates or replaces) one record, whole or not at all. */
  putRecord(index: IndexName, kind: RecordKind, id: string, value: Uint8Array): Promise<void>;
  /** Strict insert of one record: false (and nothing written) if it exists. */
  createRecord(index: IndexName, kind: RecordKind, id: string, value: Uint8Array): Promise<boolean>;
  /** Writes many records (pipelined or batched where the store can); each is whole. */
  putRecords(index: IndexName, kind: RecordKind, records: ReadonlyMap<string, Uint8Array>): Promise<void>;
  /** One record, or `undefined`. */
  getRecord(index: IndexName, kind: RecordKind, id: string): Promise<Uint8Array | undefined>;
  /** Every record of a kind, by id. */
  listRecords(index: IndexName, kind: RecordKind): Promise<Map<string, Uint8Array>>;
  /** Removes one record; a no-op when absent. */
  deleteRecord(index: IndexName, kind: RecordKind, id: string): Promise<void>;
}
