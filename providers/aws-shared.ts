/**
 * What the two AWS providers (`aws`, `aws-kms`) share: the SDK client configuration of a slot
 * (region, endpoint, credentials, cross-account BYOK by STS AssumeRole) and the mapping of AWS
 * errors onto kms-envelope's typed errors.
 *
 * Slot settings used here: `region`, `endpoint` (LocalStack, moto, a proxy), `role_arn` +
 * `external_id` (+ `role_session_name`), and in `options`: `credentials` (an
 * `AwsCredentialIdentity` or a credential provider; the base credentials when a role is assumed),
 * `stsEndpoint` (defaults to `endpoint`), `roleDurationSeconds`, `clientConfig` (merged into the
 * SDK client's config), `client` (a ready SDK client: everything else is then ignored) or
 * `clientFactory(config)`.
 *
 * @module
 */
import {
  AccessDeniedError,
  ConfigError,
  DeadlineExceededError,
  type ErrorContext,
  KeyDisabledError,
  KeyNotFoundError,
  KmsEnvelopeError,
  ProviderUnavailableError,
  ThrottledError,
  UnwrapFailedError,
} from '../src/errors.js';
import type { KmsSlot } from '../src/providers/slot.js';
import { importOptional, isAbort, parseRetryAfter } from '../src/providers/support.js';

/** AWS credentials, or a function that provides (and refreshes) them. */
export type AwsCredentials =
  | { readonly accessKeyId: string; readonly secretAccessKey: string; readonly sessionToken?: string }
  | (() => Promise<{ accessKeyId: string; secretAccessKey: string; sessionToken?: string }>);

/** The configuration an AWS SDK v3 client is built with. */
export interface AwsClientConfig {
  region?: string;
  endpoint?: string;
  credentials?: AwsCredentials;
  /** 1 by default: kms-envelope retries retryable errors itself, with its own deadline. */
  maxAttempts: number;
  [key: string]: unknown;
}

/** Default session name of an assumed role. */
export const DEFAULT_ROLE_SESSION_NAME = 'kms-envelope';

function option<T>(slot: KmsSlot, name: string): T | undefined {
  return slot.options?.[name] as T | undefined;
}

/**
 * The SDK client config of `slot`. With `roleArn`, credentials come from STS AssumeRole (with
 * the slot's `externalId` and `roleSessionName`) through `@aws-sdk/credential-providers`'
 * `fromTemporaryCredentials`, which refreshes them before they expire.
 * @throws ConfigError; MissingDependencyError when a role is set and the package is missing.
 */
export async function awsClientConfig(slot: KmsSlot, providerId: string): Promise<AwsClientConfig> {
  const base = option<AwsCredentials>(slot, 'credentials');
  const config: AwsClientConfig = {
    maxAttempts: 1,
    ...(slot.region ? { region: slot.region } : {}),
    ...(slot.endpoint ? { endpoint: slot.endpoint } : {}),
    ...(base ? { credentials: base } : {}),
  };
  if (slot.roleArn) {
    if (!slot.externalId) {
      throw new ConfigError('"external_id" is required when "role_arn" is set', {
        slot: slot.name,
        provider: providerId,
      });
    }
    const { fromTemporaryCredentials } = await importOptional(
      '@aws-sdk/credential-providers',
      `provider "${providerId}" with role_arn`,
      () => import('@aws-sdk/credential-providers'),
    );
    const stsEndpoint = option<string>(slot, 'stsEndpoint') ?? slot.endpoint;
    const duration = option<number>(slot, 'roleDurationSeconds');
    config.credentials = fromTemporaryCredentials({
      ...(base ? { masterCredentials: base } : {}),
      params: {
        RoleArn: slot.roleArn,
        ExternalId: slot.externalId,
        RoleSessionName: slot.roleSessionName || DEFAULT_ROLE_SESSION_NAME,
        ...(duration ? { DurationSeconds: duration } : {}),
      },
      clientConfig: {
        maxAttempts: 2,
        ...(slot.region ? { region: slot.region } : {}),
        ...(stsEndpoint ? { endpoint: stsEndpoint } : {}),
      },
    });
  }
  Object.assign(config, option<Record<string, unknown>>(slot, 'clientConfig') ?? {});
  return config;
}

/**
 * A ready client from the slot's `options.client`, or one made by `options.clientFactory` or
 * `build` from {@link awsClientConfig}.
 */
export async function awsClientOf<C>(
  slot: KmsSlot,
  providerId: string,
  build: (config: AwsClientConfig) => C,
): Promise<{ client: C; owned: boolean }> {
  const ready = option<C>(slot, 'client');
  if (ready !== undefined) return { client: ready, owned: false };
  const config = await awsClientConfig(slot, providerId);
  const factory = option<(config: AwsClientConfig) => C>(slot, 'clientFactory');
  return { client: (factory ?? build)(config), owned: true };
}

const ACCESS_DENIED = new Set([
  'AccessDeniedException',
  'AccessDenied',
  'UnrecognizedClientException',
  'InvalidSignatureException',
  'InvalidClientTokenId',
  'SignatureDoesNotMatch',
  'ExpiredTokenException',
  'ExpiredToken',
  'IncompleteSignature',
  'MissingAuthenticationToken',
  'CredentialsProviderError',
  'RegionDisabledException',
  // Secrets Manager could not decrypt the secret with its KMS key: a KMS permission (or key state).
  'DecryptionFailure',
]);
const NOT_FOUND = new Set(['NotFoundException', 'ResourceNotFoundException']);
const DISABLED = new Set(['DisabledException', 'KMSInvalidStateException']);
const THROTTLED = new Set([
  'ThrottlingException',
  'Throttling',
  'TooManyRequestsException',
  'RequestLimitExceeded',
  'PriorRequestNotComplete',
]);
const UNWRAP_FAILED = new Set([
  'InvalidCiphertextException',
  'IncorrectKeyException',
  'InvalidKeyUsageException',
  'KMSInvalidMacException',
]);
const UNAVAILABLE = new Set([
  'DependencyTimeoutException',
  'KMSInternalException',
  'KeyUnavailableException',
  'InternalServiceError',
  'InternalFailure',
  'ServiceUnavailable',
  'ServiceUnavailableException',
  'RequestTimeout',
  'RequestTimeoutException',
  'TimeoutError',
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ECONNABORTED',
  'EHOSTUNREACH',
  'ENETUNREACH',
]);

/** A message Secrets Manager gives for a secret scheduled for deletion (InvalidRequestException). */
const MARKED_FOR_DELETION = /marked for deletion|scheduled for deletion|deleted/i;

/**
 * Maps an error from an AWS SDK v3 call (or its credential provider) onto a typed error that
 * names the index, slot and provider and keeps the SDK error as `cause`. The SDK's message is
 * repeated (it names operations and resources, never key bytes).
 */
export function mapAwsError(err: unknown, where: ErrorContext, signal?: AbortSignal): KmsEnvelopeError {
  if (err instanceof KmsEnvelopeError) return err;
  const e = err as {
    name?: string;
    code?: string;
    message?: string;
    $metadata?: { httpStatusCode?: number };
    $response?: { headers?: Record<string, string> };
    $retryable?: { throttling?: boolean };
  } | null;
  const name = e?.name ?? '';
  const code = e?.code ?? '';
  const status = e?.$metadata?.httpStatusCode;
  const said = e?.message ? `: ${e.message}` : '';
  const ctx = { ...where, cause: err };
  if (isAbort(err, signal)) return new DeadlineExceededError('the AWS call was aborted at its deadline', ctx);
  if (name === 'CredentialsProviderError') {
    return new AccessDeniedError(
      `no usable AWS credentials (environment, profile, SSO, role or instance metadata)${said}`,
      ctx,
    );
  }
  if (ACCESS_DENIED.has(name) || ACCESS_DENIED.has(code) || status === 403) {
    return new AccessDeniedError(
      `AWS refused the credentials or permissions (${name || status})${said}`,
      ctx,
    );
  }
  if (NOT_FOUND.has(name))
    return new KeyNotFoundError(`the AWS key or secret was not found (${name})${said}`, ctx);
  if (
    DISABLED.has(name) ||
    (name === 'InvalidRequestException' && MARKED_FOR_DELETION.test(e?.message ?? ''))
  ) {
    return new KeyDisabledError(
      `the AWS key or secret is disabled or pending deletion (${name})${said}`,
      ctx,
    );
  }
  if (THROTTLED.has(name) || e?.$retryable?.throttling === true || status === 429) {
    const retryAfterMs = parseRetryAfter(e?.$response?.headers?.['retry-after']);
    return new ThrottledError(`AWS throttled the call (${name || status})${said}`, {
      ...ctx,
      ...(retryAfterMs !== undefined ? { retryAfterMs } : {}),
    });
  }
  if (UNWRAP_FAILED.has(name)) return new UnwrapFailedError(`AWS could not unwrap the KEK (${name})`, ctx);
  if (!status && /region is missing|invalid (endpoint|url)/i.test(e?.message ?? '')) {
    return new ConfigError(`the AWS client is misconfigured${said}`, ctx);
  }
  if (UNAVAILABLE.has(name) || UNAVAILABLE.has(code) || (status !== undefined && status >= 500)) {
    return new ProviderUnavailableError(`AWS is unavailable (${name || code || status})${said}`, ctx);
  }
  return new KmsEnvelopeError(`AWS refused the call (${name || status})${said}`, ctx);
}
