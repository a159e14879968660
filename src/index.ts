/**
 * kms-envelope: each index's 32-byte KEK wrapped by a KMS, in a verified FlatBuffer envelope
 * (`KMSBlob`) stored beside the index on disk or in Redis.
 *
 * @packageDocumentation
 */

export type {
  CreateIndexOptions,
  IndexChangeListener,
  KmsEnvelopeClientOptions,
  PrepareEnvelopeOptions,
  RecoverOptions,
  RotateOptions,
  UnwrapOptions,
  VerifyReport,
} from './client.js';
export { KmsEnvelopeClient } from './client.js';
export type { SharePolicy } from './crypto/binding.js';
export { type DoctorCheck, type DoctorOptions, type DoctorReport, diagnoseSlot } from './doctor.js';
export { decodeKmsBlob, encodeKmsBlob, type KmsBlobInput } from './envelope/codec.js';
export {
  CREATION_ID_LENGTH,
  KMS_BLOB_FILE_IDENTIFIER,
  KMS_BLOB_SCHEMA_VERSION,
  KMS_BLOB_THRESHOLD_SCHEMA_VERSION,
  type KmsBlob,
  KmsBlobLimits,
  type KmsWrap,
  MAX_WRAPS,
} from './envelope/kms-blob.js';
export * from './errors.js';
export {
  createIndexKms,
  deleteIndexKms,
  getIndexKms,
  pushIndexKms,
  type SeedKmsBlob,
  seedEnvelope,
} from './index-kms.js';
export type { PruneReport } from './keyring/keyring.js';
export {
  type DekInfo,
  IndexKeyring,
  type KeyringOptions,
  kekSlotOf,
  keyctxResolver,
  type RotateKekOptions,
  type RotateKekReport,
} from './keyring/keyring.js';
export {
  createPassphraseIndex,
  DEFAULT_KDF_ITERATIONS,
  deriveAndVerifyKek,
  derivePassphraseKek,
  formatKdfParams,
  KDF_SALT_BYTES,
  type KdfParams,
  MAX_KDF_ITERATIONS,
  MAX_KDF_SALT_BYTES,
  MIN_KDF_ITERATIONS,
  MIN_KDF_SALT_BYTES,
  newKdfParams,
  parseKdfParams,
} from './keyring/passphrase.js';
export type { DekState } from './keyring/records.js';
// The DEK wire format (gemstone_utils v0.5 compatible) and the DEK layer under each index's KEK.
export { Dek } from './keys/dek.js';
export { KEK_LENGTH, Kek } from './keys/kek.js';
export { KEK_CHECK_LENGTH, kekCheckValue, kekMatchesCheck } from './keys/kek-check.js';
export { SecretKey, withKey } from './keys/secret-key.js';
export {
  decodeKeyMaterial,
  defaultSecretFilePrefixes,
  forgetEnvSecrets,
  registerSecretScheme,
  resolveSecretRef,
  type SecretRefOptions,
  type SecretSchemeResolver,
} from './keys/secret-ref.js';
export {
  type MigratedKind,
  type MigratedValue,
  type MigrateOptions,
  migrateValue,
} from './legacy/migrate.js';
export {
  apiKeyHash,
  decryptLegacyV2,
  encryptLegacyV2,
  getOrCreateUserKey,
  isLegacyV2,
  KMS_ENVELOPE_OLD_POOL_KEY_SALT,
  LEGACY_POOL_KEY_SALT,
  LegacyKey,
  type LegacyMasterKeyState,
  legacyMasterKeyFromEnv,
  legacyPoolKey,
} from './legacy/v2.js';
export {
  type IndexName,
  isValidIndexName,
  MAX_NAME_LENGTH,
  parseIndexName,
  parseSlotName,
  type SlotName,
} from './names.js';
export type {
  KmsProvider,
  ProviderEnvironment,
  ProviderFactory,
  ProviderPlugin,
  UnwrapContext,
  WrapContext,
  WrappedKek,
} from './providers/provider.js';
export { KmsRegistry, type KmsRegistryOptions, registerProvider } from './providers/registry.js';
export {
  interpolateEnv,
  type KmsSlot,
  type KmsSlotInput,
  type KmsSlotSnakeCase,
  loadSlotsConfig,
  parseKmsSlot,
  parseSlotsConfig,
} from './providers/slot.js';
export { StorageConfig } from './storage/config.js';
export { DiskStore, type DiskStoreOptions, RETAINED_GENERATIONS } from './storage/disk.js';
export { MemoryStore } from './storage/memory.js';
export {
  DEFAULT_POSTGRES_SCHEMA,
  DEFAULT_POSTGRES_TABLE,
  type PostgresPoolLike,
  type PostgresQuery,
  PostgresStore,
  type PostgresStoreOptions,
  type PostgresStoreTables,
  postgresStoreDdl,
} from './storage/postgres.js';
export {
  type PostgresInvalidationOptions,
  postgresInvalidationDdl,
  postgresInvalidationFeed,
} from './storage/postgres-invalidation.js';
export { MAX_RECORD_BYTES } from './storage/record-id.js';
export {
  type RedisLike,
  RedisStore,
  type RedisStoreOptions,
  ReplicasNotConfirmedError,
} from './storage/redis.js';
export {
  DEFAULT_TOPOLOGY_REFRESH_MS,
  type RedisClusterFeedNode,
  type RedisClusterInvalidationOptions,
  redisClusterInvalidationFeed,
} from './storage/redis-cluster-invalidation.js';
export {
  indexOfEnvelopeKey,
  type RedisInvalidationOptions,
  redisInvalidationFeed,
} from './storage/redis-invalidation.js';
export {
  migrateRedisLayout,
  type RedisMigrationClient,
  type RedisMigrationOptions,
  type RedisMigrationProblem,
  type RedisMigrationProblemKind,
  type RedisMigrationReport,
} from './storage/redis-migrate.js';
export type { EnvelopeStore, PushOptions, RecordKind, RecordStore } from './storage/store.js';
export { tracedStore } from './storage/traced-store.js';
// The per-request unwrap path: cache, leases, KMS call policy, telemetry.
export type { InvalidationFeed, InvalidationListener } from './unwrap/invalidation.js';
export type { KekCacheOptions } from './unwrap/kek-cache.js';
export { KekLease } from './unwrap/kek-lease.js';
export type { KmsCallOptions } from './unwrap/kms-calls.js';
export type { WrapOutcome } from './unwrap/multi-wrap.js';
export {
  Channels,
  type MeterLike,
  openTelemetryMeter,
  type SlotStats,
  type TamperEvent,
  type UnwrapStats,
  type WrapEvent,
} from './unwrap/telemetry.js';
export {
  type KmsOperation,
  openTelemetryTracer,
  type SpanLike,
  SpanNames,
  type SpanOptionsLike,
  TraceAttribute,
  type TraceAttributes,
  type TraceAttributeValue,
  type TracerLike,
} from './unwrap/tracing.js';
export {
  algorithm,
  decryptAlg,
  encryptAlg,
  GCM_RANDOM_NONCE_LIMIT,
  generateKeyByAlg,
  invocationCount,
  recommendedDataAlg,
  registerAlgorithm,
  type WireAlgorithm,
} from './wire/algorithms.js';
export {
  type BindingContext,
  CONTEXT_BINDING_PARAM,
  CONTEXT_BINDING_V1,
  decryptString,
  encryptString,
  type FieldOptions,
  type KeyContext,
  type KeyContextResolver,
} from './wire/fields.js';
export {
  type EncryptedField,
  type FieldParts,
  formatEncryptedField,
  isEncryptedValue,
  MIN_BLOB_LENGTH,
  type ParsedField,
  parseEncryptedField,
} from './wire/format.js';
export {
  type DekId,
  type KekSlotId,
  type KeyIdParser,
  newKekSlotId,
  newKeyId,
  parseDekId,
  parseKekSlotId,
  type WireKeyId,
} from './wire/key-id.js';
export type { WireParams } from './wire/params.js';
export { EMPTY_PARAMS } from './wire/params.js';
