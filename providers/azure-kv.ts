/**
 * Provider `azure-kv`: Azure Key Vault (or Managed HSM) `wrapKey` / `unwrapKey` through
 * `@azure/keyvault-keys` (an optional peer dependency).
 *
 * **Binding without AAD.** Key Vault's key-wrap algorithms (`RSA-OAEP-256`, `A256KW`) take no
 * additional authenticated data, so the vault cannot bind a wrap to its index. Instead each wrap
 * draws a fresh random 32-byte binding key K; Key Vault wraps K; the KEK is sealed with
 * AES-256-GCM under K with the binding (provider, slot, index, encryption context) as AAD. An
 * envelope copied onto another index or slot, or whose context was changed, unwraps K fine but
 * fails the GCM tag: `UnwrapFailedError`. K is wiped as soon as it is used.
 *
 * Wrapped form (`wrapped_kek`):
 * `format(1) ‖ length of the wrapped K (2, big-endian) ‖ wrapped K ‖ nonce(12) ‖ sealed KEK(32) ‖ tag(16)`,
 * format 1 = `RSA-OAEP-256`, 2 = `A256KW` (so an envelope keeps unwrapping if the slot's
 * algorithm setting changes).
 *
 * **Versions.** `key_id` records the *versioned* key id that did the wrap (the `kid` Key Vault
 * answers), whether the slot names a versioned or versionless key; unwrap uses the recorded
 * version, so rotating the vault key never breaks an old envelope. An envelope whose recorded key
 * is another vault or key name than the slot's is refused before any call.
 *
 * The SDK's own retries are off (`retryOptions: { maxRetries: 0 }` unless the caller sets them):
 * kms-envelope retries with its deadline and breaker. Every call gets the call's `abortSignal`.
 *
 * @module
 */
import { randomBytes } from 'node:crypto';
import { openAes256Gcm, sealAes256Gcm } from '../src/crypto/aes-gcm.js';
import {
  AccessDeniedError,
  ConfigError,
  DeadlineExceededError,
  type ErrorContext,
  KeyDisabledError,
  KeyNotFoundError,
  KmsEnvelopeError,
  ProviderUnavailableError,
  SlotNotAllowedError,
  ThrottledError,
  UnwrapFailedError,
} from '../src/errors.js';
import { KEK_LENGTH, type Kek } from '../src/keys/kek.js';
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
  parseRetryAfter,
  throwIfAborted,
  whereOf,
} from '../src/providers/support.js';

/** Provider id. */
export const id = 'azure-kv';

/** Key-wrap algorithms: `RSA-OAEP-256` for RSA keys (default), `A256KW` for Managed HSM `oct-HSM` keys. */
export type AzureKvAlgorithm = 'RSA-OAEP-256' | 'A256KW';

const FORMAT_OF: Record<AzureKvAlgorithm, number> = { 'RSA-OAEP-256': 1, A256KW: 2 };
const ALGORITHM_OF: Record<number, AzureKvAlgorithm> = { 1: 'RSA-OAEP-256', 2: 'A256KW' };
const HEADER_LENGTH = 3;
const SEALED_LENGTH = 12 + KEK_LENGTH + 16;

/** The raw HTTP response the SDK reports to `onResponse` (only what this provider reads). */
export interface AzureRawResponseLike {
  /** HTTP status. */
  readonly status: number;
  /** The request answered. */
  readonly request?: {
    /** Its URL. */
    readonly url: string;
  };
  /** The JSON body, parsed. */
  readonly parsedBody?: unknown;
}

/** Options the provider passes to a wrap or unwrap. */
export interface AzureKeyOperationOptions {
  /** The call's deadline. */
  readonly abortSignal?: AbortSignal;
  /** Sees the raw responses (the provider reads the `kid` Key Vault answered). */
  readonly onResponse?: (response: AzureRawResponseLike) => void;
}

/** The result of a wrap or unwrap. */
export interface AzureKeyOperationResult {
  /** The wrapped (or unwrapped) key bytes. */
  readonly result: Uint8Array;
  /** The key id the SDK reports (versionless when the client was made from a versionless id and could not read the key). */
  readonly keyID?: string;
}

/**
 * What the provider needs of `@azure/keyvault-keys`' `CryptographyClient`: typed structurally, so
 * a test or a wrapper can stand in for it and the core never names an SDK type.
 */
export interface AzureCryptographyClientLike {
  /** `POST /keys/{name}/{version}/wrapkey`. */
  wrapKey(
    algorithm: string,
    key: Uint8Array,
    options?: AzureKeyOperationOptions,
  ): Promise<AzureKeyOperationResult>;
  /** `POST /keys/{name}/{version}/unwrapkey`. */
  unwrapKey(
    algorithm: string,
    encryptedKey: Uint8Array,
    options?: AzureKeyOperationOptions,
  ): Promise<AzureKeyOperationResult>;
}

/** What the provider needs of `@azure/keyvault-keys`' `KeyClient`: a cryptography client per key version. */
export interface AzureKeyClientLike {
  /** The vault's URL. */
  readonly vaultUrl: string;
  /** A cryptography client for key `name` (its latest version unless `keyVersion` is given). */
  getCryptographyClient(
    name: string,
    options?: {
      /** The key version. */
      keyVersion?: string;
    },
  ): AzureCryptographyClientLike;
}

/** A TokenCredential (`@azure/core-auth`): anything with `getToken()`. */
export interface AzureTokenCredentialLike {
  /** An access token for `scopes`, or null when none can be had. */
  getToken(
    scopes: string | string[],
    options?: object,
  ): Promise<{
    /** The bearer token. */
    token: string;
    /** When it expires (ms since the epoch). */
    expiresOnTimestamp: number;
  } | null>;
}

/** Makes the cryptography client for one key id (versioned, or the slot's own id). */
export type AzureCryptographyClientFactory = (
  keyId: string,
) => AzureCryptographyClientLike | Promise<AzureCryptographyClientLike>;

/** Options of {@link createAzureKvProvider}. */
export interface AzureKvProviderOptions {
  /** Key URL, versioned or versionless: `https://<vault>.vault.azure.net/keys/<name>[/<version>]`. */
  readonly keyId: string;
  /** The credential for Key Vault; without one (and without `client`), `@azure/identity`'s `DefaultAzureCredential`. */
  readonly credential?: AzureTokenCredentialLike;
  /**
   * A ready client: a `KeyClient` of the key's vault (the provider asks it for a cryptography
   * client per key version), or one `CryptographyClient`. A `CryptographyClient` is bound to the
   * key id it was made with: with a versionless id, envelopes wrapped before a rotation of the
   * vault key no longer unwrap through it. Prefer a `KeyClient` or `clientFactory`.
   */
  readonly client?: AzureKeyClientLike | AzureCryptographyClientLike;
  /** Makes the cryptography client for a key id; called once per id. */
  readonly clientFactory?: AzureCryptographyClientFactory;
  /** Key-wrap algorithm for new wraps (default `RSA-OAEP-256`). */
  readonly algorithm?: AzureKvAlgorithm;
  /**
   * Unwrap `RSA-OAEP-256` wraps (default false). Anyone who can read an RSA key's public half can
   * make such a wrap of a KEK of their choosing, so a store writer could forge an envelope; the
   * client also refuses a public-key slot without the slot's `allowPublicKeyWrap: true`. With
   * `A256KW` (a Managed HSM `oct-HSM` key) a wrap needs the vault, and RSA wraps stay refused.
   */
  readonly allowPublicKeyWrap?: boolean;
  /**
   * Options of the `KeyClient` the provider makes (`tlsOptions`, `proxyOptions`, `httpClient`,
   * `disableChallengeResourceVerification`, `retryOptions` ...). Retries default to none.
   */
  readonly clientOptions?: object;
}

/** A parsed Key Vault key id. */
export interface AzureKeyId {
  /** `https://<vault>.vault.azure.net` (origin, lower case). */
  readonly vaultUrl: string;
  /** The key's name. */
  readonly name: string;
  /** Undefined for a versionless id. */
  readonly version: string | undefined;
}

/**
 * Parses a Key Vault key URL (`https://<vault>/keys/<name>[/<version>]`).
 * @throws ConfigError for anything else.
 */
export function parseAzureKeyId(keyId: string, where: ErrorContext = {}): AzureKeyId {
  let url: URL;
  try {
    url = new URL(keyId);
  } catch (cause) {
    throw new ConfigError(
      'azure-kv "key_id" must be a Key Vault key URL (https://<vault>/keys/<name>[/<version>])',
      {
        ...where,
        provider: id,
        cause,
      },
    );
  }
  const match = /^\/keys\/([0-9A-Za-z-]{1,127})(?:\/([0-9A-Za-z]{1,64}))?\/?$/.exec(url.pathname);
  if ((url.protocol !== 'https:' && url.protocol !== 'http:') || match === null || url.search || url.hash) {
    throw new ConfigError(
      'azure-kv "key_id" must be a Key Vault key URL (https://<vault>/keys/<name>[/<version>])',
      {
        ...where,
        provider: id,
      },
    );
  }
  return { vaultUrl: url.origin.toLowerCase(), name: match[1]!, version: match[2] };
}

const keyUrl = (key: AzureKeyId) => `${key.vaultUrl}/keys/${key.name}${key.version ? `/${key.version}` : ''}`;
const sameKey = (a: AzureKeyId, b: AzureKeyId) =>
  a.vaultUrl === b.vaultUrl && a.name.toLowerCase() === b.name.toLowerCase();

function isKeyClient(client: AzureKeyClientLike | AzureCryptographyClientLike): client is AzureKeyClientLike {
  return typeof (client as AzureKeyClientLike).getCryptographyClient === 'function';
}

/**
 * What an SDK error says, without the request or response objects it carries: a wrap request's
 * body holds the binding key K in base64url, so the SDK error itself must not travel as `cause`.
 */
export class AzureKeyVaultError extends Error {
  /** HTTP status, when Key Vault answered. */
  readonly statusCode: number | undefined;
  /** Key Vault's error code (`Forbidden`, `KeyNotFound`, `BadParameter`, `Throttled` ...) or the SDK's. */
  readonly code: string | undefined;
  /** The error body's `innererror.code` (`KeyDisabled` ...). */
  readonly innerCode: string | undefined;
  /** `x-ms-request-id`, for Azure support. */
  readonly requestId: string | undefined;

  constructor(err: unknown) {
    const e = err as SdkErrorShape;
    super(typeof e?.message === 'string' ? e.message : String(err));
    this.name = 'AzureKeyVaultError';
    this.statusCode = typeof e?.statusCode === 'number' ? e.statusCode : undefined;
    this.code = typeof e?.code === 'string' ? e.code : undefined;
    const inner = e?.details?.error?.innerError?.code;
    this.innerCode = typeof inner === 'string' ? inner : undefined;
    this.requestId = header(e, 'x-ms-request-id');
  }
}

interface SdkErrorShape {
  readonly name?: unknown;
  readonly message?: unknown;
  readonly statusCode?: unknown;
  readonly code?: unknown;
  readonly details?: { readonly error?: { readonly innerError?: { readonly code?: unknown } } };
  readonly response?: { readonly headers?: { get?(name: string): string | undefined } };
}

function header(err: SdkErrorShape | undefined, name: string): string | undefined {
  try {
    return err?.response?.headers?.get?.(name) ?? undefined;
  } catch {
    return undefined;
  }
}

const NETWORK_CODES = new Set([
  'REQUEST_SEND_ERROR',
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
]);

/**
 * Maps an error of a Key Vault call to kms-envelope's typed errors. Exported for tests and for
 * wrappers of this provider.
 */
export function mapAzureError(
  err: unknown,
  operation: 'wrap' | 'unwrap',
  where: ErrorContext,
  signal: AbortSignal | undefined,
): KmsEnvelopeError {
  if (err instanceof KmsEnvelopeError) return err;
  const cause = new AzureKeyVaultError(err);
  const ctx = { ...where, cause };
  if (isAbort(err, signal))
    return new DeadlineExceededError(`Key Vault ${operation} was aborted (deadline)`, ctx);
  // A credential that could not get a token (@azure/identity): its statusCode is the token
  // endpoint's, not Key Vault's, so it must not be read as a Key Vault answer.
  const name = (err as { name?: unknown } | null)?.name;
  if (
    name === 'AuthenticationError' ||
    name === 'AggregateAuthenticationError' ||
    name === 'CredentialUnavailableError'
  ) {
    const tokenStatus = cause.statusCode;
    if (tokenStatus === 429 || (tokenStatus !== undefined && tokenStatus >= 500)) {
      return new ProviderUnavailableError(`the credential could not get a token (${tokenStatus})`, ctx);
    }
    return new AccessDeniedError(`the credential could not get a token for Key Vault (${String(name)})`, ctx);
  }
  const status = cause.statusCode;
  const text = `${cause.code ?? ''} ${cause.innerCode ?? ''} ${cause.message}`;
  const disabled = /KeyDisabled|disabled key/i.test(text);
  const outsideValidity =
    /NotYetValid|Expired|validity period|expired at|can't be used before/i.test(text) && status !== 404;
  if (status === undefined) {
    // The SDK checks a key it read before the call (nbf/exp, key_ops) and throws a plain Error.
    if (disabled || outsideValidity) {
      return new KeyDisabledError(`the Key Vault key cannot be used now (${cause.message})`, ctx);
    }
    if (/is not supported on key/i.test(cause.message)) {
      return new ConfigError(`the Key Vault key does not allow ${operation}Key (key_ops)`, ctx);
    }
    if (cause.code !== undefined && NETWORK_CODES.has(cause.code)) {
      return new ProviderUnavailableError(`Key Vault could not be reached (${cause.code})`, ctx);
    }
    // A timeout of the transport whose call's signal did not fire: not our deadline (isAbort).
    if ((err as { name?: unknown } | null)?.name === 'TimeoutError') {
      return new ProviderUnavailableError('Key Vault did not answer in time (the transport timed out)', ctx);
    }
    return new KmsEnvelopeError(`unexpected error from the Key Vault ${operation}`, ctx);
  }
  if (status === 401) return new AccessDeniedError('Key Vault refused the credential (401)', ctx);
  if (status === 403) {
    if (disabled) return new KeyDisabledError('the Key Vault key is disabled', ctx);
    if (outsideValidity)
      return new KeyDisabledError('the Key Vault key is outside its validity period (nbf/exp)', ctx);
    return new AccessDeniedError(`Key Vault denied ${operation}Key (403 ${cause.code ?? 'Forbidden'})`, ctx);
  }
  if (status === 404)
    return new KeyNotFoundError('the Key Vault key (or that version of it) was not found', ctx);
  if (status === 429) {
    const retryAfterMs = parseRetryAfter(header(err as SdkErrorShape, 'retry-after'));
    return new ThrottledError('Key Vault throttled the call (429)', {
      ...ctx,
      ...(retryAfterMs !== undefined ? { retryAfterMs } : {}),
    });
  }
  if (status === 408 || status >= 500) {
    const retryAfterMs = parseRetryAfter(header(err as SdkErrorShape, 'retry-after'));
    return new ProviderUnavailableError(`Key Vault is unavailable (${status})`, {
      ...ctx,
      ...(retryAfterMs !== undefined ? { retryAfterMs } : {}),
    });
  }
  if (status === 400 && operation === 'unwrap')
    return new UnwrapFailedError('Key Vault could not unwrap the key', ctx);
  if (status === 400) {
    return new ConfigError(
      `Key Vault refused the wrap (400 ${cause.code ?? ''}): does the algorithm fit the key type?`,
      ctx,
    );
  }
  return new KmsEnvelopeError(`unexpected answer from the Key Vault ${operation} (${status})`, ctx);
}

/** Loads `@azure/identity` and makes a DefaultAzureCredential (production only; never in tests). */
async function defaultCredential(): Promise<AzureTokenCredentialLike> {
  // Not a dependency of this project at all (not even for development): the name is kept out of
  // the type checker's sight so that the build does not need its types.
  const identityPackage = '@azure/identity';
  const identity = (await importOptional(
    identityPackage,
    'provider "azure-kv" without a credential (DefaultAzureCredential)',
    () => import(identityPackage),
  )) as { DefaultAzureCredential: new () => AzureTokenCredentialLike };
  return new identity.DefaultAzureCredential();
}

// How many key versions keep a ready cryptography client (each is small; bound it anyway).
const MAX_CLIENTS = 32;

class AzureKvProvider implements KmsProvider {
  readonly id = id;
  readonly #key: AzureKeyId;
  readonly #keyId: string;
  readonly #algorithm: AzureKvAlgorithm;
  readonly #allowPublicKeyWrap: boolean;
  readonly #options: AzureKvProviderOptions;
  readonly #clients = new Map<string, Promise<AzureCryptographyClientLike>>();
  #keyClient: Promise<AzureKeyClientLike> | undefined;

  constructor(options: AzureKvProviderOptions, key: AzureKeyId) {
    this.#options = options;
    this.#key = key;
    this.#keyId = keyUrl(key);
    this.#algorithm = options.algorithm ?? 'RSA-OAEP-256';
    this.#allowPublicKeyWrap = options.allowPublicKeyWrap === true;
  }

  /** RSA wraps need only the public key: see {@link AzureKvProviderOptions.allowPublicKeyWrap}. */
  get publicKeyWrap(): boolean {
    return this.#algorithm === 'RSA-OAEP-256';
  }

  async wrap(kek: Kek, context: WrapContext): Promise<WrappedKek> {
    const where = whereOf(context, id);
    throwIfAborted(context.signal, where);
    const bindingKey = randomBytes(KEK_LENGTH);
    try {
      const client = await this.#client(this.#keyId, where);
      let answeredKid: string | undefined;
      const result = await client
        .wrapKey(this.#algorithm, bindingKey, {
          ...(context.signal ? { abortSignal: context.signal } : {}),
          onResponse: (response) => {
            // The GET the SDK makes first reports here too; only the wrap's own answer counts.
            if (response.status === 200 && /\/wrapkey(\?|$)/i.test(response.request?.url ?? '')) {
              const kid = (response.parsedBody as { kid?: unknown } | undefined)?.kid;
              if (typeof kid === 'string') answeredKid = kid;
            }
          },
        })
        .catch((err: unknown) => {
          throw mapAzureError(err, 'wrap', where, context.signal);
        });
      const wrappedKey = result.result;
      const recorded = this.#recordedKeyId(answeredKid ?? result.keyID, where);
      if (wrappedKey.length === 0 || wrappedKey.length > 0xffff) {
        throw new ProviderUnavailableError(
          `Key Vault returned a wrapped key of ${wrappedKey.length} bytes`,
          where,
        );
      }
      const sealed = sealAes256Gcm(bindingKey, kek.expose(), bindingBytes(context, id));
      const out = new Uint8Array(HEADER_LENGTH + wrappedKey.length + sealed.length);
      out[0] = FORMAT_OF[this.#algorithm];
      out[1] = wrappedKey.length >> 8;
      out[2] = wrappedKey.length & 0xff;
      out.set(wrappedKey, HEADER_LENGTH);
      out.set(sealed, HEADER_LENGTH + wrappedKey.length);
      return { wrappedKek: out, keyId: recorded, region: '' };
    } finally {
      bindingKey.fill(0);
    }
  }

  async unwrap(wrapped: WrappedKek, context: UnwrapContext): Promise<Kek> {
    const where = whereOf(context, id);
    let recorded: AzureKeyId;
    try {
      recorded = parseAzureKeyId(wrapped.keyId, where);
    } catch {
      throw new UnwrapFailedError('the envelope does not record a Key Vault key URL', where);
    }
    if (!sameKey(recorded, this.#key)) {
      throw new UnwrapFailedError(
        `the envelope was wrapped by Key Vault key "${recorded.vaultUrl}/keys/${recorded.name}", not this slot's "${this.#key.vaultUrl}/keys/${this.#key.name}"`,
        where,
      );
    }
    const bytes = wrapped.wrappedKek;
    const algorithm = ALGORITHM_OF[bytes[0] ?? 0];
    const wrappedLength = bytes.length >= HEADER_LENGTH ? (bytes[1]! << 8) | bytes[2]! : -1;
    if (
      algorithm === undefined ||
      wrappedLength <= 0 ||
      bytes.length !== HEADER_LENGTH + wrappedLength + SEALED_LENGTH
    ) {
      throw new UnwrapFailedError('the wrapped KEK is not in the azure-kv format', where);
    }
    // Checked before any call: an RSA wrap may have been made by anyone with the public key.
    if (algorithm === 'RSA-OAEP-256' && !this.#allowPublicKeyWrap) {
      throw new SlotNotAllowedError(
        'the envelope is wrapped with RSA-OAEP-256, which needs only the public key; the slot must set allowPublicKeyWrap: true to unwrap it',
        where,
      );
    }
    throwIfAborted(context.signal, where);
    const client = await this.#client(keyUrl(recorded), where);
    const result = await client
      .unwrapKey(algorithm, bytes.subarray(HEADER_LENGTH, HEADER_LENGTH + wrappedLength), {
        ...(context.signal ? { abortSignal: context.signal } : {}),
      })
      .catch((err: unknown) => {
        throw mapAzureError(err, 'unwrap', where, context.signal);
      });
    const bindingKey = result.result;
    try {
      if (bindingKey.length !== KEK_LENGTH) throw new UnwrapFailedError('cannot unwrap the KEK', where);
      const plaintext = openAes256Gcm(
        bindingKey,
        bytes.subarray(HEADER_LENGTH + wrappedLength),
        bindingBytes(context, id),
      );
      if (plaintext === undefined) throw new UnwrapFailedError('cannot unwrap the KEK', where);
      return kekFromPlaintext(plaintext, where);
    } finally {
      bindingKey.fill(0);
    }
  }

  async close(): Promise<void> {
    this.#clients.clear();
    this.#keyClient = undefined;
  }

  /** The versioned id to record: Key Vault's answer, of the slot's key. */
  #recordedKeyId(kid: string | undefined, where: ErrorContext): string {
    let parsed: AzureKeyId | undefined;
    try {
      parsed = kid === undefined ? undefined : parseAzureKeyId(kid, where);
    } catch {
      parsed = undefined;
    }
    if (parsed === undefined || parsed.version === undefined || !sameKey(parsed, this.#key)) {
      throw new ProviderUnavailableError(
        'Key Vault did not say which version of the key did the wrap (no versioned kid in its answer)',
        where,
      );
    }
    return keyUrl(parsed);
  }

  #client(keyId: string, where: ErrorContext): Promise<AzureCryptographyClientLike> {
    let client = this.#clients.get(keyId);
    if (client === undefined) {
      client = this.#makeClient(keyId, where);
      if (this.#clients.size >= MAX_CLIENTS) {
        const oldest = this.#clients.keys().next().value;
        if (oldest !== undefined) this.#clients.delete(oldest);
      }
      this.#clients.set(keyId, client);
      client.catch(() => this.#clients.delete(keyId));
    }
    return client;
  }

  async #makeClient(keyId: string, where: ErrorContext): Promise<AzureCryptographyClientLike> {
    const { client, clientFactory } = this.#options;
    if (clientFactory !== undefined) return clientFactory(keyId);
    if (client !== undefined && !isKeyClient(client)) return client;
    const keyClient = client ?? (await this.#defaultKeyClient(where));
    const key = parseAzureKeyId(keyId, where);
    return keyClient.getCryptographyClient(key.name, key.version ? { keyVersion: key.version } : {});
  }

  #defaultKeyClient(where: ErrorContext): Promise<AzureKeyClientLike> {
    if (this.#keyClient === undefined) {
      this.#keyClient = (async () => {
        const sdk = await importOptional(
          '@azure/keyvault-keys',
          'provider "azure-kv"',
          () => import('@azure/keyvault-keys'),
        );
        const credential = this.#options.credential ?? (await defaultCredential());
        return new sdk.KeyClient(this.#key.vaultUrl, credential as never, {
          retryOptions: { maxRetries: 0 },
          ...this.#options.clientOptions,
        }) as unknown as AzureKeyClientLike;
      })();
      this.#keyClient.catch(() => {
        this.#keyClient = undefined;
      });
    }
    return this.#keyClient.catch((err: unknown) => {
      if (err instanceof KmsEnvelopeError) throw err;
      throw new ConfigError('cannot make the Key Vault client', { ...where, cause: err });
    });
  }
}

/**
 * Creates an `azure-kv` provider.
 * @throws ConfigError for a `keyId` that is not a Key Vault key URL or an unknown algorithm.
 */
export function createAzureKvProvider(options: AzureKvProviderOptions): KmsProvider {
  const key = parseAzureKeyId(options.keyId);
  if (options.algorithm !== undefined && !(options.algorithm in FORMAT_OF)) {
    throw new ConfigError(
      `azure-kv "algorithm" must be RSA-OAEP-256 or A256KW, not "${String(options.algorithm)}"`,
      {
        provider: id,
      },
    );
  }
  return new AzureKvProvider(options, key);
}

function optionOf<T>(
  slot: KmsSlot,
  name: string,
  check: (value: unknown) => boolean,
  expected: string,
): T | undefined {
  const value = slot.options?.[name];
  if (value === undefined) return undefined;
  if (!check(value)) {
    throw new ConfigError(`azure-kv slot option "${name}" must be ${expected}`, {
      slot: slot.name,
      provider: id,
    });
  }
  return value as T;
}

const isObject = (value: unknown) => typeof value === 'object' && value !== null;

/**
 * Creates the `azure-kv` provider of a slot: `key_id` (the key URL) and, in `options`,
 * `credential`, `client`, `clientFactory`, `algorithm`, `clientOptions`.
 * @throws ConfigError when `key_id` is missing or malformed, or an option has the wrong type.
 */
export function createAzureKvProviderForSlot(slot: KmsSlot): KmsProvider {
  if (!slot.keyId) {
    throw new ConfigError(
      'slot of provider "azure-kv" needs "key_id": the Key Vault key URL (https://<vault>.vault.azure.net/keys/<name>[/<version>])',
      { slot: slot.name, provider: id },
    );
  }
  parseAzureKeyId(slot.keyId, { slot: slot.name });
  const credential = optionOf<AzureTokenCredentialLike>(
    slot,
    'credential',
    (v) => isObject(v) && typeof (v as AzureTokenCredentialLike).getToken === 'function',
    'a TokenCredential (an object with getToken())',
  );
  const client = optionOf<AzureKeyClientLike | AzureCryptographyClientLike>(
    slot,
    'client',
    (v) =>
      isObject(v) &&
      (typeof (v as AzureKeyClientLike).getCryptographyClient === 'function' ||
        typeof (v as AzureCryptographyClientLike).unwrapKey === 'function'),
    'a KeyClient or CryptographyClient of @azure/keyvault-keys',
  );
  const clientFactory = optionOf<AzureCryptographyClientFactory>(
    slot,
    'clientFactory',
    (v) => typeof v === 'function',
    'a function (keyId) => CryptographyClient',
  );
  const algorithm = optionOf<AzureKvAlgorithm>(
    slot,
    'algorithm',
    (v) => typeof v === 'string' && v in FORMAT_OF,
    'RSA-OAEP-256 or A256KW',
  );
  const clientOptions = optionOf<object>(slot, 'clientOptions', isObject, 'an object');
  try {
    return createAzureKvProvider({
      keyId: slot.keyId,
      ...(credential ? { credential } : {}),
      ...(client ? { client } : {}),
      ...(clientFactory ? { clientFactory } : {}),
      ...(algorithm ? { algorithm } : {}),
      ...(clientOptions ? { clientOptions } : {}),
      allowPublicKeyWrap: slot.allowPublicKeyWrap === true,
    });
  } catch (err) {
    if (err instanceof ConfigError && err.slot === undefined) {
      throw new ConfigError(err.detail, { slot: slot.name, provider: id, cause: err });
    }
    throw err;
  }
}

/** The plugin record the registry loads. */
export const plugin: ProviderPlugin = { id, create: (slot) => createAzureKvProviderForSlot(slot) };
