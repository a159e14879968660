/**
 * kms-envelope: each index's 32-byte KEK wrapped by a KMS, in a verified FlatBuffer envelope
 * (`KMSBlob`) stored beside the index on disk or in Redis.
 *
 * @packageDocumentation
 */

export type {
  CreateIndexOptions,
  KmsEnvelopeClientOptions,
  RotateOptions,
  UnwrapOptions,
  VerifyReport,
} from './client.js';
export { KmsEnvelopeClient } from './client.js';
export { decodeKmsBlob, encodeKmsBlob } from './envelope/codec.js';
export {
  KMS_BLOB_FILE_IDENTIFIER,
  KMS_BLOB_SCHEMA_VERSION,
  type KmsBlob,
  KmsBlobLimits,
} from './envelope/kms-blob.js';
export * from './errors.js';
export { createIndexKms, deleteIndexKms, getIndexKms, pushIndexKms } from './index-kms.js';
export { KEK_LENGTH, Kek } from './keys/kek.js';
export { KEK_CHECK_LENGTH, kekCheckValue, kekMatchesCheck } from './keys/kek-check.js';
export { SecretKey, withKey } from './keys/secret-key.js';
export {
  decodeKeyMaterial,
  defaultSecretFilePrefixes,
  registerSecretScheme,
  resolveSecretRef,
  type SecretRefOptions,
  type SecretSchemeResolver,
} from './keys/secret-ref.js';
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
  loadSlotsConfig,
  parseKmsSlot,
  parseSlotsConfig,
} from './providers/slot.js';
export { StorageConfig } from './storage/config.js';
export type { EnvelopeStore, PushOptions } from './storage/store.js';
