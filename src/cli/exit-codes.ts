import {
  AccessDeniedError,
  AllWrapsFailedError,
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

/** What each exit code means, in the words of docs/cli.md (generated from this list). */
export const EXIT_CODE_MEANING: Readonly<Record<keyof typeof ExitCode, string>> = {
  ok: 'success (also `delete` of an index that has no envelope)',
  failure: 'any other failure (an interrupted `migrate-store`, keys left alone by it)',
  usage: 'usage: an unknown command or option, a missing or invalid argument or value',
  notFound: 'no envelope for the index (or an unreadable `inspect` file)',
  exists: 'the index already has an envelope (or records of an earlier creation)',
  versionConflict: 'another writer changed the envelope first (compare-and-set lost)',
  malformed: 'the envelope is malformed (structure, checksum, field rules)',
  unwrapFailed:
    'the KEK could not be unwrapped (wrong key, tampered or re-bound wrap; no wrap of a multi-wrap envelope opened)',
  kekMismatch: 'the unwrapped or supplied KEK does not match the KEK check',
  accessDenied: 'the KMS refused the call (permissions)',
  unavailable:
    'the KMS or the store is unavailable (for a multi-wrap envelope: a wrap failed for a reason that may pass): retry later',
  config: 'configuration: a slot, a secret reference, a store spec',
  missingDependency: 'an optional package the slot or store needs is not installed',
  keyNotFound: 'the KMS key (or the recipient key) was not found',
  keyDisabled: 'the KMS key is disabled or pending deletion',
};

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
  // No wrap of a multi-wrap envelope opened: retry later if any failure was transient.
  if (err instanceof AllWrapsFailedError) return err.retryable ? ExitCode.unavailable : ExitCode.unwrapFailed;
  for (const [cls, code] of byClass) if (err instanceof cls) return code;
  return ExitCode.failure;
}
