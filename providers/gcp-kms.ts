/**
 * Provider `gcp-kms`: Cloud KMS `Encrypt` / `Decrypt` under a symmetric CryptoKey
 * (`@google-cloud/kms`, an optional peer dependency loaded on first use).
 *
 * - Binding: the additional authenticated data is `bindingBytes(context, 'gcp-kms')` (index,
 *   slot and the envelope's encryption context), so an envelope moved to another index or slot,
 *   or with another context, fails to decrypt.
 * - Integrity (Cloud KMS "verifying end-to-end data integrity"): Encrypt sends the CRC32C of the
 *   plaintext and of the AAD and requires `verifiedPlaintextCrc32c`,
 *   `verifiedAdditionalAuthenticatedDataCrc32c` and a matching `ciphertextCrc32c`; Decrypt sends
 *   the CRC32C of the ciphertext and of the AAD and requires a matching `plaintextCrc32c`. Any
 *   mismatch is an `IntegrityError` (retryable) and a returned plaintext is wiped.
 * - `key_id` records the CryptoKeyVersion that encrypted (`EncryptResponse.name`), `region` its
 *   location. Decrypt goes to that version's CryptoKey, which must be the slot's CryptoKey.
 * - Deadlines: every call gets a gRPC `timeout` and no gax retries (kms-envelope retries
 *   itself); `context.signal` cancels the call on the wire.
 *
 * Security: `@google-cloud/kms` logs whole requests and responses when `GOOGLE_SDK_NODE_LOGGING`
 * enables its `kms` logger, which would write the plaintext KEK to the log: providers refuse to
 * start while it could, by the logging library's own matching (google-logging-utils: a comma list
 * of case-insensitive `*` wildcards, `all`; e.g. `kms`, `KMS`, `k*`, `*`, `all`, `pubsub,kms`),
 * checked with a copy of that matching and with the installed library's matcher. A client whose
 * `kms` logger is live because code set a logging backend (`loggingUtils.setBackend`) is refused
 * too. Checked when a provider is created and when it builds its client, not afterwards.
 *
 * @module
 */
import { createRequire } from 'node:module';
import { crc32c } from '../src/envelope/checksum.js';
import {
  AccessDeniedError,
  ConfigError,
  DeadlineExceededError,
  type ErrorContext,
  IntegrityError,
  InvalidArgumentError,
  KeyDisabledError,
  KeyNotFoundError,
  KmsEnvelopeError,
  ProviderUnavailableError,
  ThrottledError,
  UnwrapFailedError,
} from '../src/errors.js';
import type { Kek } from '../src/keys/kek.js';
import type {
  KmsProvider,
  ProviderPlugin,
  UnwrapContext,
  WrapContext,
  WrappedKek,
} from '../src/providers/provider.js';
import type { KmsSlot } from '../src/providers/slot.js';
import {
  bindingBytes,
  importOptional,
  isAbort,
  kekFromPlaintext,
  throwIfAborted,
  whereOf,
} from '../src/providers/support.js';

/** Provider id. */
export const id = 'gcp-kms';

/** Default gRPC deadline of one Encrypt or Decrypt call, in milliseconds. */
export const DEFAULT_CALL_TIMEOUT_MS = 10_000;

const CRYPTO_KEY_NAME = /^projects\/([^/]+)\/locations\/([^/]+)\/keyRings\/[^/]+\/cryptoKeys\/[^/]+$/;
const CRYPTO_KEY_VERSION_NAME =
  /^(projects\/[^/]+\/locations\/([^/]+)\/keyRings\/[^/]+\/cryptoKeys\/[^/]+)\/cryptoKeyVersions\/\d+$/;

/** A protobuf `Int64Value` as the SDK gives it (a string over gRPC, a number or Long elsewhere). */
export interface GcpInt64Value {
  /** The number, as protobuf.js gives an int64: a number, a decimal string or a Long. */
  value?:
    | number
    | string
    | {
        /** The decimal digits (a protobuf.js `Long`). */
        toString(): string;
      }
    | null;
}

/** The fields of `EncryptRequest` this provider sends. */
export interface GcpEncryptRequest {
  /** The CryptoKey (Cloud KMS picks its primary version). */
  name: string;
  /** The KEK. */
  plaintext: Uint8Array;
  /** The envelope binding. */
  additionalAuthenticatedData: Uint8Array;
  /** CRC32C of {@link plaintext}, which the service verifies. */
  plaintextCrc32c: {
    /** The checksum. */
    value: number;
  };
  /** CRC32C of {@link additionalAuthenticatedData}, which the service verifies. */
  additionalAuthenticatedDataCrc32c: {
    /** The checksum. */
    value: number;
  };
}

/** The fields of `EncryptResponse` this provider reads. */
export interface GcpEncryptResponse {
  /** The CryptoKeyVersion that encrypted (recorded as `key_id`). */
  name?: string | null;
  /** The wrapped KEK. */
  ciphertext?: Uint8Array | string | null;
  /** CRC32C of {@link ciphertext}, checked by the provider. */
  ciphertextCrc32c?: GcpInt64Value | null;
  /** Whether the service checked the request's plaintext CRC32C (the provider requires it). */
  verifiedPlaintextCrc32c?: boolean | null;
  /** Whether the service checked the request's AAD CRC32C (the provider requires it). */
  verifiedAdditionalAuthenticatedDataCrc32c?: boolean | null;
}

/** The fields of `DecryptRequest` this provider sends. */
export interface GcpDecryptRequest {
  /** The CryptoKey (the ciphertext names its version). */
  name: string;
  /** The wrapped KEK. */
  ciphertext: Uint8Array;
  /** The envelope binding, as at encrypt time. */
  additionalAuthenticatedData: Uint8Array;
  /** CRC32C of {@link ciphertext}, which the service verifies. */
  ciphertextCrc32c: {
    /** The checksum. */
    value: number;
  };
  /** CRC32C of {@link additionalAuthenticatedData}, which the service verifies. */
  additionalAuthenticatedDataCrc32c: {
    /** The checksum. */
    value: number;
  };
}

/** The fields of `DecryptResponse` this provider reads. */
export interface GcpDecryptResponse {
  /** The KEK. */
  plaintext?: Uint8Array | string | null;
  /** CRC32C of {@link plaintext}, checked by the provider. */
  plaintextCrc32c?: GcpInt64Value | null;
}

/** The gax call options this provider passes. */
export interface GcpCallOptions {
  /** gRPC deadline of the call. */
  timeout: number;
  /** `null`: gax does not retry (kms-envelope does). */
  retry: null;
  /** gRPC call options: an interceptor that cancels the call when the caller's signal aborts. */
  otherArgs?: {
    /** gRPC call options. */
    options: {
      /** gRPC client interceptors. */
      interceptors: unknown[];
    };
  };
}

/**
 * The part of `KeyManagementServiceClient` (`@google-cloud/kms` v5) this provider uses; a real
 * client is one. Typed structurally so tests and wrappers can hand in their own.
 */
export interface GcpKmsClient {
  /** `KeyManagementService.Encrypt`. */
  encrypt(request: GcpEncryptRequest, options?: GcpCallOptions): Promise<[GcpEncryptResponse, ...unknown[]]>;
  /** `KeyManagementService.Decrypt`. */
  decrypt(request: GcpDecryptRequest, options?: GcpCallOptions): Promise<[GcpDecryptResponse, ...unknown[]]>;
  /** Closes the client's channels (called only for a client the provider built). */
  close?(): Promise<void>;
}

/** Options of {@link createGcpKmsProvider}. */
export interface GcpKmsProviderOptions {
  /** The CryptoKey: `projects/P/locations/L/keyRings/R/cryptoKeys/K` (purpose ENCRYPT_DECRYPT). */
  readonly keyName: string;
  /**
   * A ready client (e.g. `new KeyManagementServiceClient(...)`); the caller closes it. Without
   * one, the provider builds a client from {@link clientOptions} on first use and closes it.
   */
  readonly client?: GcpKmsClient;
  /**
   * Options for the client the provider builds. Without `credentials`, `keyFilename` or `sslCreds`
   * it authenticates with Application Default Credentials.
   */
  readonly clientOptions?: Readonly<Record<string, unknown>>;
  /** gRPC deadline of each call (default {@link DEFAULT_CALL_TIMEOUT_MS}). */
  readonly callTimeoutMs?: number;
}

/** The parts of a CryptoKey resource name. */
interface CryptoKeyName {
  readonly name: string;
  readonly project: string;
  readonly location: string;
}

function parseCryptoKeyName(name: unknown, where: ErrorContext): CryptoKeyName {
  const match = typeof name === 'string' ? CRYPTO_KEY_NAME.exec(name) : null;
  if (match === null) {
    throw new ConfigError(
      'provider "gcp-kms" needs a CryptoKey name "projects/P/locations/L/keyRings/R/cryptoKeys/K" as key_id',
      where,
    );
  }
  return { name: name as string, project: match[1]!, location: match[2]! };
}

/** The logger namespaces of `@google-cloud/kms` (`loggingUtils.log('kms')`, and sub-loggers). */
const SDK_LOGGER_NAMESPACES = ['kms', 'kms:sub'];

/**
 * The `enabledRegexp` that google-logging-utils (the logger google-gax gives `@google-cloud/kms`)
 * builds from `GOOGLE_SDK_NODE_LOGGING` in its Node backend (1.1.3, `NodeBackend.setFilters`): the
 * value split on `,`, regular-expression characters escaped, `*` any run of characters, each item
 * matching a whole namespace, case-insensitively.
 */
function sdkFilterRegExp(items: readonly string[]): RegExp {
  const body = items
    .join(',')
    .replace(/[|\\{}()[\]^$+?.]/g, '\\$&')
    .replace(/\*/g, '.*')
    .replace(/,/g, '$|^');
  return new RegExp(`^${body}$`, 'i');
}

/**
 * True when `value`, as `GOOGLE_SDK_NODE_LOGGING`, could make `@google-cloud/kms` log: the
 * logging library's own matching (google-logging-utils: unset or empty disables logging, the whole
 * value `all` means `*`, a comma list of case-insensitive `*` wildcards, no negation), made more
 * cautious in two ways another backend or version might differ in: items are also tried with
 * surrounding whitespace removed, and `all` in any case and anywhere in the list counts as `*`.
 */
export function sdkLoggingEnablesKms(value: string | undefined): boolean {
  if (value === undefined || value === '') return false;
  const items = value === 'all' ? ['*'] : value.split(',');
  const cautious = items.map((item) => (item.trim().toLowerCase() === 'all' ? '*' : item.trim()));
  return [sdkFilterRegExp(items), sdkFilterRegExp(cautious)].some((filter) =>
    SDK_LOGGER_NAMESPACES.some((namespace) => filter.test(namespace)),
  );
}

/** google-logging-utils' Node backend, as far as this check uses it. */
interface SdkLogBackend {
  setFilters?(): void;
  isEnabled?(namespace: string): boolean;
}

let sdkLoggingUtils: { getNodeBackend?: () => SdkLogBackend } | null | undefined;

/**
 * The google-logging-utils that the installed `@google-cloud/kms` uses (through its google-gax),
 * or null when it cannot be found (the SDK not installed: only a caller's client is used).
 */
function installedSdkLoggingUtils(): { getNodeBackend?: () => SdkLogBackend } | null {
  if (sdkLoggingUtils === undefined) {
    try {
      const kms = createRequire(import.meta.url).resolve('@google-cloud/kms');
      const gax = createRequire(kms).resolve('google-gax');
      sdkLoggingUtils = createRequire(gax)('google-logging-utils') as typeof sdkLoggingUtils;
    } catch {
      sdkLoggingUtils = null;
    }
  }
  return sdkLoggingUtils ?? null;
}

/**
 * True when the installed logging library's own matcher says `GOOGLE_SDK_NODE_LOGGING` (read from
 * `process.env`, as the library reads it) enables a `kms` logger; false when it is not installed
 * or does not expose its matcher (the copy in {@link sdkLoggingEnablesKms} still decides).
 */
function installedSdkMatcherEnablesKms(): boolean {
  const value = process.env.GOOGLE_SDK_NODE_LOGGING;
  if (value === undefined || value === '') return false; // the library's log() returns a no-op
  const backend = installedSdkLoggingUtils()?.getNodeBackend?.();
  if (typeof backend?.setFilters !== 'function' || typeof backend.isEnabled !== 'function') return false;
  backend.setFilters();
  return SDK_LOGGER_NAMESPACES.some((namespace) => backend.isEnabled?.(namespace) === true);
}

const SDK_LOGGING_REFUSED =
  'GOOGLE_SDK_NODE_LOGGING enables the request logging of @google-cloud/kms, which would log the plaintext KEK; unset it or leave "kms" (and any wildcard matching it) out';

/**
 * Throws when `GOOGLE_SDK_NODE_LOGGING` could enable the `kms` logger of `@google-cloud/kms`,
 * which logs request and response bodies: the plaintext KEK would be written to the log. Decided
 * by a copy of the logging library's matching and, for `process.env`, by the installed library's
 * own matcher too; either saying "enabled" refuses.
 */
function refuseSdkBodyLogging(where: ErrorContext, env: NodeJS.ProcessEnv = process.env): void {
  if (
    sdkLoggingEnablesKms(env.GOOGLE_SDK_NODE_LOGGING) ||
    (env === process.env && installedSdkMatcherEnablesKms())
  ) {
    throw new ConfigError(SDK_LOGGING_REFUSED, where);
  }
}

/**
 * Throws when an SDK client holds a live `kms` logger (its `_log`, made by
 * `loggingUtils.log('kms')` when the client was built) although `GOOGLE_SDK_NODE_LOGGING` is
 * unset: code in the process called the logging library's `setBackend`, whose default filter
 * logs every namespace. A client of another shape passes (nothing to inspect).
 */
function refuseClientLogger(client: unknown, where: ErrorContext): void {
  const logger = (client as { _log?: { instance?: { namespace?: unknown } } } | null)?._log;
  const live = typeof logger?.instance?.namespace === 'string' && logger.instance.namespace !== '';
  const value = process.env.GOOGLE_SDK_NODE_LOGGING;
  if (live && (value === undefined || value === '' || sdkLoggingEnablesKms(value))) {
    throw new ConfigError(
      'this @google-cloud/kms client logs requests (a google-logging-utils backend was set in code), which would log the plaintext KEK',
      where,
    );
  }
}

/** A CRC32C that the SDK returned, as a number, or undefined when absent. */
function crcValue(field: GcpInt64Value | null | undefined): number | undefined {
  const value = field?.value;
  if (value === undefined || value === null) return undefined;
  const n = Number(typeof value === 'object' ? value.toString() : value);
  return Number.isSafeInteger(n) ? n : undefined;
}

function bytesOf(value: Uint8Array | string | null | undefined): Buffer | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value === 'string') return Buffer.from(value, 'base64'); // REST transport
  return Buffer.isBuffer(value) ? value : Buffer.from(value.buffer, value.byteOffset, value.byteLength);
}

// gRPC status codes (the SDK's numeric `code`).
const Code = {
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  UNAUTHENTICATED: 16,
} as const;
const CODE_NAMES = new Map<number, string>(Object.entries(Code).map(([name, code]) => [code, name]));

/** How long a `google.rpc.RetryInfo` in the error's details asks to wait, in ms. */
function retryDelayOf(err: { statusDetails?: unknown }): number | undefined {
  if (!Array.isArray(err.statusDetails)) return undefined;
  for (const detail of err.statusDetails as { retryDelay?: { seconds?: unknown; nanos?: unknown } }[]) {
    const delay = detail?.retryDelay;
    if (delay) return Number(delay.seconds ?? 0) * 1000 + Math.round(Number(delay.nanos ?? 0) / 1e6);
  }
  return undefined;
}

/**
 * Maps an error of a Cloud KMS call (a gax `GoogleError` with a numeric gRPC `code`) onto a typed
 * error naming the index, slot and provider, with the SDK error as `cause`. Cloud KMS messages
 * name resources and states, never key bytes; for a failed decryption only the status is said.
 */
export function mapGcpKmsError(
  err: unknown,
  where: ErrorContext,
  signal: AbortSignal | undefined,
  operation: 'encrypt' | 'decrypt',
): KmsEnvelopeError {
  if (err instanceof KmsEnvelopeError) return err;
  const e = (err ?? {}) as { code?: unknown; details?: unknown; message?: unknown; statusDetails?: unknown };
  const code = typeof e.code === 'number' ? e.code : undefined;
  const status = code === undefined ? 'no status' : (CODE_NAMES.get(code) ?? `status ${code}`);
  const message = typeof e.details === 'string' && e.details ? e.details : String(e.message ?? '');
  const said = message ? `: ${message}` : '';
  const ctx = { ...where, cause: err };
  if (signal?.aborted || (code === undefined && isAbort(err, signal))) {
    return new DeadlineExceededError('the Cloud KMS call was cancelled at its deadline', ctx);
  }
  switch (code) {
    case Code.DEADLINE_EXCEEDED:
      return new DeadlineExceededError(`the Cloud KMS call timed out (${status})`, ctx);
    case Code.PERMISSION_DENIED:
    case Code.UNAUTHENTICATED:
      return new AccessDeniedError(
        `Cloud KMS refused the credentials or permissions (${status})${said}`,
        ctx,
      );
    case Code.NOT_FOUND:
      return new KeyNotFoundError(`the Cloud KMS key was not found (${status})${said}`, ctx);
    case Code.FAILED_PRECONDITION:
      return new KeyDisabledError(
        `the Cloud KMS key version is not enabled (disabled, destroyed or scheduled for destruction) (${status})${said}`,
        ctx,
      );
    case Code.RESOURCE_EXHAUSTED: {
      const retryAfterMs = retryDelayOf(e);
      return new ThrottledError(`Cloud KMS throttled the call (${status})${said}`, {
        ...ctx,
        ...(retryAfterMs !== undefined ? { retryAfterMs } : {}),
      });
    }
    case Code.INVALID_ARGUMENT:
      // A request checksum that did not match: the request was damaged on the way.
      if (/checksum|crc32c/i.test(message)) {
        return new IntegrityError(`Cloud KMS received a damaged request (${status})${said}`, ctx);
      }
      if (operation === 'decrypt') {
        return new UnwrapFailedError(`Cloud KMS could not decrypt the wrapped KEK (${status})`, ctx);
      }
      return new InvalidArgumentError(`Cloud KMS rejected the request (${status})${said}`, ctx);
    case Code.CANCELLED:
    case Code.UNKNOWN:
    case Code.ABORTED:
    case Code.INTERNAL:
    case Code.UNAVAILABLE:
      return new ProviderUnavailableError(`Cloud KMS is unavailable (${status})${said}`, ctx);
  }
  if (code === undefined && /credential|auth/i.test(message)) {
    return new AccessDeniedError(`no usable Google credentials${said}`, ctx);
  }
  if (code === undefined) return new ProviderUnavailableError(`the Cloud KMS call failed${said}`, ctx);
  return new KmsEnvelopeError(`Cloud KMS refused the call (${status})${said}`, ctx);
}

type Grpc = typeof import('@grpc/grpc-js');

// Loaded once, on the first call with a signal; without @grpc/grpc-js a signal still ends the
// wait at once, and the call itself ends at its gRPC timeout.
let grpcModule: Promise<Grpc | undefined> | undefined;
function loadGrpc(): Promise<Grpc | undefined> {
  grpcModule ??= import('@grpc/grpc-js').then(
    (grpc) => grpc,
    () => undefined,
  );
  return grpcModule;
}

/** A gRPC client interceptor that cancels the call when `signal` aborts. */
function cancelOnAbort(grpc: Grpc, signal: AbortSignal): unknown {
  return (options: unknown, nextCall: (options: unknown) => never) => {
    const call: InstanceType<Grpc['InterceptingCall']> = new grpc.InterceptingCall(nextCall(options), {
      start(metadata, _listener, next) {
        const cancel = () =>
          call.cancelWithStatus(grpc.status.CANCELLED, 'cancelled by kms-envelope (deadline)');
        signal.addEventListener('abort', cancel, { once: true });
        next(metadata, {
          onReceiveStatus(status, nextStatus) {
            signal.removeEventListener('abort', cancel);
            nextStatus(status);
          },
        });
      },
    });
    return call;
  };
}

class GcpKmsProvider implements KmsProvider {
  readonly id = id;
  readonly #key: CryptoKeyName;
  readonly #timeoutMs: number;
  readonly #makeClient: (() => Promise<GcpKmsClient>) | undefined;
  #client: Promise<GcpKmsClient> | undefined;

  constructor(key: CryptoKeyName, client: GcpKmsClient | (() => Promise<GcpKmsClient>), timeoutMs: number) {
    this.#key = key;
    this.#timeoutMs = timeoutMs;
    if (typeof client === 'function') this.#makeClient = client;
    else this.#client = Promise.resolve(client);
  }

  #clientNow(): Promise<GcpKmsClient> {
    if (this.#client === undefined) {
      const pending = this.#makeClient!();
      // A failed build is not cached: the next call tries again.
      pending.catch(() => {
        if (this.#client === pending) this.#client = undefined;
      });
      this.#client = pending;
    }
    return this.#client;
  }

  async wrap(kek: Kek, context: WrapContext): Promise<WrappedKek> {
    const where = whereOf(context, id);
    throwIfAborted(context.signal, where);
    const aad = bindingBytes(context, id);
    const plaintext = kek.expose();
    const response = await this.#call(
      'encrypt',
      {
        name: this.#key.name,
        plaintext,
        additionalAuthenticatedData: aad,
        plaintextCrc32c: { value: crc32c(plaintext) },
        additionalAuthenticatedDataCrc32c: { value: crc32c(aad) },
      },
      context.signal,
      where,
    );
    if (
      response.verifiedPlaintextCrc32c !== true ||
      response.verifiedAdditionalAuthenticatedDataCrc32c !== true
    ) {
      throw new IntegrityError('Cloud KMS did not confirm the checksums of the plaintext and the AAD', where);
    }
    const ciphertext = bytesOf(response.ciphertext);
    if (ciphertext === undefined || ciphertext.length === 0) {
      throw new IntegrityError('Cloud KMS returned no ciphertext', where);
    }
    if (crcValue(response.ciphertextCrc32c) !== crc32c(ciphertext)) {
      throw new IntegrityError('the ciphertext Cloud KMS returned does not match its checksum', where);
    }
    const version = CRYPTO_KEY_VERSION_NAME.exec(response.name ?? '');
    if (version === null || version[1] !== this.#key.name) {
      throw new IntegrityError(
        'Cloud KMS did not name a version of the CryptoKey it was asked to use',
        where,
      );
    }
    return { wrappedKek: new Uint8Array(ciphertext), keyId: response.name!, region: version[2]! };
  }

  async unwrap(wrapped: WrappedKek, context: UnwrapContext): Promise<Kek> {
    const where = whereOf(context, id);
    const version = CRYPTO_KEY_VERSION_NAME.exec(wrapped.keyId);
    if (version === null || version[1] !== this.#key.name) {
      throw new UnwrapFailedError(
        `the envelope was wrapped by "${wrapped.keyId}", not by a version of the slot's CryptoKey "${this.#key.name}"`,
        where,
      );
    }
    throwIfAborted(context.signal, where);
    const aad = bindingBytes(context, id);
    const response = await this.#call(
      'decrypt',
      {
        name: this.#key.name,
        ciphertext: wrapped.wrappedKek,
        additionalAuthenticatedData: aad,
        ciphertextCrc32c: { value: crc32c(wrapped.wrappedKek) },
        additionalAuthenticatedDataCrc32c: { value: crc32c(aad) },
      },
      context.signal,
      where,
    );
    const plaintext = bytesOf(response.plaintext);
    if (plaintext !== undefined && crcValue(response.plaintextCrc32c) !== crc32c(plaintext)) {
      plaintext.fill(0);
      throw new IntegrityError('the plaintext Cloud KMS returned does not match its checksum', where);
    }
    return kekFromPlaintext(plaintext, where);
  }

  async close(): Promise<void> {
    if (this.#makeClient === undefined || this.#client === undefined) return;
    const client = await this.#client.catch(() => undefined);
    this.#client = undefined;
    await client?.close?.();
  }

  /**
   * One call with the gRPC timeout, no gax retries, and `signal` cancelling it: the caller gets
   * `DeadlineExceededError` at once, the call is cancelled on the wire, and a decrypt answer that
   * still arrives is wiped.
   */
  async #call<M extends 'encrypt' | 'decrypt'>(
    method: M,
    request: M extends 'encrypt' ? GcpEncryptRequest : GcpDecryptRequest,
    signal: AbortSignal | undefined,
    where: ErrorContext,
  ): Promise<M extends 'encrypt' ? GcpEncryptResponse : GcpDecryptResponse> {
    type Response = M extends 'encrypt' ? GcpEncryptResponse : GcpDecryptResponse;
    let client: GcpKmsClient;
    try {
      client = await this.#clientNow();
    } catch (err) {
      throw mapGcpKmsError(err, where, signal, method);
    }
    const options: GcpCallOptions = { timeout: this.#timeoutMs, retry: null };
    if (signal !== undefined) {
      const grpc = await loadGrpc();
      if (grpc !== undefined)
        options.otherArgs = { options: { interceptors: [cancelOnAbort(grpc, signal)] } };
    }
    throwIfAborted(signal, where);
    const pending = (
      method === 'encrypt'
        ? client.encrypt(request as GcpEncryptRequest, options)
        : client.decrypt(request as GcpDecryptRequest, options)
    ) as Promise<[Response, ...unknown[]]>;
    if (signal === undefined) {
      try {
        return (await pending)[0];
      } catch (err) {
        throw mapGcpKmsError(err, where, signal, method);
      }
    }
    return new Promise<Response>((resolve, reject) => {
      const onAbort = () =>
        reject(new DeadlineExceededError('the Cloud KMS call was cancelled at its deadline', where));
      signal.addEventListener('abort', onAbort, { once: true });
      pending.then(
        ([response]) => {
          signal.removeEventListener('abort', onAbort);
          if (!signal.aborted) return resolve(response);
          // Too late: nobody will read it, so a plaintext in it is wiped now.
          bytesOf((response as GcpDecryptResponse).plaintext)?.fill(0);
        },
        (err: unknown) => {
          signal.removeEventListener('abort', onAbort);
          reject(mapGcpKmsError(err, where, signal, method));
        },
      );
    });
  }
}

/** Loads `@google-cloud/kms` and builds a client from `options`. */
async function newKeyManagementServiceClient(
  options: Readonly<Record<string, unknown>>,
): Promise<GcpKmsClient> {
  const { KeyManagementServiceClient } = await importOptional(
    '@google-cloud/kms',
    `provider "${id}"`,
    () => import('@google-cloud/kms'),
  );
  const client = new KeyManagementServiceClient(
    options as ConstructorParameters<typeof KeyManagementServiceClient>[0],
  );
  try {
    refuseClientLogger(client, { provider: id });
  } catch (err) {
    await client.close().catch(() => {});
    throw err;
  }
  return client;
}

/**
 * Creates a `gcp-kms` provider for one CryptoKey.
 * @throws ConfigError for a malformed `keyName` or a non-positive `callTimeoutMs`, or while
 *   `GOOGLE_SDK_NODE_LOGGING` would log request bodies (see the module doc).
 */
export function createGcpKmsProvider(options: GcpKmsProviderOptions): KmsProvider {
  const where = { provider: id };
  const key = parseCryptoKeyName(options.keyName, where);
  refuseSdkBodyLogging(where);
  if (options.client !== undefined) refuseClientLogger(options.client, where);
  const timeoutMs = options.callTimeoutMs ?? DEFAULT_CALL_TIMEOUT_MS;
  if (!(Number.isFinite(timeoutMs) && timeoutMs > 0)) {
    throw new ConfigError('callTimeoutMs must be a positive number of milliseconds', where);
  }
  const clientOptions = options.clientOptions ?? {};
  return new GcpKmsProvider(
    key,
    options.client ?? (() => newKeyManagementServiceClient(clientOptions)),
    timeoutMs,
  );
}

const LOOPBACK = new Set(['127.0.0.1', 'localhost', '::1', '[::1]']);

/** `host:port` (port 443 when left out; IPv6 in brackets). */
function parseEndpoint(endpoint: string, where: ErrorContext): { host: string; port: number } {
  const match = /^(\[[0-9a-fA-F:.]+\]|[^:/\s[\]]+)(?::(\d{1,5}))?$/.exec(endpoint);
  const port = Number(match?.[2] ?? 443);
  if (match === null || port < 1 || port > 65535) {
    throw new ConfigError(`slot "endpoint" must be host:port, got "${endpoint}"`, where);
  }
  return { host: match[1]!.replace(/^\[(.*)\]$/, '$1'), port };
}

/**
 * The options a slot's `KeyManagementServiceClient` is built with. Always `projectId` (the
 * CryptoKey's project) and `universeDomain`, so that google-auth-library never asks the metadata
 * server for them. `endpoint` sets `apiEndpoint` and `port`; `options.insecure: true` (allowed
 * only for a loopback endpoint: a test fake) talks plaintext gRPC with no Google credentials at
 * all. `options.credentials` (a service account key object) or `options.keyFilename` replace
 * Application Default Credentials; `options.clientOptions` is merged last.
 * @throws ConfigError
 */
export async function gcpKmsClientOptions(slot: KmsSlot): Promise<Record<string, unknown>> {
  const where = { slot: slot.name, provider: id };
  const key = parseCryptoKeyName(slot.keyId, where);
  const options = slot.options ?? {};
  const out: Record<string, unknown> = {
    projectId: typeof options.projectId === 'string' ? options.projectId : key.project,
    universeDomain: typeof options.universeDomain === 'string' ? options.universeDomain : 'googleapis.com',
  };
  const endpoint = slot.endpoint ? parseEndpoint(slot.endpoint, where) : undefined;
  if (endpoint !== undefined) {
    out.apiEndpoint = endpoint.host;
    out.port = endpoint.port;
  }
  if (options.insecure === true) {
    if (endpoint === undefined || !LOOPBACK.has(endpoint.host)) {
      throw new ConfigError(
        '"insecure" (plaintext gRPC, no credentials) is only allowed with a loopback endpoint such as 127.0.0.1:PORT',
        where,
      );
    }
    const grpc = await importOptional(
      '@grpc/grpc-js',
      `provider "${id}" with insecure`,
      () => import('@grpc/grpc-js'),
    );
    out.sslCreds = grpc.credentials.createInsecure();
  }
  if (options.credentials !== undefined) out.credentials = options.credentials;
  if (typeof options.keyFilename === 'string') out.keyFilename = options.keyFilename;
  Object.assign(out, (options.clientOptions as Record<string, unknown> | undefined) ?? {});
  return out;
}

/**
 * Creates the provider of a `gcp-kms` slot: `key_id` is the CryptoKey name; `region`, when set,
 * must be its location; `options.client` is a ready client (the caller closes it),
 * `options.clientFactory(clientOptions)` builds one from {@link gcpKmsClientOptions}, and
 * otherwise a `KeyManagementServiceClient` is built from them (Application Default Credentials
 * unless the slot gives credentials or `insecure`). `options.callTimeoutMs` sets the gRPC deadline.
 * @throws ConfigError naming the field at fault.
 */
export async function createGcpKmsProviderForSlot(slot: KmsSlot): Promise<KmsProvider> {
  const where = { slot: slot.name, provider: id };
  const key = parseCryptoKeyName(slot.keyId, where);
  if (slot.region && slot.region !== key.location) {
    throw new ConfigError(
      `slot "region" is "${slot.region}" but the CryptoKey is in "${key.location}"`,
      where,
    );
  }
  refuseSdkBodyLogging(where);
  const options = slot.options ?? {};
  const callTimeoutMs = options.callTimeoutMs as number | undefined;
  if (callTimeoutMs !== undefined && !(typeof callTimeoutMs === 'number' && callTimeoutMs > 0)) {
    throw new ConfigError('options.callTimeoutMs must be a positive number of milliseconds', where);
  }
  const ready = options.client as GcpKmsClient | undefined;
  if (ready !== undefined) {
    return createGcpKmsProvider({ keyName: key.name, client: ready, callTimeoutMs });
  }
  const clientOptions = await gcpKmsClientOptions(slot);
  const factory = options.clientFactory as
    | ((options: Record<string, unknown>) => GcpKmsClient | Promise<GcpKmsClient>)
    | undefined;
  if (factory === undefined) return createGcpKmsProvider({ keyName: key.name, clientOptions, callTimeoutMs });
  if (typeof factory !== 'function') throw new ConfigError('options.clientFactory must be a function', where);
  return new GcpKmsProvider(
    key,
    async () => {
      const made = await factory(clientOptions);
      try {
        refuseClientLogger(made, where);
      } catch (err) {
        await made.close?.().catch(() => {});
        throw err;
      }
      return made;
    },
    callTimeoutMs ?? DEFAULT_CALL_TIMEOUT_MS,
  );
}

/** The plugin record the registry loads. */
export const plugin: ProviderPlugin = { id, create: createGcpKmsProviderForSlot };
