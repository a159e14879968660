import {
  AccessDeniedError,
  ConfigError,
  EnvelopeExistsError,
  EnvelopeNotFoundError,
  IntegrityError,
  InvalidArgumentError,
  KekMismatchError,
  KeyDisabledError,
  KeyNotFoundError,
  type KmsEnvelopeError,
  MalformedEnvelopeError,
  MissingDependencyError,
  ProviderUnavailableError,
  StoreUnavailableError,
  UnwrapFailedError,
  VersionConflictError,
} from '../errors.js';

/** Exit codes of the `kms-envelope` CLI, one per error class (documented in the README). */
export const ExitCode = {
  ok: 0,
  failure: 1,
  usage: 2,
  notFound: 3,
  exists: 4,
  versionConflict: 5,
  malformed: 6,
  unwrapFailed: 7,
  kekMismatch: 8,
  accessDenied: 9,
  unavailable: 10,
  config: 11,
  missingDependency: 12,
  keyNotFound: 13,
  keyDisabled: 14,
} as const;

// Most specific first: KekMismatchError is an UnwrapFailedError.
const byClass: [abstract new (...args: never[]) => KmsEnvelopeError, number][] = [
  [EnvelopeNotFoundError, ExitCode.notFound],
  [EnvelopeExistsError, ExitCode.exists],
  [VersionConflictError, ExitCode.versionConflict],
  [MalformedEnvelopeError, ExitCode.malformed],
  [KekMismatchError, ExitCode.kekMismatch],
  [UnwrapFailedError, ExitCode.unwrapFailed],
  [AccessDeniedError, ExitCode.accessDenied],
  [KeyNotFoundError, ExitCode.keyNotFound],
  [KeyDisabledError, ExitCode.keyDisabled],
  [ProviderUnavailableError, ExitCode.unavailable],
  [IntegrityError, ExitCode.unavailable],
  [StoreUnavailableError, ExitCode.unavailable],
  [ConfigError, ExitCode.config],
  [MissingDependencyError, ExitCode.missingDependency],
  [InvalidArgumentError, ExitCode.usage],
];

/** The exit code for an error thrown by a command. */
export function exitCodeFor(err: unknown): number {
  for (const [cls, code] of byClass) if (err instanceof cls) return code;
  return ExitCode.failure;
}
