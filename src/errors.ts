/**
 * Typed errors. Every error thrown by kms-envelope is a {@link KmsEnvelopeError} with a stable
 * `code` that callers can switch on. Messages are for people: they name the index, slot and
 * provider involved and never contain key material in any encoding. The underlying error, where
 * there is one, travels as `cause`.
 *
 * @module
 */

/** Context that an error message may name. None of it is secret. */
export interface ErrorContext {
  /** The index the operation was about. */
  index?: string;
  /** The KMS slot (`kms_name`) involved. */
  slot?: string;
  /** The provider id involved (`local`, `aws-kms`, ...). */
  provider?: string;
  /** The underlying error, kept for debugging. Must not carry key bytes. */
  cause?: unknown;
  /** For retryable errors: how long the service asked callers to wait (retry-after), in ms. */
  retryAfterMs?: number;
}

/** The stable codes of every error class, for `switch (err.code)`. */
export const ErrorCode = {
  /** `KmsEnvelopeError` itself: a failure no more specific class describes. */
  base: 'KMS_ENVELOPE_ERROR',
  /** `EnvelopeNotFoundError`: no envelope is stored for the index. */
  notFound: 'KMS_ENVELOPE_NOT_FOUND',
  /** `EnvelopeExistsError`: a strict create found an envelope already stored. */
  exists: 'KMS_ENVELOPE_EXISTS',
  /** `VersionConflictError`: a compare-and-set found another version (or creation). */
  versionConflict: 'KMS_ENVELOPE_VERSION_CONFLICT',
  /** `MalformedEnvelopeError`: stored bytes are not a valid KMSBlob. */
  malformed: 'KMS_ENVELOPE_MALFORMED',
  /** `ProviderUnavailableError` and `CircuitOpenError`: the KMS could not be used now (retryable). */
  unavailable: 'KMS_ENVELOPE_UNAVAILABLE',
  /** `StoreUnavailableError` (and `ReplicasNotConfirmedError`): the store could not be reached (retryable). */
  storeUnavailable: 'KMS_ENVELOPE_STORE_UNAVAILABLE',
  /** `AccessDeniedError`: the KMS or store refused the credentials or permissions. */
  accessDenied: 'KMS_ENVELOPE_ACCESS_DENIED',
  /** `UnwrapFailedError`: wrong key, tampered envelope, or another binding. */
  unwrapFailed: 'KMS_ENVELOPE_UNWRAP_FAILED',
  /** `KekMismatchError`: a KEK does not match the envelope's KEK check value. */
  kekMismatch: 'KMS_ENVELOPE_KEK_MISMATCH',
  /** `InvalidArgumentError`: an argument or option is not acceptable. */
  invalidArgument: 'KMS_ENVELOPE_INVALID_ARGUMENT',
  /** `ConfigError`: a slot or configuration file is incomplete or inconsistent. */
  config: 'KMS_ENVELOPE_CONFIG',
  /** `MissingDependencyError`: an optional peer dependency is not installed. */
  missingDependency: 'KMS_ENVELOPE_MISSING_DEPENDENCY',
  /** `MalformedTokenError`: a DEK wire-format token is not well formed. */
  malformedToken: 'KMS_ENVELOPE_MALFORMED_TOKEN',
  /** `UnsupportedAlgorithmError`: an algorithm id (or KMS mode) that is not supported. */
  unsupportedAlgorithm: 'KMS_ENVELOPE_UNSUPPORTED_ALGORITHM',
  /** `InvalidKeyIdError`: a key id is not a UUID. */
  invalidKeyId: 'KMS_ENVELOPE_INVALID_KEY_ID',
  /** `UnknownKeyError`: a token names a key id that no key context knows. */
  unknownKey: 'KMS_ENVELOPE_UNKNOWN_KEY',
  /** `DecryptFailedError`: a well-formed token does not decrypt. */
  decryptFailed: 'KMS_ENVELOPE_DECRYPT_FAILED',
  /** `ContextBindingError`: a token's context binding and the caller's context disagree. */
  contextBinding: 'KMS_ENVELOPE_CONTEXT_BINDING',
  /** `NonceLimitError`: a key reached its limit of random-nonce encryptions. */
  nonceLimit: 'KMS_ENVELOPE_NONCE_LIMIT',
  /** `ThrottledError`: the KMS throttled the call (retryable). */
  throttled: 'KMS_ENVELOPE_THROTTLED',
  /** `DeadlineExceededError`: a KMS call missed its deadline or was aborted (retryable). */
  deadlineExceeded: 'KMS_ENVELOPE_DEADLINE_EXCEEDED',
  /** `KeyNotFoundError`: the KMS key or secret the slot names does not exist (or is not visible). */
  keyNotFound: 'KMS_ENVELOPE_KEY_NOT_FOUND',
  /** `KeyDisabledError`: the KMS key is disabled, pending deletion or otherwise unusable. */
  keyDisabled: 'KMS_ENVELOPE_KEY_DISABLED',
  /** `IntegrityError`: a KMS answer failed its integrity check in transit (retryable). */
  integrity: 'KMS_ENVELOPE_INTEGRITY',
  /** `SlotNotAllowedError`: the envelope's slot may not serve the index (or unwraps only offline). */
  slotNotAllowed: 'KMS_ENVELOPE_SLOT_NOT_ALLOWED',
  /** `RollbackError`: an envelope older than one already seen (or than `minVersion`). */
  rollback: 'KMS_ENVELOPE_ROLLBACK',
  /** `WeakKdfParamsError`: stored passphrase-KDF parameters are too weak or too costly. */
  weakKdf: 'KMS_ENVELOPE_WEAK_KDF',
  /** `AllWrapsFailedError`: none of a multi-wrap envelope's wraps (or not enough shares) unwrapped. */
  allWrapsFailed: 'KMS_ENVELOPE_ALL_WRAPS_FAILED',
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

function describe(message: string, ctx: ErrorContext): string {
  const where = [
    ctx.index !== undefined ? `index "${ctx.index}"` : undefined,
    ctx.slot !== undefined ? `slot "${ctx.slot}"` : undefined,
    ctx.provider !== undefined ? `provider "${ctx.provider}"` : undefined,
  ].filter((part) => part !== undefined);
  return where.length > 0 ? `${message} (${where.join(', ')})` : message;
}

/** Base class of every kms-envelope error. */
export class KmsEnvelopeError extends Error {
  /** Stable machine-readable code. */
  readonly code: ErrorCode = ErrorCode.base;
  /** True when the same call may succeed if tried again later (a service was unavailable). */
  readonly retryable: boolean = false;
  /** The index the failed operation was about, when there was one. */
  readonly index: string | undefined;
  /** The KMS slot (`kms_name`) involved, when there was one. */
  readonly slot: string | undefined;
  /** The provider id involved (`local`, `aws-kms`, ...), when there was one. */
  readonly provider: string | undefined;
  /** The message without the index/slot/provider suffix. */
  readonly detail: string;

  constructor(message: string, ctx: ErrorContext = {}) {
    super(describe(message, ctx), ctx.cause === undefined ? undefined : { cause: ctx.cause });
    this.name = new.target.name;
    this.detail = message;
    this.index = ctx.index;
    this.slot = ctx.slot;
    this.provider = ctx.provider;
  }
}

/** No envelope is stored for the index. */
export class EnvelopeNotFoundError extends KmsEnvelopeError {
  override readonly code = ErrorCode.notFound;
}

/** A strict create found an envelope already stored for the index. */
export class EnvelopeExistsError extends KmsEnvelopeError {
  override readonly code = ErrorCode.exists;
}

/** A compare-and-set push found another version than the one expected. */
export class VersionConflictError extends KmsEnvelopeError {
  override readonly code = ErrorCode.versionConflict;
  /** The version the caller expected. */
  readonly expectedVersion: number;
  /** The version found, or `undefined` when no envelope was stored. */
  readonly actualVersion: number | undefined;
  /**
   * True when the stored envelope has the expected version but another creation id: the index
   * was deleted and created again since the caller read it.
   */
  readonly recreated: boolean;
  constructor(
    expectedVersion: number,
    actualVersion: number | undefined,
    ctx: ErrorContext = {},
    recreated = false,
  ) {
    super(
      `version conflict: expected version ${expectedVersion}, found ${
        actualVersion === undefined
          ? 'no envelope'
          : recreated
            ? `version ${actualVersion} of an envelope created again since`
            : `version ${actualVersion}`
      }`,
      ctx,
    );
    this.expectedVersion = expectedVersion;
    this.actualVersion = actualVersion;
    this.recreated = recreated;
  }
}

/** Bytes that should hold a KMSBlob do not: truncated, corrupted, foreign or out of range. */
export class MalformedEnvelopeError extends KmsEnvelopeError {
  override readonly code = ErrorCode.malformed;
}

/** A KMS could not be reached, throttled the call, or answered too late. Retryable. */
export class ProviderUnavailableError extends KmsEnvelopeError {
  override readonly code: ErrorCode = ErrorCode.unavailable;
  override readonly retryable = true;
  /** How long the service asked callers to wait before retrying, when it said (retry-after). */
  readonly retryAfterMs: number | undefined;
  constructor(message: string, ctx: ErrorContext = {}) {
    super(message, ctx);
    this.retryAfterMs = ctx.retryAfterMs;
  }
}

/** The circuit breaker of a KMS slot is open after repeated failures: failing fast. Retryable later. */
export class CircuitOpenError extends ProviderUnavailableError {}

/** The KMS throttled the call (rate limit, quota). Retryable, after `retryAfterMs` when given. */
export class ThrottledError extends ProviderUnavailableError {
  override readonly code = ErrorCode.throttled;
}

/** A KMS call did not finish within its deadline (or the caller aborted it). Retryable. */
export class DeadlineExceededError extends ProviderUnavailableError {
  override readonly code = ErrorCode.deadlineExceeded;
}

/**
 * A KMS answer failed its integrity check in transit (e.g. a Cloud KMS CRC32C that does not
 * match): the response was discarded. Retryable: the next call may arrive intact.
 */
export class IntegrityError extends KmsEnvelopeError {
  override readonly code = ErrorCode.integrity;
  override readonly retryable = true;
}

/** The KMS key (or secret) the slot names does not exist, or the caller may not know it does. */
export class KeyNotFoundError extends KmsEnvelopeError {
  override readonly code = ErrorCode.keyNotFound;
}

/** The KMS key is disabled, pending deletion or otherwise not usable in its present state. */
export class KeyDisabledError extends KmsEnvelopeError {
  override readonly code = ErrorCode.keyDisabled;
}

/** The envelope store (Redis, a disk that refuses writes) could not be reached. Retryable. */
export class StoreUnavailableError extends KmsEnvelopeError {
  override readonly code = ErrorCode.storeUnavailable;
  override readonly retryable = true;
}

/** The KMS or store refused the credentials or permissions used. */
export class AccessDeniedError extends KmsEnvelopeError {
  override readonly code = ErrorCode.accessDenied;
}

/**
 * The wrapped KEK could not be unwrapped: wrong key, tampered envelope, or an envelope bound to
 * another index or slot. Says little on purpose.
 */
export class UnwrapFailedError extends KmsEnvelopeError {
  override readonly code: ErrorCode = ErrorCode.unwrapFailed;
}

/**
 * The stored envelope names a KMS slot that the reader's configuration does not allow for the
 * index (a slot's `indexes` patterns, or a public-key slot without `allowPublicKeyWrap`). Refused
 * before any KMS call: which slots may serve an index is the reader's decision, never the store's.
 */
export class SlotNotAllowedError extends UnwrapFailedError {
  override readonly code = ErrorCode.slotNotAllowed;
}

/**
 * The stored envelope is older than one this client has already seen for the index (same
 * creation, lower version) or than the caller's `minVersion`: an old envelope replayed into the
 * store. Refused before any KMS call.
 */
export class RollbackError extends UnwrapFailedError {
  override readonly code = ErrorCode.rollback;
}

/** A KEK (unwrapped or supplied by the caller) does not match the envelope's KEK check value. */
export class KekMismatchError extends UnwrapFailedError {
  override readonly code = ErrorCode.kekMismatch;
}

/** An argument (index name, slot name, blob field, option) is not acceptable. */
export class InvalidArgumentError extends KmsEnvelopeError {
  override readonly code = ErrorCode.invalidArgument;
}

/** A KMS slot or configuration file is incomplete or inconsistent. */
export class ConfigError extends KmsEnvelopeError {
  override readonly code = ErrorCode.config;
}

/** An optional peer dependency needed by the chosen store or provider is not installed. */
export class MissingDependencyError extends KmsEnvelopeError {
  override readonly code = ErrorCode.missingDependency;
  /** The npm package to install. */
  readonly packageName: string;
  constructor(packageName: string, usedBy: string, cause?: unknown) {
    super(`${usedBy} needs the optional package "${packageName}": npm install ${packageName}`, { cause });
    this.packageName = packageName;
  }
}

/** A DEK wire-format token (`$alg$keyid$params$blob`) is not well formed. */
export class MalformedTokenError extends KmsEnvelopeError {
  override readonly code = ErrorCode.malformedToken;
}

/** A token or call names an algorithm id that is not registered. */
export class UnsupportedAlgorithmError extends KmsEnvelopeError {
  override readonly code = ErrorCode.unsupportedAlgorithm;
}

/** A key id is not a UUID (integer ids of older schemes must be migrated to UUIDs). */
export class InvalidKeyIdError extends KmsEnvelopeError {
  override readonly code = ErrorCode.invalidKeyId;
}

/** A token names a key id that no key context or resolver knows, or another key than given. */
export class UnknownKeyError extends KmsEnvelopeError {
  override readonly code = ErrorCode.unknownKey;
  /** The key id the token names. */
  readonly keyId: string;
  constructor(keyId: string, message: string, ctx: ErrorContext = {}) {
    super(message, ctx);
    this.keyId = keyId;
  }
}

/** A well-formed token does not decrypt: wrong key, wrong context, or tampered bytes. */
export class DecryptFailedError extends KmsEnvelopeError {
  override readonly code = ErrorCode.decryptFailed;
}

/** A token's context binding and the caller's context disagree (one bound, the other not). */
export class ContextBindingError extends KmsEnvelopeError {
  override readonly code = ErrorCode.contextBinding;
}

/**
 * A key reached the NIST SP 800-38D limit of 2^32 encryptions with random 96-bit nonces:
 * rotate to a new DEK.
 */
export class NonceLimitError extends KmsEnvelopeError {
  override readonly code = ErrorCode.nonceLimit;
}

/**
 * Stored passphrase-KDF parameters are weaker than the floor this library reads (too few PBKDF2
 * iterations, a short salt), or so costly that deriving would stall the process: the KEK is not
 * derived. Not retryable: the parameters must be replaced (re-key the index).
 */
export class WeakKdfParamsError extends KmsEnvelopeError {
  override readonly code = ErrorCode.weakKdf;
}

/** Why one wrap of a multi-wrap envelope did not serve an unwrap: its slot and its typed error. */
export interface WrapFailure {
  /** The slot (`kms_name`) of the wrap. */
  readonly slot: string;
  /** The error of that wrap: the KMS's, a `SlotNotAllowedError` or `CircuitOpenError` for a
   * wrap that was skipped, a `KekMismatchError` for a wrap (or share) that did not match the
   * envelope's KEK check, a `DeadlineExceededError` for one the deadline left untried. */
  readonly error: KmsEnvelopeError;
}

/**
 * No wrap of a multi-wrap envelope could unwrap the KEK (or, for a threshold envelope, fewer than
 * the needed shares could): `failures` says, per slot, what its typed error was, in the order the
 * wraps were tried. Retryable when any failure is (a KMS that was down may be back). Neither the
 * message nor a failure carries key material.
 */
export class AllWrapsFailedError extends KmsEnvelopeError {
  override readonly code = ErrorCode.allWrapsFailed;
  override readonly retryable: boolean;
  /** Each wrap's failure, in the order they were tried (skipped ones included). */
  readonly failures: readonly WrapFailure[];
  constructor(message: string, failures: readonly WrapFailure[], ctx: ErrorContext = {}) {
    const each = failures.map((f) => `${f.slot}: ${f.error.code} (${f.error.detail})`).join('; ');
    super(`${message}${each === '' ? '' : `: ${each}`}`, ctx);
    this.failures = failures;
    this.retryable = failures.some((f) => f.error.retryable);
  }
}
