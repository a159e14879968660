/**
 * Provider `vault-transit`: HashiCorp Vault / OpenBao Transit `encrypt` / `decrypt` of the
 * 32-byte KEK over Vault's HTTP API (no SDK: `node:http` / `node:https`), so the key that wraps
 * it never leaves Vault.
 *
 * **Binding.** The binding bytes (provider, slot, index, encryption context and, for schema 2
 * envelopes, version and creation id: `src/crypto/binding.ts`) travel, base64-encoded, as
 * - `associated_data` (slot option `binding: 'associated_data'`, the default): the AEAD's AAD, for
 *   `aes128-gcm96`, `aes256-gcm96`, `chacha20-poly1305` and `xchacha20-poly1305` keys. Vault
 *   added the field in 1.13 (hashicorp/vault#17638); older servers ignore an unknown field, which
 *   would bind nothing, so the provider reads the server version (`sys/seal-status`) once and
 *   refuses one older than 1.13. On a derived key the bytes go as `context` as well.
 * - `context` (`binding: 'context'`): the key-derivation context of a key created with
 *   `derived: true` (a key per binding, by HKDF). Vault *ignores* `context` on a key that is not
 *   derived, so the provider reads the key (`GET <mount>/keys/<name>`) first and refuses one that
 *   is not.
 * Either way an envelope copied onto another index or slot, or whose context was changed, fails
 * Vault's tag check (`cipher: message authentication failed` → `UnwrapFailedError`).
 *
 * **Recorded.** `wrapped_kek` holds the ciphertext string's bytes (`vault:v<n>:<base64>`);
 * `key_id` is `<mount>/keys/<name>:v<n>` (the version that wrapped it; it must agree with the
 * ciphertext's prefix); `region` is the namespace ('' for the root namespace). An envelope whose
 * recorded key is another mount or name than the slot's is refused before any call.
 *
 * **No `rewrap`.** Transit's `rewrap` decrypts and encrypts with one `context` and takes no
 * `associated_data`, while a rotation changes the binding (version + 1, a creation id): a Transit
 * rewrap would either fail or produce a ciphertext bound to the old version, which a replay of
 * the old envelope could then stand in for. So `rotate` unwraps and wraps (the KEK is in the
 * client's memory for that moment, and its KEK check value is verified).
 *
 * **Auth.** A token (`options.token`, a secret reference such as `env:VAULT_TOKEN`), or AppRole
 * (`options.approle: { roleId, secretId, mount? }`, `secretId` a secret reference): the token is
 * kept until its lease ends, and a 403 logs in again once. `options.namespace` is sent as
 * `X-Vault-Namespace`. Redirects are not followed (the token would go along).
 *
 * **Caveat.** JSON carries the KEK as a base64 *string* (`plaintext`), which JavaScript cannot
 * wipe; the request and response buffers are wiped after use.
 *
 * @module
 */
import { readFileSync } from 'node:fs';
import { Agent as HttpAgent, request as httpRequest, type IncomingMessage } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
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
import type { Kek } from '../src/keys/kek.js';
import { resolveSecretRef } from '../src/keys/secret-ref.js';
import type {
  KmsProvider,
  ProviderEnvironment,
  ProviderPlugin,
  UnwrapContext,
  WrapContext,
  WrappedKek,
} from '../src/providers/provider.js';
import type { KmsSlot } from '../src/providers/slot.js';
import {
  bindingBytes,
  isAbort,
  kekFromPlaintext,
  parseRetryAfter,
  throwIfAborted,
  whereOf,
} from '../src/providers/support.js';

/** Provider id. */
export const id = 'vault-transit';

/** How the binding reaches Vault: see the module documentation. */
export type VaultTransitBinding = 'associated_data' | 'context';

/** How the provider authenticates. Secret bytes are copied; the caller wipes its own. */
export type VaultTransitAuth =
  | {
      /** A Vault token, sent as `X-Vault-Token`. */
      readonly token: Uint8Array;
    }
  | {
      /** AppRole login (`POST /v1/auth/<mount>/login`); the token is kept until near its lease's end. */
      readonly approle: {
        /** The role id (not secret). */
        readonly roleId: string;
        /** The secret id. */
        readonly secretId: Uint8Array;
        /** Auth mount (default `approle`). */
        readonly mount?: string;
      };
    };

/** Options of {@link createVaultTransitProvider}. */
export interface VaultTransitProviderOptions {
  /** The Vault address, e.g. `https://vault.example.com:8200` (a path prefix is kept). */
  readonly address: string;
  /** The Transit key's name. */
  readonly keyName: string;
  /** The Transit mount (default `transit`). */
  readonly mount?: string;
  /** Vault Enterprise / OpenBao namespace (`X-Vault-Namespace`). */
  readonly namespace?: string;
  /** Default `associated_data`. */
  readonly binding?: VaultTransitBinding;
  /** A token, or AppRole credentials. */
  readonly auth: VaultTransitAuth;
  /** PEM of the CA(s) to trust instead of the system's, for `https`. */
  readonly ca?: string;
  /** Allow `http://` to an address that is not loopback (the token would travel in clear). */
  readonly allowHttp?: boolean;
  /** How long the key's metadata is trusted (default 5 minutes). */
  readonly keyInfoCacheMs?: number;
}

/** AEAD key types: the only ones that take `associated_data` (keysutil `AssociatedDataSupported`). */
const AEAD_TYPES = new Set(['aes128-gcm96', 'aes256-gcm96', 'chacha20-poly1305', 'xchacha20-poly1305']);
/** Vault added `associated_data` to Transit in 1.13 (hashicorp/vault#17638). */
const AD_MIN_VERSION: readonly [number, number] = [1, 13];
/** Nonce + 32-byte KEK + tag: 12-byte nonces, or 24 for XChaCha20. */
const SEALED_LENGTHS = new Set([12 + 32 + 16, 24 + 32 + 16]);
const MAX_RESPONSE_BYTES = 1 << 20;
const NAME = /^[A-Za-z0-9_](?:[A-Za-z0-9_.@-]{0,126}[A-Za-z0-9_])?$/;
const PATH_SEGMENT = /^[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,62}[A-Za-z0-9_])?$/;
const CIPHERTEXT = /^vault:v([1-9][0-9]{0,9}):([A-Za-z0-9+/]+={0,2})$/;
const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EPIPE',
  'ECONNABORTED',
  'UND_ERR_SOCKET',
]);
const TLS_TRUST_CODES =
  /^(UNABLE_TO_VERIFY_LEAF_SIGNATURE|SELF_SIGNED_CERT_IN_CHAIN|DEPTH_ZERO_SELF_SIGNED_CERT|UNABLE_TO_GET_ISSUER_CERT(_LOCALLY)?|CERT_HAS_EXPIRED|CERT_NOT_YET_VALID|ERR_TLS_CERT_ALTNAME_INVALID|CERT_UNTRUSTED|CERT_SIGNATURE_FAILURE)$/;

/** What an operation is, for error messages and mapping. */
type VaultOperation = 'encrypt' | 'decrypt' | 'read-key' | 'login' | 'seal-status';

/** A Vault answer that is not a success: status and Vault's own messages (sanitised). */
class VaultResponseError extends Error {
  /** Vault's first message as sent: matched against, never shown (it might echo a secret). */
  readonly #raw: string;
  /** Vault's first message as messages may show it ({@link sanitizeVaultMessage}). */
  readonly vaultMessage: string;
  constructor(
    readonly status: number,
    errors: unknown,
    readonly retryAfterMs: number | undefined,
  ) {
    const shown = sanitizeVaultMessage(errors);
    super(`Vault answered ${status}${shown ? `: ${shown}` : ''}`);
    this.name = 'VaultResponseError';
    this.vaultMessage = shown;
    const first = Array.isArray(errors) ? errors.find((e) => typeof e === 'string') : undefined;
    this.#raw = typeof first === 'string' ? first.slice(0, 1000) : '';
  }
  /** Whether Vault's message matches `pattern`. */
  says(pattern: RegExp): boolean {
    return pattern.test(this.#raw);
  }
}

/**
 * Vault's first error message as errors may show it: printable ASCII, at most 160 characters, and
 * every run of 20 or more token-like characters (a token, a secret id, base64 of anything)
 * replaced with `…`, so no secret that a server echoes reaches a message.
 */
export function sanitizeVaultMessage(errors: unknown): string {
  const first = Array.isArray(errors) ? errors.find((e) => typeof e === 'string') : undefined;
  if (typeof first !== 'string') return '';
  return first
    .replace(/[^\x20-\x7e]/g, ' ')
    .replace(/[A-Za-z0-9+/=_.:-]{20,}/g, '…')
    .replace(/\s+/g, ' ')
    .trim()
    .slice(0, 160);
}

/** Maps a Vault answer (or a transport failure) to the typed error. Never names a secret. */
function mapVaultError(
  err: unknown,
  operation: VaultOperation,
  path: string,
  where: ErrorContext,
  signal: AbortSignal | undefined,
): KmsEnvelopeError {
  if (err instanceof KmsEnvelopeError) return err;
  const ctx = { ...where, cause: err };
  if (!(err instanceof VaultResponseError)) {
    if (isAbort(err, signal))
      return new DeadlineExceededError(`the Vault ${operation} was aborted (deadline)`, ctx);
    const code = (err as { code?: unknown } | null)?.code;
    if (typeof code === 'string' && TLS_TRUST_CODES.test(code)) {
      return new ConfigError(
        `the Vault server's TLS certificate is not trusted (${code}): give its CA in the slot option "ca"`,
        ctx,
      );
    }
    if (typeof code === 'string' && NETWORK_CODES.has(code)) {
      return new ProviderUnavailableError(`Vault could not be reached (${code})`, ctx);
    }
    return new ProviderUnavailableError(`the Vault ${operation} failed in transport`, ctx);
  }
  const { status, vaultMessage: said } = err;
  const quoted = said ? `: ${said}` : '';
  if (status === 400) {
    if (operation === 'login')
      return new AccessDeniedError(`Vault refused the AppRole login (400${quoted})`, ctx);
    if (err.says(/encryption key not found|no existing key named|policy not found/)) {
      return new KeyNotFoundError(`the Transit key does not exist (${path})`, ctx);
    }
    if (err.says(/disallowed by policy \(too old\)|less than the minimum encryption key version/)) {
      return new KeyDisabledError(
        'the Transit key version is disabled by min_decryption_version / min_encryption_version',
        ctx,
      );
    }
    if (operation === 'decrypt') return new UnwrapFailedError('Vault could not decrypt the wrapped KEK', ctx);
    return new ConfigError(`Vault refused the ${operation} (400${quoted})`, ctx);
  }
  if (status === 401 || status === 403) {
    return new AccessDeniedError(
      `Vault denied the ${operation} on ${path} (${status}${quoted}): check the token and its policy`,
      ctx,
    );
  }
  if (status === 404) {
    return new KeyNotFoundError(
      operation === 'read-key'
        ? `the Transit key does not exist, or this token may not read it (${path})`
        : `Vault has no such path (${path}): is Transit mounted there?`,
      ctx,
    );
  }
  const retry = err.retryAfterMs !== undefined ? { retryAfterMs: err.retryAfterMs } : {};
  if (status === 429)
    return new ThrottledError(`Vault throttled the ${operation} (429${quoted})`, { ...ctx, ...retry });
  if (status >= 300 && status < 400) {
    return new ProviderUnavailableError(
      `Vault answered a redirect (${status}), which is not followed (the token would go along): point the endpoint at the active node or its load balancer`,
      ctx,
    );
  }
  if (status === 412 || status === 473 || status >= 500) {
    return new ProviderUnavailableError(
      `Vault is unavailable (${status}${status === 503 ? ', sealed or in maintenance' : ''}${quoted})`,
      { ...ctx, ...retry },
    );
  }
  return new KmsEnvelopeError(`unexpected answer from the Vault ${operation} (${status})`, ctx);
}

/** The parts of a recorded `key_id`. */
interface RecordedKey {
  readonly mount: string;
  readonly name: string;
  readonly version: number;
}

function parseRecordedKey(keyId: string): RecordedKey | undefined {
  const m = /^(.+)\/keys\/([^/:]+):v([1-9][0-9]{0,9})$/.exec(keyId);
  if (m === null) return undefined;
  return { mount: m[1]!, name: m[2]!, version: Number(m[3]) };
}

/** The key's metadata this provider needs (`GET <mount>/keys/<name>`). */
interface KeyInfo {
  readonly type: string;
  readonly derived: boolean;
}

/** A secret held as bytes, handed out as a header string only for the moment of a request. */
class HeldSecret {
  readonly #bytes: Buffer;
  constructor(bytes: Uint8Array, what: string) {
    this.#bytes = Buffer.from(bytes);
    // No CR, LF or other controls: the value becomes a header or JSON field.
    if (this.#bytes.length === 0 || this.#bytes.some((b) => b < 0x21 || b > 0x7e)) {
      this.#bytes.fill(0);
      throw new ConfigError(`the Vault ${what} is empty or has characters a token cannot have`, {
        provider: id,
      });
    }
  }
  reveal(): string {
    return this.#bytes.toString('latin1');
  }
  wipe(): void {
    this.#bytes.fill(0);
  }
  toJSON(): string {
    return '[redacted]';
  }
}

interface HttpAnswer {
  readonly status: number;
  readonly json: Record<string, unknown> | undefined;
}

class VaultTransitProvider implements KmsProvider {
  readonly id = id;
  readonly #base: URL;
  readonly #basePath: string;
  readonly #keyName: string;
  readonly #mount: string;
  readonly #namespace: string;
  readonly #binding: VaultTransitBinding;
  readonly #agent: HttpAgent | HttpsAgent;
  readonly #https: boolean;
  readonly #keyInfoCacheMs: number;
  readonly #token: HeldSecret | undefined;
  readonly #approle: { roleId: string; secretId: HeldSecret; mount: string } | undefined;
  #login: { token: HeldSecret; until: number } | undefined;
  #loggingIn: Promise<HeldSecret> | undefined;
  #keyInfo: { info: KeyInfo; until: number } | undefined;
  #keyInfoLoading: Promise<KeyInfo> | undefined;
  #serverChecked = false;

  constructor(options: VaultTransitProviderOptions, base: URL) {
    this.#base = base;
    this.#basePath = base.pathname.replace(/\/+$/, '');
    this.#https = base.protocol === 'https:';
    this.#keyName = options.keyName;
    this.#mount = options.mount ?? 'transit';
    this.#namespace = options.namespace ?? '';
    this.#binding = options.binding ?? 'associated_data';
    this.#keyInfoCacheMs = options.keyInfoCacheMs ?? 5 * 60_000;
    this.#agent = this.#https
      ? new HttpsAgent({ keepAlive: true, ...(options.ca !== undefined ? { ca: options.ca } : {}) })
      : new HttpAgent({ keepAlive: true });
    if ('token' in options.auth) {
      this.#token = new HeldSecret(options.auth.token, 'token');
    } else {
      const { roleId, secretId, mount } = options.auth.approle;
      this.#approle = {
        roleId,
        secretId: new HeldSecret(secretId, 'AppRole secret_id'),
        mount: mount ?? 'approle',
      };
    }
  }

  /** `<mount>/keys/<name>:v<n>`: what `key_id` records. */
  #recordedKeyId(version: number): string {
    return `${this.#mount}/keys/${this.#keyName}:v${version}`;
  }

  async wrap(kek: Kek, context: WrapContext): Promise<WrappedKek> {
    const where = whereOf(context, id);
    throwIfAborted(context.signal, where);
    const info = await this.#checkedKeyInfo(where, context.signal);
    const body: Record<string, unknown> = {
      plaintext: kek.expose().toString('base64'),
      ...this.#bindingFields(context, info),
    };
    const path = `${this.#mount}/encrypt/${this.#keyName}`;
    const data = await this.#call('encrypt', 'POST', path, body, where, context.signal);
    const ciphertext = data.ciphertext;
    const parsed = typeof ciphertext === 'string' ? CIPHERTEXT.exec(ciphertext) : null;
    const version = parsed === null ? Number.NaN : Number(parsed[1]);
    const answered = data.key_version;
    if (parsed === null || (answered !== undefined && answered !== version)) {
      throw new ProviderUnavailableError(
        'Vault answered the encrypt without a ciphertext of the expected form',
        where,
      );
    }
    return {
      wrappedKek: new Uint8Array(Buffer.from(ciphertext as string, 'latin1')),
      keyId: this.#recordedKeyId(version),
      region: this.#namespace,
    };
  }

  async unwrap(wrapped: WrappedKek, context: UnwrapContext): Promise<Kek> {
    const where = whereOf(context, id);
    const recorded = parseRecordedKey(wrapped.keyId);
    if (recorded === undefined) {
      throw new UnwrapFailedError(
        'the envelope does not record a Transit key (<mount>/keys/<name>:v<n>)',
        where,
      );
    }
    if (recorded.mount !== this.#mount || recorded.name !== this.#keyName) {
      throw new UnwrapFailedError(
        `the envelope was wrapped by Transit key "${recorded.mount}/keys/${recorded.name}", not this slot's "${this.#mount}/keys/${this.#keyName}"`,
        where,
      );
    }
    const ciphertext = ciphertextOf(wrapped.wrappedKek, recorded.version);
    if (ciphertext === undefined)
      throw new UnwrapFailedError(
        'the wrapped KEK is not a Transit ciphertext of its recorded version',
        where,
      );
    throwIfAborted(context.signal, where);
    const info = await this.#checkedKeyInfo(where, context.signal);
    const path = `${this.#mount}/decrypt/${this.#keyName}`;
    const data = await this.#call(
      'decrypt',
      'POST',
      path,
      { ciphertext, ...this.#bindingFields(context, info) },
      where,
      context.signal,
    );
    const plaintext = typeof data.plaintext === 'string' ? Buffer.from(data.plaintext, 'base64') : undefined;
    return kekFromPlaintext(plaintext, where);
  }

  async close(): Promise<void> {
    this.#agent.destroy();
    this.#token?.wipe();
    this.#approle?.secretId.wipe();
    this.#login?.token.wipe();
    this.#login = undefined;
  }

  /** The request fields that carry the binding (never the KEK). */
  #bindingFields(context: WrapContext, info: KeyInfo): Record<string, string> {
    const binding = bindingBytes(context, id).toString('base64');
    if (this.#binding === 'context') return { context: binding };
    return info.derived ? { associated_data: binding, context: binding } : { associated_data: binding };
  }

  /** The key's metadata, checked against the binding mode (cached), and the server version for AD. */
  async #checkedKeyInfo(where: ErrorContext, signal: AbortSignal | undefined): Promise<KeyInfo> {
    const cached = this.#keyInfo;
    const info =
      cached !== undefined && Date.now() < cached.until
        ? cached.info
        : await this.#loadKeyInfo(where, signal);
    const key = `${this.#mount}/keys/${this.#keyName}`;
    if (this.#binding === 'context' && !info.derived) {
      throw new ConfigError(
        `the Transit key ${key} is not derived, and Vault ignores "context" on such a key: create it with derived=true, or use binding: associated_data`,
        where,
      );
    }
    if (this.#binding === 'associated_data' && !AEAD_TYPES.has(info.type)) {
      throw new ConfigError(
        `the Transit key ${key} is of type ${info.type}, which takes no associated_data: use an aes256-gcm96 key`,
        where,
      );
    }
    if (this.#binding === 'associated_data' && !info.derived && !this.#serverChecked) {
      await this.#checkServerVersion(where, signal);
      this.#serverChecked = true;
    }
    return info;
  }

  #loadKeyInfo(where: ErrorContext, signal: AbortSignal | undefined): Promise<KeyInfo> {
    if (this.#keyInfoLoading === undefined) {
      this.#keyInfoLoading = (async () => {
        try {
          const data = await this.#call(
            'read-key',
            'GET',
            `${this.#mount}/keys/${this.#keyName}`,
            undefined,
            where,
            signal,
          );
          if (typeof data.type !== 'string' || typeof data.derived !== 'boolean') {
            throw new ProviderUnavailableError(
              'Vault answered the key read without "type" and "derived"',
              where,
            );
          }
          const info = { type: data.type, derived: data.derived };
          this.#keyInfo = { info, until: Date.now() + this.#keyInfoCacheMs };
          return info;
        } finally {
          this.#keyInfoLoading = undefined;
        }
      })();
    }
    return this.#keyInfoLoading;
  }

  async #checkServerVersion(where: ErrorContext, signal: AbortSignal | undefined): Promise<void> {
    const path = 'sys/seal-status';
    let answer: HttpAnswer;
    try {
      answer = await this.#send('GET', path, undefined, undefined, signal);
    } catch (err) {
      throw mapVaultError(err, 'seal-status', path, where, signal);
    }
    if (answer.status !== 200) throw mapVaultError(this.#failure(answer), 'seal-status', path, where, signal);
    const version = answer.json?.version;
    const m = typeof version === 'string' ? /^v?(\d+)\.(\d+)/.exec(version) : null;
    const major = m === null ? 0 : Number(m[1]);
    const minor = m === null ? 0 : Number(m[2]);
    if (major < AD_MIN_VERSION[0] || (major === AD_MIN_VERSION[0] && minor < AD_MIN_VERSION[1])) {
      throw new ConfigError(
        `Vault ${typeof version === 'string' ? version.slice(0, 32) : '(version not reported)'} predates associated_data in Transit (1.13) and would ignore it, binding nothing: upgrade, or use a derived key with binding: context`,
        where,
      );
    }
  }

  /** A Transit call with auth (and one re-login after a 403 with AppRole); returns `data`. */
  async #call(
    operation: VaultOperation,
    method: 'GET' | 'POST',
    path: string,
    body: Record<string, unknown> | undefined,
    where: ErrorContext,
    signal: AbortSignal | undefined,
  ): Promise<Record<string, unknown>> {
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body), 'utf8');
    try {
      let token = await this.#currentToken(where, signal);
      let answer = await this.#send(method, path, payload, token, signal);
      if (answer.status === 403 && this.#approle !== undefined) {
        this.#dropLogin(token);
        token = await this.#currentToken(where, signal);
        answer = await this.#send(method, path, payload, token, signal);
      }
      if (answer.status < 200 || answer.status >= 300) throw this.#failure(answer);
      const data = answer.json?.data;
      if (typeof data !== 'object' || data === null) {
        throw new ProviderUnavailableError(`Vault answered the ${operation} without data`, where);
      }
      return data as Record<string, unknown>;
    } catch (err) {
      throw mapVaultError(err, operation, path, where, signal);
    } finally {
      payload?.fill(0);
    }
  }

  #failure(answer: HttpAnswer & { retryAfter?: string | undefined }): VaultResponseError {
    return new VaultResponseError(answer.status, answer.json?.errors, parseRetryAfter(answer.retryAfter));
  }

  async #currentToken(where: ErrorContext, signal: AbortSignal | undefined): Promise<HeldSecret> {
    if (this.#token !== undefined) return this.#token;
    const login = this.#login;
    if (login !== undefined && Date.now() < login.until) return login.token;
    if (this.#loggingIn === undefined) {
      this.#loggingIn = this.#logIn(where, signal).finally(() => {
        this.#loggingIn = undefined;
      });
    }
    return this.#loggingIn;
  }

  #dropLogin(token: HeldSecret): void {
    if (this.#login?.token === token) {
      this.#login = undefined;
      token.wipe();
    }
  }

  async #logIn(where: ErrorContext, signal: AbortSignal | undefined): Promise<HeldSecret> {
    const approle = this.#approle!;
    const path = `auth/${approle.mount}/login`;
    const payload = Buffer.from(
      JSON.stringify({ role_id: approle.roleId, secret_id: approle.secretId.reveal() }),
      'utf8',
    );
    let answer: HttpAnswer & { retryAfter?: string | undefined };
    try {
      answer = await this.#send('POST', path, payload, undefined, signal);
    } catch (err) {
      throw mapVaultError(err, 'login', path, where, signal);
    } finally {
      payload.fill(0);
    }
    if (answer.status !== 200) throw mapVaultError(this.#failure(answer), 'login', path, where, signal);
    const auth = answer.json?.auth as { client_token?: unknown; lease_duration?: unknown } | undefined;
    if (typeof auth?.client_token !== 'string') {
      throw new AccessDeniedError('Vault answered the AppRole login without a client token', where);
    }
    const token = new HeldSecret(Buffer.from(auth.client_token, 'latin1'), 'client token');
    const lease =
      typeof auth.lease_duration === 'number' && auth.lease_duration > 0 ? auth.lease_duration : 0;
    // Renewed a little before the lease ends (a tenth of it, at most a minute), not after.
    const until =
      lease === 0 ? Number.POSITIVE_INFINITY : Date.now() + lease * 1000 - Math.min(lease * 100, 60_000);
    this.#login?.token.wipe();
    this.#login = { token, until };
    return token;
  }

  /** One HTTP request to `<address>/v1/<path>`; never follows a redirect. */
  #send(
    method: 'GET' | 'POST',
    path: string,
    payload: Buffer | undefined,
    token: HeldSecret | undefined,
    signal: AbortSignal | undefined,
  ): Promise<HttpAnswer & { retryAfter?: string | undefined }> {
    const url = new URL(this.#base.href);
    url.pathname = `${this.#basePath}/v1/${path}`;
    const headers: Record<string, string> = { accept: 'application/json' };
    if (token !== undefined) headers['x-vault-token'] = token.reveal();
    if (this.#namespace !== '') headers['x-vault-namespace'] = this.#namespace;
    if (payload !== undefined) {
      headers['content-type'] = 'application/json';
      headers['content-length'] = String(payload.length);
    }
    const request = this.#https ? httpsRequest : httpRequest;
    return new Promise((resolve, reject) => {
      const req = request(
        url,
        { method, headers, agent: this.#agent, ...(signal !== undefined ? { signal } : {}) },
        (res: IncomingMessage) => {
          const chunks: Buffer[] = [];
          let size = 0;
          res.on('data', (chunk: Buffer) => {
            size += chunk.length;
            if (size > MAX_RESPONSE_BYTES) {
              res.destroy(new Error('Vault response too large'));
              return;
            }
            chunks.push(chunk);
          });
          res.on('error', reject);
          res.on('end', () => {
            const raw = Buffer.concat(chunks);
            for (const chunk of chunks) chunk.fill(0);
            let json: Record<string, unknown> | undefined;
            try {
              const parsed: unknown = raw.length > 0 ? JSON.parse(raw.toString('utf8')) : undefined;
              if (typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed)) {
                json = parsed as Record<string, unknown>;
              }
            } catch {
              json = undefined;
            } finally {
              raw.fill(0);
            }
            const retryAfter = res.headers['retry-after'];
            resolve({
              status: res.statusCode ?? 0,
              json,
              ...(retryAfter !== undefined ? { retryAfter } : {}),
            });
          });
        },
      );
      req.on('error', reject);
      req.end(payload);
    });
  }
}

/** The ciphertext string of a wrapped KEK, when it is one of `version` in Transit's form. */
function ciphertextOf(bytes: Uint8Array, version: number): string | undefined {
  if (bytes.length === 0 || bytes.length > 256 || bytes.some((b) => b < 0x21 || b > 0x7e)) return undefined;
  const text = Buffer.from(bytes).toString('latin1');
  const m = CIPHERTEXT.exec(text);
  if (m === null || Number(m[1]) !== version) return undefined;
  const b64 = m[2]!;
  if (b64.length % 4 !== 0) return undefined;
  const decoded = Buffer.from(b64, 'base64');
  // Canonical base64 only (Node's decoder skips what it does not understand).
  if (decoded.toString('base64') !== b64 || !SEALED_LENGTHS.has(decoded.length)) return undefined;
  return text;
}

function checkPath(value: string, what: string, where: ErrorContext): string {
  const trimmed = value.replace(/^\/+|\/+$/g, '');
  const segments = trimmed.split('/');
  if (trimmed.length === 0 || trimmed.length > 256 || segments.some((s) => !PATH_SEGMENT.test(s))) {
    throw new ConfigError(
      `vault-transit ${what} must be path segments of letters, digits, ".", "_" and "-"`,
      where,
    );
  }
  return trimmed;
}

/** The Vault address as a URL: http(s), no credentials, query or fragment. */
function parseAddress(address: string, allowHttp: boolean, where: ErrorContext): URL {
  let url: URL;
  try {
    url = new URL(address);
  } catch {
    throw new ConfigError('vault-transit "endpoint" must be the Vault address (https://host:8200)', where);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    throw new ConfigError('vault-transit "endpoint" must be an http(s) URL', where);
  }
  if (url.username || url.password || url.search || url.hash) {
    throw new ConfigError('vault-transit "endpoint" may not carry credentials, a query or a fragment', where);
  }
  const loopback = ['127.0.0.1', 'localhost', '[::1]'].includes(url.hostname);
  if (url.protocol === 'http:' && !loopback && !allowHttp) {
    throw new ConfigError(
      'vault-transit "endpoint" is plain http to another host: the token would travel in clear (use https, or set allowHttp: true)',
      where,
    );
  }
  return url;
}

/**
 * A `vault-transit` provider.
 * @throws ConfigError for a malformed address, key name, mount, namespace, binding or secret.
 */
export function createVaultTransitProvider(options: VaultTransitProviderOptions): KmsProvider {
  const where = { provider: id };
  const base = parseAddress(options.address, options.allowHttp === true, where);
  if (typeof options.keyName !== 'string' || !NAME.test(options.keyName)) {
    throw new ConfigError('vault-transit key name must be letters, digits, "_", "-", "." or "@"', where);
  }
  const mount = checkPath(options.mount ?? 'transit', 'mount', where);
  const namespace =
    options.namespace === undefined ? undefined : checkPath(options.namespace, 'namespace', where);
  if (
    options.binding !== undefined &&
    options.binding !== 'associated_data' &&
    options.binding !== 'context'
  ) {
    throw new ConfigError('vault-transit binding must be "associated_data" or "context"', where);
  }
  if ('approle' in options.auth) {
    const { roleId, mount: authMount } = options.auth.approle;
    if (typeof roleId !== 'string' || !/^[\x21-\x7e]{1,256}$/.test(roleId)) {
      throw new ConfigError('vault-transit approle.roleId must be a non-empty printable string', where);
    }
    if (authMount !== undefined) checkPath(authMount, 'approle.mount', where);
  }
  return new VaultTransitProvider(
    { ...options, mount, ...(namespace !== undefined ? { namespace } : {}) },
    base,
  );
}

const SLOT_OPTIONS = new Set([
  'mount',
  'namespace',
  'binding',
  'token',
  'approle',
  'ca',
  'allowHttp',
  'keyInfoCacheMs',
]);

/**
 * The `vault-transit` provider of a slot: `endpoint` (the Vault address), `key_id` (the Transit
 * key's name) and in `options`: `token` or `approle: { roleId, secretId, mount? }` (secret
 * references), `mount`, `namespace`, `binding`, `ca` (PEM, or an absolute path to a PEM file),
 * `allowHttp`, `keyInfoCacheMs`. An option it does not know is refused (a misspelt `namespace`
 * must not silently mean the root namespace).
 * @throws ConfigError naming the field, never a secret.
 */
export async function createVaultTransitProviderForSlot(
  slot: KmsSlot,
  environment: ProviderEnvironment,
): Promise<KmsProvider> {
  const where = { slot: slot.name, provider: id };
  if (!slot.endpoint)
    throw new ConfigError('slot of provider "vault-transit" needs "endpoint": the Vault address', where);
  if (!slot.keyId)
    throw new ConfigError('slot of provider "vault-transit" needs "key_id": the Transit key name', where);
  const options = slot.options ?? {};
  for (const name of Object.keys(options)) {
    if (!SLOT_OPTIONS.has(name)) {
      throw new ConfigError(
        `unknown vault-transit slot option ${/^[A-Za-z]{1,32}$/.test(name) ? `"${name}"` : '(not shown)'}`,
        where,
      );
    }
  }
  const text = (name: string): string | undefined => {
    const value = options[name];
    if (value !== undefined && typeof value !== 'string')
      throw new ConfigError(`vault-transit slot option "${name}" must be a string`, where);
    return value as string | undefined;
  };
  const tokenRef = text('token');
  const approle = options.approle as { roleId?: unknown; secretId?: unknown; mount?: unknown } | undefined;
  if ((tokenRef === undefined) === (approle === undefined)) {
    throw new ConfigError(
      'slot of provider "vault-transit" needs exactly one of options.token (a secret reference, e.g. env:VAULT_TOKEN) and options.approle',
      where,
    );
  }
  let auth: VaultTransitAuth;
  const secret = async (ref: string, what: string): Promise<Buffer> => {
    try {
      return await resolveSecretRef(ref, environment.secrets);
    } catch (cause) {
      throw new ConfigError(`cannot resolve the vault-transit ${what}: ${(cause as Error).message}`, {
        ...where,
        cause,
      });
    }
  };
  const wipeLater: Buffer[] = [];
  try {
    if (tokenRef !== undefined) {
      const token = await secret(tokenRef, 'token');
      wipeLater.push(token);
      auth = { token: trimmed(token) };
    } else {
      if (
        typeof approle !== 'object' ||
        approle === null ||
        typeof approle.roleId !== 'string' ||
        typeof approle.secretId !== 'string' ||
        (approle.mount !== undefined && typeof approle.mount !== 'string')
      ) {
        throw new ConfigError(
          'vault-transit slot option "approle" must be { roleId, secretId (a secret reference), mount? }',
          where,
        );
      }
      const secretId = await secret(approle.secretId, 'AppRole secretId');
      wipeLater.push(secretId);
      auth = {
        approle: {
          roleId: approle.roleId,
          secretId: trimmed(secretId),
          ...(approle.mount !== undefined ? { mount: approle.mount as string } : {}),
        },
      };
    }
    const binding = text('binding');
    const namespace = text('namespace');
    const mount = text('mount');
    const ca = caOf(text('ca'), where);
    const allowHttp = options.allowHttp;
    if (allowHttp !== undefined && typeof allowHttp !== 'boolean') {
      throw new ConfigError('vault-transit slot option "allowHttp" must be true or false', where);
    }
    const cacheMs = options.keyInfoCacheMs;
    if (cacheMs !== undefined && (typeof cacheMs !== 'number' || !(cacheMs >= 0))) {
      throw new ConfigError(
        'vault-transit slot option "keyInfoCacheMs" must be a number of milliseconds',
        where,
      );
    }
    return createVaultTransitProvider({
      address: slot.endpoint,
      keyName: slot.keyId,
      auth,
      ...(mount !== undefined ? { mount } : {}),
      ...(namespace !== undefined ? { namespace } : {}),
      ...(binding !== undefined ? { binding: binding as VaultTransitBinding } : {}),
      ...(ca !== undefined ? { ca } : {}),
      ...(allowHttp !== undefined ? { allowHttp } : {}),
      ...(cacheMs !== undefined ? { keyInfoCacheMs: cacheMs as number } : {}),
    });
  } catch (err) {
    if (err instanceof ConfigError && err.slot === undefined) {
      throw new ConfigError(err.detail, { ...where, cause: err });
    }
    throw err;
  } finally {
    for (const bytes of wipeLater) bytes.fill(0);
  }
}

/** A secret file often ends in a newline: the bytes without trailing whitespace (a view). */
function trimmed(bytes: Buffer): Buffer {
  let end = bytes.length;
  while (end > 0 && (bytes[end - 1] === 0x0a || bytes[end - 1] === 0x0d || bytes[end - 1] === 0x20)) end--;
  return bytes.subarray(0, end);
}

/** The `ca` option: PEM text, or an absolute path to a PEM file. */
function caOf(value: string | undefined, where: ErrorContext): string | undefined {
  if (value === undefined) return undefined;
  let pem = value;
  if (!value.includes('-----BEGIN')) {
    if (!value.startsWith('/')) {
      throw new ConfigError(
        'vault-transit slot option "ca" must be PEM text or an absolute path to a PEM file',
        where,
      );
    }
    try {
      pem = readFileSync(value, 'utf8');
    } catch (cause) {
      throw new ConfigError(`cannot read the vault-transit CA file ${value}`, { ...where, cause });
    }
  }
  if (!pem.includes('-----BEGIN CERTIFICATE-----')) {
    throw new ConfigError('vault-transit slot option "ca" holds no PEM certificate', where);
  }
  return pem;
}

/** The plugin record the registry loads. */
export const plugin: ProviderPlugin = { id, create: createVaultTransitProviderForSlot };
