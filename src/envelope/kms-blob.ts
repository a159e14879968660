/**
 * The in-memory form of a KMSBlob envelope (schemas/kms_blob.fbs), with the limits that both the
 * encoder and the verifying decoder enforce.
 *
 * @module
 */

/**
 * Current value of `schema_version`; a decoder refuses envelopes written by a newer schema.
 *
 * - 1: the wrap is bound to provider, slot, index and encryption context.
 * - 2: also to `version` and `creation_id` (so an old envelope replayed into the store, or one of
 *   an earlier incarnation of the index, is told apart by what the KMS authenticates).
 */
export const KMS_BLOB_SCHEMA_VERSION = 2;

/**
 * `schema_version` of a threshold envelope: the KEK is split into Shamir shares, one per wrap,
 * and each wrap is bound (binding v3) to the policy too. Readers that know only schema 2 refuse
 * it as written by a newer kms-envelope instead of unwrapping a share as if it were the KEK.
 * Envelopes whose wraps each hold the whole KEK (`anyOf`) stay at {@link KMS_BLOB_SCHEMA_VERSION}.
 */
export const KMS_BLOB_THRESHOLD_SCHEMA_VERSION = 3;

/** The highest `schema_version` this release reads. */
export const KMS_BLOB_MAX_SCHEMA_VERSION = KMS_BLOB_THRESHOLD_SCHEMA_VERSION;

/** Most wraps of one envelope, the primary included (so `wraps` holds at most 7). */
export const MAX_WRAPS = 8;

/** The oldest `schema_version` still read (and pushed back, e.g. to repair a store). */
export const KMS_BLOB_MIN_SCHEMA_VERSION = 1;

/** Length of `creation_id` in bytes. */
export const CREATION_ID_LENGTH = 16;

/** The FlatBuffer `file_identifier` of a KMSBlob. */
export const KMS_BLOB_FILE_IDENTIFIER = 'KMSB';

/** Limits on field sizes and values, checked on encode and on decode. */
export const KmsBlobLimits = {
  /** Largest stored envelope in bytes (FlatBuffer plus checksum trailer). */
  maxEnvelopeBytes: 64 * 1024,
  /** Longest `key_id` in characters. */
  maxKeyIdLength: 2048,
  /** Longest `region` in characters. */
  maxRegionLength: 128,
  /** Largest `wrapped_kek` in bytes (an RSA-4096 wrap is 512). */
  maxWrappedKekBytes: 8192,
  /** Most entries in `encryption_context`. */
  maxContextEntries: 64,
  /** Longest encryption-context key in characters. */
  maxContextKeyLength: 256,
  /** Longest encryption-context value in characters. */
  maxContextValueLength: 2048,
  /** Largest `kek_check` in bytes. */
  maxKekCheckBytes: 64,
  /** Latest accepted `created_at` / `updated_at`: 9999-12-31T23:59:59Z in epoch seconds. */
  maxTimestamp: 253_402_300_799,
  /** Largest `version` (the schema type is uint32). */
  maxVersion: 0xffff_ffff,
} as const;

/**
 * Field slots of table `KMSBlob`, in schema order: field `slot` has vtable entry `4 + 2 * slot`.
 * Fields are only ever appended, so these numbers never change.
 */
export const KmsBlobField = {
  kmsName: 0,
  provider: 1,
  keyId: 2,
  region: 3,
  wrappedKek: 4,
  version: 5,
  createdAt: 6,
  indexName: 7,
  encryptionContext: 8,
  schemaVersion: 9,
  updatedAt: 10,
  kekCheck: 11,
  creationId: 12,
  wraps: 13,
  threshold: 14,
} as const;

/** Field slots of table `ContextEntry`. */
export const ContextEntryField = { key: 0, value: 1 } as const;

/** Field slots of table `Wrap`. */
export const WrapField = { kmsName: 0, provider: 1, keyId: 2, region: 3, wrappedKek: 4 } as const;

/**
 * One further wrap of an envelope's KEK (table `Wrap`): the KEK (or, in a threshold envelope, one
 * Shamir share of it) wrapped by another slot, bound to the index, its own slot and the
 * envelope's version and creation id (and, for a threshold envelope, the policy and its share
 * number).
 */
export interface KmsWrap {
  /** The slot that made this wrap; no two wraps of an envelope (primary included) share one. */
  readonly kmsName: string;
  /** That slot's provider id (never `none`). */
  readonly provider: string;
  /** The provider's key reference; may be ''. */
  readonly keyId: string;
  /** Region or location; may be ''. */
  readonly region: string;
  /** The wrapped KEK or share. */
  readonly wrappedKek: Uint8Array;
}

/** Provider ids: lower-case letters, digits and '-', starting with a letter. */
export const PROVIDER_ID_PATTERN = /^[a-z][a-z0-9-]{0,63}$/;

/**
 * One KMSBlob envelope: an index's KEK wrapped by the KMS slot `kmsName`.
 *
 * Field names are the camelCase of the schema's names. Timestamps are unix epoch seconds.
 */
export interface KmsBlob {
  /** Name of the KMS slot that wrapped the KEK (`kms_name`). */
  readonly kmsName: string;
  /** Provider id: `none`, `local`, `aws`, `aws-kms`, `gcp-kms`, `azure-kv` or a plugin's. */
  readonly provider: string;
  /** The provider's key reference: KMS key ARN, secret id, CryptoKey version, key URL; may be ''. */
  readonly keyId: string;
  /** Region or location, where the provider has one; otherwise ''. */
  readonly region: string;
  /** The wrapped KEK; empty for provider `none`. */
  readonly wrappedKek: Uint8Array;
  /** 1 on create, +1 on every rotation. */
  readonly version: number;
  /** When the envelope was first created. */
  readonly createdAt: number;
  /** The index this envelope is bound to. */
  readonly indexName: string;
  /** Extra context bound to the wrap (AAD / encryption context), besides index and slot. */
  readonly encryptionContext: Readonly<Record<string, string>>;
  /** Layout version of the table; {@link KMS_BLOB_SCHEMA_VERSION} for everything written now. */
  readonly schemaVersion: number;
  /** When the envelope was last written (create or rotation); never before `createdAt`. */
  readonly updatedAt: number;
  /**
   * Optional KEK check value (see `kekCheckValue`); `undefined` when absent. Required for provider
   * `none`, whose envelope holds nothing else that could confirm a supplied KEK.
   */
  readonly kekCheck: Uint8Array | undefined;
  /**
   * {@link CREATION_ID_LENGTH} random bytes made when the index was created and kept by every
   * rotation; present exactly when `schemaVersion` is 2 or more. With `version` it is bound into
   * what the provider authenticates, and compare-and-set compares it too, so a delete and
   * re-create (which starts again at version 1) is never mistaken for the envelope read before.
   */
  readonly creationId?: Uint8Array | undefined;
  /**
   * Further wraps of the same KEK by other slots, after the primary (the fields above); absent
   * (or empty) for a single-wrap envelope. At most {@link MAX_WRAPS} − 1. An envelope with wraps is
   * schema 2 or 3 and always carries `kekCheck`, which is what tells a good wrap from a forged one.
   */
  readonly wraps?: readonly KmsWrap[] | undefined;
  /**
   * The policy: `undefined` (stored 0) when any one wrap unwraps the KEK (`anyOf`); k ≥ 2 in a
   * threshold envelope (schema 3), where the primary holds Shamir share 1 and `wraps[i]` share
   * i + 2, and any k of the 1 + `wraps.length` shares recover the KEK.
   */
  readonly threshold?: number | undefined;
}
