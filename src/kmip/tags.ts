/**
 * The KMIP tags and enumeration values the `kmip` provider uses (KMIP 1.2–1.4 specification §9.1.3;
 * the values also match PyKMIP's `kmip/core/enums.py`). Only what the client sends or reads is
 * here: this is not a full KMIP dictionary.
 *
 * @module
 */

/** Item tags (3 bytes, `0x42xxxx`). */
export const Tag = {
  ActivationDate: 0x420001,
  Attribute: 0x420008,
  AttributeIndex: 0x420009,
  AttributeName: 0x42000a,
  AttributeValue: 0x42000b,
  BatchCount: 0x42000d,
  BatchErrorContinuationOption: 0x42000e,
  BatchItem: 0x42000f,
  BlockCipherMode: 0x420011,
  CryptographicAlgorithm: 0x420028,
  CryptographicLength: 0x42002a,
  CryptographicParameters: 0x42002b,
  CryptographicUsageMask: 0x42002c,
  IvCounterNonce: 0x42003d,
  KeyBlock: 0x420040,
  KeyCompressionType: 0x420041,
  KeyFormatType: 0x420042,
  KeyMaterial: 0x420043,
  KeyValue: 0x420045,
  KeyWrappingData: 0x420046,
  MaximumItems: 0x42004f,
  MaximumResponseSize: 0x420050,
  Name: 0x420053,
  NameType: 0x420054,
  NameValue: 0x420055,
  ObjectType: 0x420057,
  Operation: 0x42005c,
  OperationPolicyName: 0x42005d,
  PaddingMethod: 0x42005f,
  ProtocolVersion: 0x420069,
  ProtocolVersionMajor: 0x42006a,
  ProtocolVersionMinor: 0x42006b,
  RequestHeader: 0x420077,
  RequestMessage: 0x420078,
  RequestPayload: 0x420079,
  ResponseHeader: 0x42007a,
  ResponseMessage: 0x42007b,
  ResponsePayload: 0x42007c,
  ResultMessage: 0x42007d,
  ResultReason: 0x42007e,
  ResultStatus: 0x42007f,
  RevocationMessage: 0x420080,
  RevocationReason: 0x420081,
  RevocationReasonCode: 0x420082,
  SecretData: 0x420085,
  SecretDataType: 0x420086,
  State: 0x42008d,
  SymmetricKey: 0x42008f,
  TemplateAttribute: 0x420091,
  TimeStamp: 0x420092,
  UniqueBatchItemId: 0x420093,
  UniqueIdentifier: 0x420094,
  Data: 0x4200c2,
  TagLength: 0x4200ce,
  /** KMIP 1.4. */
  AuthenticatedEncryptionAdditionalData: 0x4200fe,
  /** KMIP 1.4. */
  AuthenticatedEncryptionTag: 0x4200ff,
} as const;

/** Operation (Enumeration). */
export const Operation = {
  Create: 0x01,
  Register: 0x03,
  Locate: 0x08,
  Get: 0x0a,
  GetAttributes: 0x0b,
  Activate: 0x12,
  Revoke: 0x13,
  Destroy: 0x14,
  Query: 0x18,
  DiscoverVersions: 0x1e,
  Encrypt: 0x1f,
  Decrypt: 0x20,
} as const;
export type Operation = (typeof Operation)[keyof typeof Operation];

/** Operation names, for messages. */
export const OPERATION_NAMES: Readonly<Record<number, string>> = Object.fromEntries(
  Object.entries(Operation).map(([name, value]) => [value, name]),
);

/** Object Type (Enumeration). */
export const ObjectType = {
  Certificate: 0x01,
  SymmetricKey: 0x02,
  PublicKey: 0x03,
  PrivateKey: 0x04,
  SplitKey: 0x05,
  Template: 0x06,
  SecretData: 0x07,
  OpaqueObject: 0x08,
  PgpKey: 0x09,
} as const;

/** Result Status (Enumeration). */
export const ResultStatus = {
  Success: 0x00,
  OperationFailed: 0x01,
  OperationPending: 0x02,
  OperationUndone: 0x03,
} as const;

/** Result Reason (Enumeration): KMIP 1.x, and the KMIP 2.0 codes the provider maps. */
export const ResultReason = {
  ItemNotFound: 0x01,
  ResponseTooLarge: 0x02,
  AuthenticationNotSuccessful: 0x03,
  InvalidMessage: 0x04,
  OperationNotSupported: 0x05,
  MissingData: 0x06,
  InvalidField: 0x07,
  FeatureNotSupported: 0x08,
  OperationCanceledByRequester: 0x09,
  CryptographicFailure: 0x0a,
  IllegalOperation: 0x0b,
  PermissionDenied: 0x0c,
  ObjectArchived: 0x0d,
  IndexOutOfBounds: 0x0e,
  ApplicationNamespaceNotSupported: 0x0f,
  KeyFormatTypeNotSupported: 0x10,
  KeyCompressionTypeNotSupported: 0x11,
  EncodingOptionError: 0x12,
  KeyValueNotPresent: 0x13,
  AttestationRequired: 0x14,
  AttestationFailed: 0x15,
  Sensitive: 0x16,
  NotExtractable: 0x17,
  ObjectAlreadyExists: 0x18,
  /** KMIP 2.0. */
  BadCryptographicParameters: 0x24,
  /** KMIP 2.0. */
  ObjectDestroyed: 0x36,
  /** KMIP 2.0. */
  ObjectNotFound: 0x37,
  /** KMIP 2.0. */
  NotAuthorised: 0x39,
  /** KMIP 2.0. */
  ServerLimitExceeded: 0x3a,
  /** KMIP 2.0. */
  UnsupportedCryptographicParameters: 0x3e,
  /** KMIP 2.0. */
  UnsupportedProtocolVersion: 0x3f,
  /** KMIP 2.0 (0x43: "Wrong Key Lifecycle State"). */
  WrongKeyLifecycleState: 0x43,
  GeneralFailure: 0x0100,
} as const;

/** Result Reason names, for messages. */
export const RESULT_REASON_NAMES: Readonly<Record<number, string>> = Object.fromEntries(
  Object.entries(ResultReason).map(([name, value]) => [value, name]),
);

/** State (Enumeration): the object's key lifecycle state. */
export const State = {
  PreActive: 0x01,
  Active: 0x02,
  Deactivated: 0x03,
  Compromised: 0x04,
  Destroyed: 0x05,
  DestroyedCompromised: 0x06,
} as const;

/** State names, for messages. */
export const STATE_NAMES: Readonly<Record<number, string>> = Object.fromEntries(
  Object.entries(State).map(([name, value]) => [value, name]),
);

/** Cryptographic Algorithm (Enumeration). */
export const CryptographicAlgorithm = { TripleDes: 0x02, Aes: 0x03 } as const;

/** Block Cipher Mode (Enumeration). */
export const BlockCipherMode = { Cbc: 0x01, Gcm: 0x09 } as const;

/** Padding Method (Enumeration). */
export const PaddingMethod = { None: 0x01 } as const;

/** Key Format Type (Enumeration). */
export const KeyFormatType = { Raw: 0x01, Opaque: 0x02, TransparentSymmetricKey: 0x07 } as const;

/** Secret Data Type (Enumeration). */
export const SecretDataType = { Password: 0x01, Seed: 0x02 } as const;

/** Name Type (Enumeration). */
export const NameType = { UninterpretedTextString: 0x01, Uri: 0x02 } as const;

/** Revocation Reason Code (Enumeration). */
export const RevocationReasonCode = {
  Unspecified: 0x01,
  KeyCompromise: 0x02,
  CessationOfOperation: 0x06,
} as const;

/** Batch Error Continuation Option (Enumeration). */
export const BatchErrorContinuationOption = { Continue: 0x01, Stop: 0x02, Undo: 0x03 } as const;

/** Cryptographic Usage Mask bits (Integer). */
export const UsageMask = {
  Encrypt: 0x04,
  Decrypt: 0x08,
  WrapKey: 0x10,
  UnwrapKey: 0x20,
  Export: 0x40,
} as const;
