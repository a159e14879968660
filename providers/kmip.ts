/**
 * Provider `kmip`: a KMIP 1.2+ key server (Thales, Fortanix, Entrust, HashiCorp Vault Enterprise,
 * PyKMIP ...) over TLS with a client certificate, through kms-envelope's own small KMIP client
 * (`src/kmip/`; no npm package needed). Two modes, chosen per slot with `options.mode`, as
 * MongoDB's client-side encryption has:
 *
 * - `key` (default): the provider fetches the wrapping key with `Get` (a 256-bit AES Symmetric
 *   Key or a 32-byte Secret Data), in the same request as `Get Attributes` of its `State`, and
 *   seals the KEK locally with AES-256-GCM, the binding (provider, slot, index, context, version,
 *   creation id) as AAD. The key bytes are held in a buffer of the provider's own, cached for
 *   `keyCacheMs` (default 60 s; 0: fetched on every call) and zeroed when evicted and on close.
 *   The wrapping key leaves the server: use it when the server cannot encrypt with GCM.
 * - `delegated`: the server encrypts and decrypts (`Encrypt` / `Decrypt`, KMIP 1.4, AES-GCM with
 *   the binding as Authenticated Encryption Additional Data); the key never leaves the server.
 *   Unauthenticated modes (CBC and the like) are refused: they could not bind the envelope to its
 *   index. Before its first use the provider checks once that the server really enforces the
 *   additional data (a probe encrypted under one AAD must not decrypt under another), so a server
 *   that ignores the field is refused rather than trusted.
 *
 * Both modes refuse a key whose State is not Active (Pre-Active, Deactivated, Compromised) with
 * `KeyDisabledError`, for wraps and unwraps alike. KMIP has no way back from Deactivated: to
 * rotate away from a revoked key, rotate before revoking it.
 *
 * Wrapped form: `format(1) ‖ nonce(12) ‖ sealed KEK(32) ‖ tag(16)`, format 1 = `key` mode, 2 =
 * `delegated`. `key_id` records the KMIP Unique Identifier that did the wrap; with a
 * `name:<Name>` slot, unwrap refuses a recorded object that does not carry that Name.
 *
 * Tested against PyKMIP 0.10 (Debian `python3-pykmip`): both modes work there.
 *
 * @module
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { isAbsolute } from 'node:path';
import { openAes256Gcm, sealAes256Gcm } from '../src/crypto/aes-gcm.js';
import {
  ConfigError,
  type ErrorContext,
  KeyDisabledError,
  KeyNotFoundError,
  type KmsEnvelopeError,
  UnsupportedAlgorithmError,
  UnwrapFailedError,
} from '../src/errors.js';
import { KEK_LENGTH, type Kek } from '../src/keys/kek.js';
import { resolveSecretRef } from '../src/keys/secret-ref.js';
import {
  KMIP_1_2,
  KMIP_1_4,
  type KmipAttributes,
  type KmipBatchResult,
  KmipClient,
  type KmipManagedSecret,
  kmipItems,
  kmipParse,
  kmipResultError,
} from '../src/kmip/client.js';
import { CryptographicAlgorithm, KeyFormatType, ObjectType, STATE_NAMES, State } from '../src/kmip/tags.js';
import type {
  KmsProvider,
  ProviderEnvironment,
  ProviderPlugin,
  UnwrapContext,
  WrapContext,
  WrappedKek,
} from '../src/providers/provider.js';
import type { KmsSlot } from '../src/providers/slot.js';
import { bindingBytes, kekFromPlaintext, throwIfAborted, whereOf } from '../src/providers/support.js';

/** Provider id. */
export const id = 'kmip';

/** The two modes (see the module comment). */
export type KmipMode = 'key' | 'delegated';

const FORMAT = { key: 1, delegated: 2 } as const;
const NONCE_LENGTH = 12;
const TAG_LENGTH = 16;
/** Length of a `kmip` wrapped KEK: format ‖ nonce ‖ ciphertext ‖ tag. */
export const KMIP_WRAPPED_LENGTH = 1 + NONCE_LENGTH + KEK_LENGTH + TAG_LENGTH;
/** KMIP's registered port. */
export const KMIP_DEFAULT_PORT = 5696;
const NAME_PREFIX = 'name:';
const MAX_CACHED_KEYS = 16;

/** Options of {@link createKmipProvider}. */
export interface KmipProviderOptions {
  /** The KMIP Unique Identifier of the key, or `name:<Name>` (found with Locate). */
  readonly keyId: string;
  /** A ready client (tests, custom TLS); otherwise {@link connection} is required. */
  readonly client?: KmipClient;
  /** How to reach the server when no `client` is given. */
  readonly connection?: {
    /** Server host name or IP address. */
    readonly host: string;
    /** Server port (KMIP's registered port is 5696). */
    readonly port: number;
    /** CA certificate(s), PEM, that issued the server's certificate (default: Node's root store). */
    readonly ca?: string;
    /** The client certificate (chain), PEM. */
    readonly cert: string;
    /** Client private key, PEM: used to build the TLS context, then wiped by the provider. */
    readonly key: Buffer;
    /** TLS server name, when `host` is an IP address or not the certificate's name. */
    readonly servername?: string;
    /** TLS connections kept open for concurrent calls (default 2). */
    readonly poolSize?: number;
  };
  /** `key` (default) or `delegated`. */
  readonly mode?: KmipMode;
  /** `key` mode: how long a fetched wrapping key is kept (default 60 000 ms; 0 = not kept). */
  readonly keyCacheMs?: number;
}

interface CachedKey {
  readonly key: Buffer;
  readonly expires: number;
}

class KmipProvider implements KmsProvider {
  readonly id = id;
  readonly #client: KmipClient;
  readonly #ownsClient: boolean;
  readonly #mode: KmipMode;
  readonly #uid: string | undefined;
  readonly #name: string | undefined;
  readonly #cacheMs: number;
  readonly #keys = new Map<string, CachedKey>();
  #located: { uid: string; expires: number } | undefined;
  #aadChecked: Promise<void> | undefined;
  #closed = false;

  constructor(client: KmipClient, ownsClient: boolean, keyId: string, mode: KmipMode, cacheMs: number) {
    this.#client = client;
    this.#ownsClient = ownsClient;
    this.#mode = mode;
    if (keyId.startsWith(NAME_PREFIX)) this.#name = keyId.slice(NAME_PREFIX.length);
    else this.#uid = keyId;
    this.#cacheMs = cacheMs;
  }

  async wrap(kek: Kek, context: WrapContext): Promise<WrappedKek> {
    const where = whereOf(context, id);
    throwIfAborted(context.signal, where);
    const call = { where, ...(context.signal ? { signal: context.signal } : {}) };
    const uid = await this.#currentUid(call);
    const aad = bindingBytes(context, id);
    if (this.#mode === 'key') {
      const { key, transient } = await this.#wrappingKey(uid, call);
      // close() wipes cached keys at once: never seal under a wiped (all-zero) key.
      if (this.#closed) throw new ConfigError('the kmip provider was closed', where);
      try {
        const sealed = sealAes256Gcm(key, kek.expose(), aad);
        return { wrappedKek: Buffer.concat([Uint8Array.of(FORMAT.key), sealed]), keyId: uid, region: '' };
      } finally {
        if (transient) key.fill(0);
      }
    }
    await this.#checkAad(call);
    const iv = randomBytes(NONCE_LENGTH);
    const result = await this.#client.batch(
      [
        kmipItems.getAttributes(uid, ['State']),
        kmipItems.encrypt(uid, kek.expose(), { iv, aad, tagLength: TAG_LENGTH }),
      ],
      ([attrs, encrypted]) => {
        this.#checkState(attrs!, uid, where);
        if (encrypted!.failure !== undefined) throw this.#delegatedFailure(encrypted!, where);
        return kmipParse.encrypt(encrypted!.payload!);
      },
      call,
    );
    if (
      result.tag?.length !== TAG_LENGTH ||
      result.data.length !== KEK_LENGTH ||
      (result.iv !== undefined && !result.iv.equals(iv))
    ) {
      result.data.fill(0);
      throw new UnsupportedAlgorithmError(
        'the KMIP server did not answer with AES-GCM (no 16-byte authentication tag): delegated mode cannot bind the envelope; use mode "key"',
        where,
      );
    }
    return {
      wrappedKek: Buffer.concat([Uint8Array.of(FORMAT.delegated), iv, result.data, result.tag]),
      keyId: uid,
      region: '',
    };
  }

  async unwrap(wrapped: WrappedKek, context: UnwrapContext): Promise<Kek> {
    const where = whereOf(context, id);
    const uid = wrapped.keyId;
    if (this.#uid !== undefined && uid !== this.#uid) {
      throw new UnwrapFailedError(
        `the envelope was wrapped under KMIP object "${uid}", not this slot's "${this.#uid}"`,
        where,
      );
    }
    const bytes = wrapped.wrappedKek;
    if (bytes.length !== KMIP_WRAPPED_LENGTH || bytes[0] !== FORMAT[this.#mode] || uid.length === 0) {
      throw new UnwrapFailedError(`the wrapped KEK is not in the kmip ${this.#mode}-mode format`, where);
    }
    throwIfAborted(context.signal, where);
    const call = { where, ...(context.signal ? { signal: context.signal } : {}) };
    const aad = bindingBytes(context, id);
    if (this.#mode === 'key') {
      const { key, transient } = await this.#wrappingKey(uid, call);
      if (this.#closed) throw new ConfigError('the kmip provider was closed', where);
      let plaintext: Buffer | undefined;
      try {
        plaintext = openAes256Gcm(key, bytes.subarray(1), aad);
      } finally {
        if (transient) key.fill(0);
      }
      if (plaintext === undefined) throw new UnwrapFailedError('cannot unwrap the KEK', where);
      return kekFromPlaintext(plaintext, where);
    }
    await this.#checkAad(call);
    const iv = bytes.subarray(1, 1 + NONCE_LENGTH);
    const ciphertext = bytes.subarray(1 + NONCE_LENGTH, 1 + NONCE_LENGTH + KEK_LENGTH);
    const tag = bytes.subarray(1 + NONCE_LENGTH + KEK_LENGTH);
    const plaintext = await this.#client.batch(
      [
        kmipItems.getAttributes(uid, this.#name !== undefined ? ['State', 'Name'] : ['State']),
        kmipItems.decrypt(uid, ciphertext, { iv, aad, tag, tagLength: TAG_LENGTH }),
      ],
      ([attrs, decrypted]) => {
        const attributes = this.#checkState(attrs!, uid, where);
        this.#checkName(attributes, uid, where);
        if (decrypted!.failure !== undefined) throw this.#delegatedFailure(decrypted!, where);
        return kmipParse.decrypt(decrypted!.payload!);
      },
      call,
    );
    return kekFromPlaintext(plaintext, where);
  }

  async close(): Promise<void> {
    this.#closed = true;
    for (const cached of this.#keys.values()) cached.key.fill(0);
    this.#keys.clear();
    this.#located = undefined;
    if (this.#ownsClient) await this.#client.close();
  }

  /** The object new wraps use: the slot's identifier, or the newest Active object with the slot's Name. */
  async #currentUid(call: { where: ErrorContext; signal?: AbortSignal }): Promise<string> {
    if (this.#uid !== undefined) return this.#uid;
    const now = Date.now();
    if (this.#located !== undefined && this.#located.expires > now) return this.#located.uid;
    const found = await this.#client.locate({ name: this.#name!, state: State.Active }, call);
    const uid = found[0];
    if (uid === undefined) {
      throw new KeyNotFoundError(
        `no Active KMIP object is named "${this.#name}" (or this client may not see it)`,
        call.where,
      );
    }
    if (this.#cacheMs > 0) this.#located = { uid, expires: now + this.#cacheMs };
    return uid;
  }

  /** `key` mode: the wrapping key of `uid`, from the cache or fetched (Get + Get Attributes in one request). */
  async #wrappingKey(
    uid: string,
    call: { where: ErrorContext; signal?: AbortSignal },
  ): Promise<{ key: Buffer; transient: boolean }> {
    const now = Date.now();
    const cached = this.#keys.get(uid);
    if (cached !== undefined && cached.expires > now) return { key: cached.key, transient: false };
    if (cached !== undefined) this.#evict(uid, cached);
    const names = this.#name !== undefined ? ['State', 'Name'] : ['State'];
    const secret = await this.#client.batch(
      [kmipItems.getAttributes(uid, names), kmipItems.get(uid)],
      ([attrs, got]) => {
        const attributes = this.#checkState(attrs!, uid, call.where);
        this.#checkName(attributes, uid, call.where);
        if (got!.failure !== undefined) throw kmipResultError(got!.failure, call.where);
        return kmipParse.get(got!.payload!);
      },
      call,
    );
    const key = keyBytesOf(secret, call.where);
    if (this.#closed) {
      key.fill(0);
      throw new ConfigError('the kmip provider was closed', call.where);
    }
    if (this.#cacheMs > 0) {
      // A concurrent cold call may have cached the same key meanwhile: keep one copy.
      const raced = this.#keys.get(uid);
      if (raced !== undefined && raced.expires > Date.now()) {
        key.fill(0);
        return { key: raced.key, transient: false };
      }
      if (raced !== undefined) this.#evict(uid, raced);
      if (this.#keys.size >= MAX_CACHED_KEYS) {
        const [oldest, entry] = this.#keys.entries().next().value as [string, CachedKey];
        this.#evict(oldest, entry);
      }
      this.#keys.set(uid, { key, expires: now + this.#cacheMs });
      return { key, transient: false };
    }
    // Not cached: the caller wipes it right after its seal or open.
    return { key, transient: true };
  }

  /**
   * Drops a cached key and wipes it once the current turn is over: a caller that was handed it
   * in this turn seals or opens with it synchronously when its await resumes, before then.
   */
  #evict(uid: string, entry: CachedKey): void {
    if (this.#keys.get(uid) === entry) this.#keys.delete(uid);
    setImmediate(() => entry.key.fill(0));
  }

  /** The state check of a Get Attributes result: Active, or `KeyDisabledError`. */
  #checkState(result: KmipBatchResult, uid: string, where: ErrorContext): KmipAttributes {
    if (result.failure !== undefined) throw kmipResultError(result.failure, where);
    const attributes = kmipParse.attributes(result.payload!);
    if (attributes.state !== State.Active) {
      const state =
        attributes.state === undefined
          ? 'unknown'
          : (STATE_NAMES[attributes.state] ?? String(attributes.state));
      throw new KeyDisabledError(`the KMIP object "${uid}" is not Active (State ${state})`, where);
    }
    return attributes;
  }

  /** With a `name:` slot, the object must carry the slot's Name (the envelope names the object). */
  #checkName(attributes: KmipAttributes, uid: string, where: ErrorContext): void {
    if (this.#name !== undefined && !attributes.names.includes(this.#name)) {
      throw new UnwrapFailedError(`the KMIP object "${uid}" is not named "${this.#name}"`, where);
    }
  }

  /** An Encrypt/Decrypt failure: parameters the server lacks mean it cannot do delegated mode. */
  #delegatedFailure(result: KmipBatchResult, where: ErrorContext): KmsEnvelopeError {
    const err = kmipResultError(result.failure!, where);
    if (err instanceof ConfigError || err instanceof UnsupportedAlgorithmError) {
      return new UnsupportedAlgorithmError(
        `the KMIP server refused AES-GCM with additional data (${err.detail}): delegated mode needs KMIP 1.4 authenticated encryption; use mode "key"`,
        { ...where, cause: err },
      );
    }
    return err;
  }

  /**
   * Once per provider: a probe sealed under one additional data must not open under another, else
   * the server ignores the binding and delegated mode would not bind envelopes to their index.
   */
  #checkAad(call: { where: ErrorContext; signal?: AbortSignal }): Promise<void> {
    if (this.#aadChecked === undefined) {
      this.#aadChecked = (async () => {
        const uid = await this.#currentUid(call);
        const iv = randomBytes(NONCE_LENGTH);
        const probe = randomBytes(16);
        const sealed = await this.#client.batch(
          [
            kmipItems.encrypt(uid, probe, {
              iv,
              aad: Buffer.from('kms-envelope/kmip-aad-probe/a'),
              tagLength: TAG_LENGTH,
            }),
          ],
          ([r]) => {
            if (r!.failure !== undefined) throw this.#delegatedFailure(r!, call.where);
            return kmipParse.encrypt(r!.payload!);
          },
          call,
        );
        if (sealed.tag?.length !== TAG_LENGTH) {
          throw new UnsupportedAlgorithmError(
            'the KMIP server did not answer with AES-GCM (no 16-byte authentication tag): use mode "key"',
            call.where,
          );
        }
        const opened = await this.#client
          .decrypt(
            uid,
            sealed.data,
            { iv, aad: Buffer.from('kms-envelope/kmip-aad-probe/b'), tag: sealed.tag },
            call,
          )
          .catch((err: unknown) => {
            if (err instanceof UnwrapFailedError) return undefined;
            throw err;
          });
        if (opened !== undefined) {
          opened.fill(0);
          throw new ConfigError(
            'the KMIP server decrypted under other additional data than it encrypted with: it ignores the binding, so delegated mode is refused; use mode "key"',
            call.where,
          );
        }
      })();
      this.#aadChecked.catch(() => {
        this.#aadChecked = undefined;
      });
    }
    return this.#aadChecked;
  }
}

/** The 32 key bytes of a fetched object, or `ConfigError` (and the bytes wiped). */
function keyBytesOf(secret: KmipManagedSecret, where: ErrorContext): Buffer {
  const material = secret.keyMaterial;
  const aes256 =
    secret.objectType === ObjectType.SymmetricKey &&
    (secret.algorithm === undefined || secret.algorithm === CryptographicAlgorithm.Aes) &&
    (secret.keyFormatType === KeyFormatType.Raw ||
      secret.keyFormatType === KeyFormatType.TransparentSymmetricKey);
  const secretData = secret.objectType === ObjectType.SecretData;
  if ((!aes256 && !secretData) || material.length !== KEK_LENGTH) {
    material.fill(0);
    throw new ConfigError(
      `the KMIP object "${secret.uniqueIdentifier}" is not a 256-bit AES key or 32-byte Secret Data (object type ${secret.objectType}, ${material.length} bytes)`,
      where,
    );
  }
  return material;
}

/**
 * Creates a `kmip` provider.
 * @throws ConfigError for a missing key id, an unknown mode, or neither `client` nor `connection`.
 */
export function createKmipProvider(options: KmipProviderOptions): KmsProvider {
  const mode = options.mode ?? 'key';
  if (mode !== 'key' && mode !== 'delegated')
    throw new ConfigError(`kmip "mode" must be "key" or "delegated", not "${String(mode)}"`, {
      provider: id,
    });
  if (!options.keyId || options.keyId === NAME_PREFIX)
    throw new ConfigError('kmip needs a key id (a Unique Identifier or name:<Name>)', { provider: id });
  const cacheMs = options.keyCacheMs ?? 60_000;
  if (!Number.isFinite(cacheMs) || cacheMs < 0)
    throw new ConfigError('kmip "keyCacheMs" must be a number of milliseconds ≥ 0', { provider: id });
  let client = options.client;
  if (client === undefined) {
    const c = options.connection;
    if (c === undefined) throw new ConfigError('kmip needs a client or a connection', { provider: id });
    try {
      client = new KmipClient({
        host: c.host,
        port: c.port,
        ...(c.ca !== undefined ? { ca: c.ca } : {}),
        cert: c.cert,
        key: c.key,
        ...(c.servername !== undefined ? { servername: c.servername } : {}),
        ...(c.poolSize !== undefined ? { poolSize: c.poolSize } : {}),
        protocolVersion: mode === 'delegated' ? KMIP_1_4 : KMIP_1_2,
      });
    } finally {
      c.key.fill(0);
    }
  }
  return new KmipProvider(client, options.client === undefined, options.keyId, mode, cacheMs);
}

/** Parses `kmips://host:port`, `host:port` or `host` (port 5696). @throws ConfigError */
export function parseKmipEndpoint(
  endpoint: string,
  where: ErrorContext = {},
): {
  /** The server's host name or IP address. */
  host: string;
  /** Its port (5696 when the endpoint names none). */
  port: number;
} {
  const match = /^(?:kmips:\/\/)?(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::(\d{1,5}))?\/?$/.exec(
    endpoint.trim(),
  );
  const port = match?.[2] === undefined ? KMIP_DEFAULT_PORT : Number(match[2]);
  if (match === null || port < 1 || port > 65535) {
    throw new ConfigError('kmip "endpoint" must be kmips://host:port or host:port', {
      ...where,
      provider: id,
    });
  }
  return { host: match[1]!.replace(/^\[|\]$/g, ''), port };
}

/** A PEM option: the PEM text itself, or an absolute path to a PEM file. */
function pemOption(slot: KmsSlot, name: string, required: boolean): string | undefined {
  const value = slot.options?.[name];
  const where = { slot: slot.name, provider: id };
  if (value === undefined) {
    if (required)
      throw new ConfigError(`kmip slot option "${name}" is required (PEM text or an absolute path)`, where);
    return undefined;
  }
  if (typeof value !== 'string')
    throw new ConfigError(`kmip slot option "${name}" must be PEM text or an absolute path`, where);
  if (value.includes('-----BEGIN')) return value;
  if (!isAbsolute(value))
    throw new ConfigError(`kmip slot option "${name}" must be PEM text or an absolute path`, where);
  try {
    return readFileSync(value, 'utf8');
  } catch (cause) {
    throw new ConfigError(
      `kmip slot option "${name}": the file cannot be read (${(cause as NodeJS.ErrnoException).code ?? 'error'})`,
      {
        ...where,
        cause,
      },
    );
  }
}

/**
 * Creates the `kmip` provider of a slot: `key_id` (Unique Identifier or `name:<Name>`),
 * `endpoint` (`kmips://host:port`), and in `options`: `cert` (client certificate, PEM or path),
 * `key` (a secret reference to the client private key: `file:`, `env:`, `secret:`), `ca` (PEM or
 * path), `servername`, `mode` (`key` | `delegated`), `keyCacheMs`, `poolSize`.
 * @throws ConfigError naming the missing or malformed field (never a key).
 */
export async function createKmipProviderForSlot(
  slot: KmsSlot,
  environment: ProviderEnvironment,
): Promise<KmsProvider> {
  const where = { slot: slot.name, provider: id };
  if (!slot.keyId) {
    throw new ConfigError(
      'slot of provider "kmip" needs "key_id": the KMIP Unique Identifier or name:<Name>',
      where,
    );
  }
  if (!slot.endpoint)
    throw new ConfigError('slot of provider "kmip" needs "endpoint": kmips://host:port', where);
  const { host, port } = parseKmipEndpoint(slot.endpoint, where);
  const options = slot.options ?? {};
  const keyRef = options.key;
  if (typeof keyRef !== 'string' || keyRef === '') {
    throw new ConfigError(
      'kmip slot option "key" must be a secret reference to the client private key (file:, env:, secret:)',
      where,
    );
  }
  const mode = options.mode ?? 'key';
  if (mode !== 'key' && mode !== 'delegated')
    throw new ConfigError('kmip slot option "mode" must be "key" or "delegated"', where);
  const servername = options.servername;
  if (servername !== undefined && typeof servername !== 'string')
    throw new ConfigError('kmip slot option "servername" must be a string', where);
  for (const numeric of ['keyCacheMs', 'poolSize'] as const) {
    const v = options[numeric];
    if (v !== undefined && (typeof v !== 'number' || !Number.isFinite(v) || v < 0))
      throw new ConfigError(`kmip slot option "${numeric}" must be a number ≥ 0`, where);
  }
  const cert = pemOption(slot, 'cert', true)!;
  const ca = pemOption(slot, 'ca', false);
  const key = await resolveSecretRef(keyRef, environment.secrets);
  try {
    return createKmipProvider({
      keyId: slot.keyId,
      mode,
      connection: {
        host,
        port,
        cert,
        key,
        ...(ca !== undefined ? { ca } : {}),
        ...(servername !== undefined ? { servername } : {}),
        ...(options.poolSize !== undefined ? { poolSize: options.poolSize as number } : {}),
      },
      ...(options.keyCacheMs !== undefined ? { keyCacheMs: options.keyCacheMs as number } : {}),
    });
  } catch (err) {
    if (err instanceof ConfigError && err.slot === undefined)
      throw new ConfigError(err.detail, { ...where, cause: err });
    throw err;
  } finally {
    key.fill(0);
  }
}

/** The plugin record the registry loads. */
export const plugin: ProviderPlugin = { id, create: createKmipProviderForSlot };
