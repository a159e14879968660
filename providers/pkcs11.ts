/**
 * Provider `pkcs11`: a KEK wrapped under an AES-256 key that never leaves a PKCS#11 token (an
 * HSM, a smart card, SoftHSM2), through `pkcs11js` (an optional peer dependency).
 *
 * **Wrap.** `CKM_AES_GCM` under the token key, with a fresh random 12-byte IV drawn by the
 * provider (PKCS#11 2.40 has the caller supply the IV) and the binding
 * (`bindingAadOf('pkcs11', context)`: provider, slot, index, encryption context, version and
 * creation id) as AAD, 128-bit tag. A token without `CKM_AES_GCM` (by `C_GetMechanismList`), or a
 * slot with `mechanism: wrap-pad`, uses the fallback instead: a fresh random 32-byte key K is
 * wrapped by the token with `CKM_AES_KEY_WRAP_PAD` (RFC 5649, no AAD), and the KEK is sealed
 * locally with AES-256-GCM under K with the binding as AAD, as the `azure-kv` provider does; K is
 * wiped as soon as it is used.
 *
 * Wrapped form (`wrapped_kek`), by its first byte:
 * - `1` (gcm): `1 ‖ iv(12) ‖ ciphertext(32) ‖ tag(16)`, 61 bytes;
 * - `2` (wrap-pad): `2 ‖ KWP(K)(40) ‖ nonce(12) ‖ sealed KEK(32) ‖ tag(16)`, 101 bytes.
 * Either form unwraps whatever the slot's `mechanism` (so an envelope keeps unwrapping when the
 * setting changes).
 *
 * **key_id** is an RFC 7512 PKCS#11 URI of the token and the key:
 * `pkcs11:token=<token label>;object=<key label>` or `pkcs11:token=<token label>;id=%01%02`;
 * region `''`. An envelope whose recorded key is another token or key than the slot's is refused
 * before any call.
 *
 * **Threads.** Every PKCS#11 call is synchronous, so they run in a small pool of `worker_threads`
 * Workers (`options.sessions`, default 2), each with its own session; the main thread keeps each
 * call's deadline, so a slow token never blocks the event loop or other requests. Login is per
 * application and token in PKCS#11: the first session logs in, the others find it logged in. A
 * session lost to a token reset (`CKR_SESSION_HANDLE_INVALID`, `CKR_USER_NOT_LOGGED_IN`,
 * `CKR_DEVICE_REMOVED`, `CKR_TOKEN_NOT_PRESENT`, a `C_Finalize` elsewhere ..., or a vague
 * `CKR_GENERAL_ERROR` / `CKR_DEVICE_ERROR` after which the session is found closed or logged
 * out: SoftHSM2's answer to a call racing a `C_CloseAllSessions`) is opened and logged in again,
 * and the call retried, at most twice in a row (a reset and a logout right after it). A vague
 * code on a session still open stands (on `C_Decrypt` SoftHSM2 means a bad tag by it).
 * pkcs11js's `C_EncryptAsync` family was not used: it covers only the data calls (`C_Login`,
 * `C_OpenSession` and `C_FindObjects` would still block the event loop) and cannot be abandoned
 * at a deadline.
 *
 * **PIN.** A secret reference (`env:`, `file:`, `secret:`), resolved into bytes once and kept as
 * a redacted {@link SecretKey}-like value; each worker gets a copy it wipes on close. pkcs11js's
 * `C_Login` takes a JS string, so a login makes a short-lived string of the PIN that cannot be
 * wiped: a limit of the binding. The PIN never appears in an error or a log.
 *
 * @module
 */
import { createRequire } from 'node:module';
import { isAbsolute } from 'node:path';
import { openAes256Gcm, sealAes256Gcm } from '../src/crypto/aes-gcm.js';
import {
  AccessDeniedError,
  ConfigError,
  type ErrorContext,
  KeyDisabledError,
  KeyNotFoundError,
  KmsEnvelopeError,
  ProviderUnavailableError,
  UnwrapFailedError,
} from '../src/errors.js';
import { KEK_LENGTH, Kek } from '../src/keys/kek.js';
import { SecretKey } from '../src/keys/secret-key.js';
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
  importOptional,
  kekFromPlaintext,
  throwIfAborted,
  whereOf,
} from '../src/providers/support.js';
import { type Pkcs11Outcome, Pkcs11Pool, type Pkcs11Request } from './pkcs11/pool.js';
import type { Pkcs11InjectedFault, Pkcs11Operation, Pkcs11WorkerFailure } from './pkcs11/worker.js';

export type { Pkcs11InjectedFault, Pkcs11Operation, Pkcs11WorkerFailure } from './pkcs11/worker.js';

/** Provider id. */
export const id = 'pkcs11';

/** `gcm`: CKM_AES_GCM on the token; `wrap-pad`: CKM_AES_KEY_WRAP_PAD + a local AES-GCM seal; `auto`: gcm when the token has it. */
export type Pkcs11Mechanism = 'auto' | 'gcm' | 'wrap-pad';

const FORMAT_GCM = 1;
const FORMAT_WRAP_PAD = 2;
const IV_LENGTH = 12;
const TAG_LENGTH = 16;
/** `1 ‖ iv ‖ ct ‖ tag`. */
export const PKCS11_GCM_WRAPPED_LENGTH = 1 + IV_LENGTH + KEK_LENGTH + TAG_LENGTH;
/** RFC 5649 wrap of a 32-byte key: the key plus one 8-byte block. */
const KWP_LENGTH = KEK_LENGTH + 8;
/** `2 ‖ KWP(K) ‖ nonce ‖ sealed ‖ tag`. */
export const PKCS11_WRAP_PAD_WRAPPED_LENGTH = 1 + KWP_LENGTH + IV_LENGTH + KEK_LENGTH + TAG_LENGTH;

const DEFAULT_SESSIONS = 2;
const MAX_SESSIONS = 16;

/** The token PIN, as bytes that print redacted and are wiped on close. */
class TokenPin extends SecretKey {
  declare private readonly brand: 'TokenPin';
  protected get kind(): string {
    return 'PIN';
  }
  constructor(bytes: Uint8Array) {
    super(bytes, bytes.length, 'PIN');
  }
}

/**
 * A test seam, not the HSM: lets a test count the provider's token calls, slow them down or make
 * one fail with a CKR code, and act between calls. Production slots leave it unset.
 */
export interface Pkcs11TestSeam {
  /** Called before each operation is sent to a worker; what it returns the worker injects. */
  beforeCall?(operation: Pkcs11Operation): Pkcs11InjectedFault | undefined;
  /** Called when an operation's answer (or failure) arrives, before the caller sees it. */
  afterCall?(operation: Pkcs11Operation, ok: boolean): void;
}

/** Options of {@link createPkcs11Provider}. */
export interface Pkcs11ProviderOptions {
  /** Absolute path of the PKCS#11 module, e.g. `/usr/lib/softhsm/libsofthsm2.so`. */
  readonly module: string;
  /** The token, by label (`CKA_LABEL` of the token, as `C_GetTokenInfo` reports it) ... */
  readonly tokenLabel?: string;
  /** ... or by slot id (a CK_SLOT_ID; decimal). One of the two. */
  readonly slotId?: number | bigint | string;
  /** The key: its `CKA_LABEL`, or `id:<hex>` for its `CKA_ID`. */
  readonly key: string;
  /** The user PIN bytes (copied; wipe yours). */
  readonly pin: Uint8Array;
  /** Worker threads, one session each (default 2, at most 16). */
  readonly sessions?: number;
  /** Wrap mechanism for new wraps (default `auto`). */
  readonly mechanism?: Pkcs11Mechanism;
  /**
   * Accept a key that is extractable (`CKA_EXTRACTABLE` true) or not sensitive (default false):
   * such a key can leave the token, and whoever holds the PIN can then unwrap every KEK offline.
   */
  readonly allowExtractableKey?: boolean;
  /** Tests only: see {@link Pkcs11TestSeam}. */
  readonly testSeam?: Pkcs11TestSeam;
}

/** A key reference: by label or by `CKA_ID`. */
export type Pkcs11KeyRef =
  | {
      /** The key's `CKA_LABEL`. */
      readonly label: string;
    }
  | {
      /** The key's `CKA_ID`, in lower-case hex. */
      readonly idHex: string;
    };

/**
 * Parses a slot's `key_id`: a key label, or `id:<hex>` for a `CKA_ID`.
 * @throws ConfigError for an empty label, a label with control characters or a bad hex id.
 */
export function parsePkcs11KeyRef(keyId: string, where: ErrorContext = {}): Pkcs11KeyRef {
  if (keyId.startsWith('id:')) {
    const hex = keyId.slice(3);
    if (!/^(?:[0-9a-fA-F]{2}){1,64}$/.test(hex)) {
      throw new ConfigError('pkcs11 "key_id" id:<hex> needs an even number of hex digits (1 to 64 bytes)', {
        ...where,
        provider: id,
      });
    }
    return { idHex: hex.toLowerCase() };
  }
  // biome-ignore lint/suspicious/noControlCharactersInRegex: refusing control characters is the point.
  if (keyId.length === 0 || keyId.length > 256 || /[\u0000-\u001f\u007f]/.test(keyId)) {
    throw new ConfigError('pkcs11 "key_id" must be a key label (1-256 printable characters) or id:<hex>', {
      ...where,
      provider: id,
    });
  }
  return { label: keyId };
}

/** RFC 7512 percent-encoding of a path attribute value. */
const pct = (value: string) =>
  encodeURIComponent(value).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);

/**
 * The `key_id` recorded for a key of a token: `pkcs11:token=<label>;object=<label>` or
 * `pkcs11:token=<label>;id=%01%02` (RFC 7512 PKCS#11 URI).
 */
export function pkcs11KeyUri(tokenLabel: string, key: Pkcs11KeyRef): string {
  const object =
    'label' in key ? `object=${pct(key.label)}` : `id=${key.idHex.replace(/(..)/g, '%$1').toUpperCase()}`;
  return `pkcs11:token=${pct(tokenLabel)};${object}`;
}

/** The token label and key part of a recorded `key_id`, or `undefined` when it is not one of ours. */
function parseKeyUri(uri: string): { token: string; object: string } | undefined {
  const match = /^pkcs11:token=([^;]*);((?:object|id)=[^;]*)$/.exec(uri);
  if (match === null) return undefined;
  try {
    return { token: decodeURIComponent(match[1]!), object: match[2]! };
  } catch {
    return undefined;
  }
}

/** What went wrong inside the worker, as an error's `cause`: the CKR code and function, nothing else. */
export class Pkcs11CallError extends Error {
  /** The PKCS#11 return value, when the token answered one. */
  readonly ckr: number | undefined;
  /** The PKCS#11 function (`C_Decrypt` ...). */
  readonly fn: string | undefined;
  /** The worker's kind of failure (`ckr`, `not-found`, `token-absent` ...). */
  readonly kind: Pkcs11WorkerFailure['kind'];
  constructor(failure: Pkcs11WorkerFailure) {
    super(failure.detail);
    this.name = 'Pkcs11CallError';
    this.ckr = failure.ckr;
    this.fn = failure.fn;
    this.kind = failure.kind;
  }
}

const ACCESS_DENIED = new Set([
  0xa0 /* PIN_INCORRECT */, 0xa1 /* PIN_INVALID */, 0xa2 /* PIN_LEN_RANGE */, 0xa3 /* PIN_EXPIRED */,
  0xa4 /* PIN_LOCKED */, 0x101 /* USER_NOT_LOGGED_IN */, 0x102 /* USER_PIN_NOT_INITIALIZED */,
  0x103 /* USER_TYPE_INVALID */, 0x104 /* USER_ANOTHER_ALREADY_LOGGED_IN */, 0x105 /* USER_TOO_MANY_TYPES */,
  0x0a5 /* PIN_TOO_WEAK */,
]);
const KEY_DISABLED = new Set([
  0x68 /* KEY_FUNCTION_NOT_PERMITTED */, 0x69 /* KEY_NOT_WRAPPABLE */, 0x6a /* KEY_UNEXTRACTABLE */,
]);
/** On the decrypt / unwrap call itself: the input does not authenticate (SoftHSM2 answers GENERAL_ERROR for a bad GCM tag). */
const BAD_INPUT = new Set([
  0x05 /* GENERAL_ERROR */, 0x20 /* DATA_INVALID */, 0x21 /* DATA_LEN_RANGE */,
  0x35 /* AEAD_DECRYPT_FAILED */, 0x40 /* ENCRYPTED_DATA_INVALID */, 0x41 /* ENCRYPTED_DATA_LEN_RANGE */,
  0x110 /* WRAPPED_KEY_INVALID */, 0x112 /* WRAPPED_KEY_LEN_RANGE */,
]);
const CONFIG = new Set([
  0x62 /* KEY_SIZE_RANGE */, 0x63 /* KEY_TYPE_INCONSISTENT */, 0x70 /* MECHANISM_INVALID */,
  0x71 /* MECHANISM_PARAM_INVALID */, 0x113 /* WRAPPING_KEY_HANDLE_INVALID */,
  0x115 /* WRAPPING_KEY_TYPE_INCONSISTENT */, 0xd1 /* TEMPLATE_INCONSISTENT */,
  0xd0 /* TEMPLATE_INCOMPLETE */,
]);

const hex = (ckr: number) => `0x${ckr.toString(16).padStart(8, '0')}`;

/**
 * Maps a failure of the worker to kms-envelope's typed errors. Exported for tests and wrappers.
 * Every CKR not named here (`CKR_DEVICE_ERROR`, `CKR_DEVICE_REMOVED`, `CKR_TOKEN_NOT_PRESENT`,
 * `CKR_FUNCTION_FAILED`, `CKR_SESSION_HANDLE_INVALID` after the retries ...) is a retryable
 * {@link ProviderUnavailableError}.
 */
export function mapPkcs11Failure(
  failure: Pkcs11WorkerFailure,
  operation: 'wrap' | 'unwrap',
  where: ErrorContext,
): KmsEnvelopeError {
  const ctx = { ...where, cause: new Pkcs11CallError(failure) };
  switch (failure.kind) {
    case 'load':
      return new ConfigError('the PKCS#11 module could not be loaded (check options.module)', ctx);
    case 'token-absent':
      return new ProviderUnavailableError(
        'no slot of the PKCS#11 module holds the token (absent or not initialised)',
        ctx,
      );
    case 'not-found':
      return new KeyNotFoundError('the token has no secret key with the slot key_id (label or id)', ctx);
    case 'ambiguous':
      return new ConfigError(
        'more than one key on the token has the slot key_id: use id:<hex> or unique labels',
        ctx,
      );
    case 'disabled':
      return new KeyDisabledError(`the token key may not be used: ${failure.detail}`, ctx);
    case 'key-unfit':
      return new ConfigError(failure.detail, ctx);
    case 'session-lost':
      return new ProviderUnavailableError(
        `the token session was lost under ${failure.fn ?? 'the call'} again after its retries`,
        ctx,
      );
    case 'token-mismatch':
    case 'bad-input':
      return new UnwrapFailedError('cannot unwrap the KEK', ctx);
    case 'other':
      return new KmsEnvelopeError(`unexpected failure of the PKCS#11 ${operation} (${failure.detail})`, ctx);
    case 'ckr':
      break;
  }
  const ckr = failure.ckr ?? -1;
  const call = `${failure.fn ?? 'a PKCS#11 call'} answered ${hex(ckr)}`;
  if (ACCESS_DENIED.has(ckr)) return new AccessDeniedError(`the token refused the login (${call})`, ctx);
  if (KEY_DISABLED.has(ckr)) return new KeyDisabledError(`the token key may not do this (${call})`, ctx);
  const authenticating = failure.fn === 'C_Decrypt' || failure.fn === 'C_UnwrapKey';
  if (operation === 'unwrap' && authenticating && BAD_INPUT.has(ckr)) {
    return new UnwrapFailedError('cannot unwrap the KEK', ctx);
  }
  if (CONFIG.has(ckr))
    return new ConfigError(`the token does not accept the key or mechanism (${call})`, ctx);
  if (ckr === 0x60 /* KEY_HANDLE_INVALID */)
    return new KeyNotFoundError(`the token key went away (${call})`, ctx);
  return new ProviderUnavailableError(`the token failed (${call})`, ctx);
}

class Pkcs11Provider implements KmsProvider {
  readonly id = id;
  readonly #key: Pkcs11KeyRef;
  readonly #objectPart: string;
  readonly #tokenLabel: string | undefined;
  readonly #mechanism: Pkcs11Mechanism;
  readonly #pin: TokenPin;
  readonly #pool: Pkcs11Pool;
  readonly #seam: Pkcs11TestSeam | undefined;
  /** What the token offers, once a call has told. */
  #tokenHasGcm: boolean | undefined;
  #knownTokenLabel: string | undefined;

  constructor(options: Pkcs11ProviderOptions, pkcs11jsPath: string) {
    this.#key = parsePkcs11KeyRef(options.key);
    this.#objectPart = pkcs11KeyUri('', this.#key).split(';')[1]!;
    this.#tokenLabel = options.tokenLabel;
    this.#knownTokenLabel = options.tokenLabel;
    this.#mechanism = options.mechanism ?? 'auto';
    this.#pin = new TokenPin(options.pin);
    this.#seam = options.testSeam;
    this.#pool = new Pkcs11Pool(
      {
        pkcs11jsPath,
        module: options.module,
        tokenLabel: options.tokenLabel,
        slotId: options.slotId === undefined ? undefined : BigInt(options.slotId).toString(),
        keyLabel: 'label' in this.#key ? this.#key.label : undefined,
        keyIdHex: 'idHex' in this.#key ? this.#key.idHex : undefined,
        allowExtractableKey: options.allowExtractableKey === true,
      },
      options.sessions ?? DEFAULT_SESSIONS,
      () => {
        const copy = new ArrayBuffer(this.#pin.length);
        new Uint8Array(copy).set(this.#pin.expose());
        return copy;
      },
    );
  }

  async wrap(kek: Kek, context: WrapContext): Promise<WrappedKek> {
    const where = whereOf(context, id);
    throwIfAborted(context.signal, where);
    const aad = bindingBytes(context, id);
    const useGcm = this.#mechanism === 'gcm' || (this.#mechanism === 'auto' && this.#tokenHasGcm !== false);
    if (useGcm) {
      const answer = await this.#call('encrypt', kek.expose(), aad, context, 'wrap', where);
      if (answer !== undefined) {
        try {
          if (answer.length !== IV_LENGTH + KEK_LENGTH + TAG_LENGTH) {
            throw new ProviderUnavailableError(
              `the token returned ${answer.length} bytes for a GCM wrap`,
              where,
            );
          }
          const out = new Uint8Array(PKCS11_GCM_WRAPPED_LENGTH);
          out[0] = FORMAT_GCM;
          out.set(answer, 1);
          return { wrappedKek: out, keyId: this.#recordedKeyId(), region: '' };
        } finally {
          answer.fill(0);
        }
      }
      // `auto` and the token has no CKM_AES_GCM: the fallback, from now on.
    }
    const bindingKey = Kek.generate();
    try {
      const wrappedKey = await this.#call('wrapKey', bindingKey.expose(), undefined, context, 'wrap', where);
      if (wrappedKey === undefined || wrappedKey.length !== KWP_LENGTH) {
        throw new ProviderUnavailableError(
          'the token returned an unexpected CKM_AES_KEY_WRAP_PAD wrap',
          where,
        );
      }
      const sealed = sealAes256Gcm(bindingKey.expose(), kek.expose(), aad);
      const out = new Uint8Array(PKCS11_WRAP_PAD_WRAPPED_LENGTH);
      out[0] = FORMAT_WRAP_PAD;
      out.set(wrappedKey, 1);
      out.set(sealed, 1 + KWP_LENGTH);
      return { wrappedKek: out, keyId: this.#recordedKeyId(), region: '' };
    } finally {
      bindingKey.zero();
    }
  }

  async unwrap(wrapped: WrappedKek, context: UnwrapContext): Promise<Kek> {
    const where = whereOf(context, id);
    const recorded = parseKeyUri(wrapped.keyId);
    if (recorded === undefined || recorded.object !== this.#objectPart) {
      throw new UnwrapFailedError(
        'the envelope was wrapped by another PKCS#11 key than this slot names',
        where,
      );
    }
    if (this.#tokenLabel !== undefined && recorded.token !== this.#tokenLabel) {
      throw new UnwrapFailedError(
        'the envelope was wrapped on another PKCS#11 token than this slot names',
        where,
      );
    }
    const bytes = wrapped.wrappedKek;
    const format = bytes[0];
    const aad = bindingBytes(context, id);
    throwIfAborted(context.signal, where);
    if (format === FORMAT_GCM && bytes.length === PKCS11_GCM_WRAPPED_LENGTH) {
      const plaintext = await this.#call(
        'decrypt',
        bytes.subarray(1),
        aad,
        context,
        'unwrap',
        where,
        recorded.token,
      );
      return kekFromPlaintext(plaintext, where);
    }
    if (format === FORMAT_WRAP_PAD && bytes.length === PKCS11_WRAP_PAD_WRAPPED_LENGTH) {
      const bindingKey = await this.#call(
        'unwrapKey',
        bytes.subarray(1, 1 + KWP_LENGTH),
        undefined,
        context,
        'unwrap',
        where,
        recorded.token,
      );
      try {
        if (bindingKey === undefined || bindingKey.length !== KEK_LENGTH) {
          throw new UnwrapFailedError('cannot unwrap the KEK', where);
        }
        const plaintext = openAes256Gcm(bindingKey, bytes.subarray(1 + KWP_LENGTH), aad);
        if (plaintext === undefined) throw new UnwrapFailedError('cannot unwrap the KEK', where);
        return kekFromPlaintext(plaintext, where);
      } finally {
        bindingKey?.fill(0);
      }
    }
    throw new UnwrapFailedError('the wrapped KEK is not in a pkcs11 format', where);
  }

  /** Finishes the sessions, stops the workers, finalises the module if this process initialised it, wipes the PIN. */
  async close(): Promise<void> {
    await this.#pool.close();
    this.#pin.zero();
  }

  #recordedKeyId(): string {
    // A wrap has answered, so the token's label is known (from the slot, or from the token).
    return pkcs11KeyUri(this.#knownTokenLabel ?? '', this.#key);
  }

  /**
   * One operation on the token. Resolves the output (the caller wipes it), or `undefined` for an
   * `encrypt` of slot mode `auto` on a token without CKM_AES_GCM.
   */
  async #call(
    op: Pkcs11Operation,
    data: Uint8Array,
    aad: Uint8Array | undefined,
    context: WrapContext,
    operation: 'wrap' | 'unwrap',
    where: ErrorContext,
    expectTokenLabel?: string,
  ): Promise<Buffer | undefined> {
    const fault = this.#seam?.beforeCall?.(op) ?? undefined;
    const request: Pkcs11Request = {
      op: op === 'encrypt' && this.#mechanism === 'auto' && this.#tokenHasGcm === undefined ? 'probe' : op,
      data,
      aad,
      expectTokenLabel: this.#tokenLabel === undefined ? expectTokenLabel : undefined,
      fault,
      signal: context.signal,
      where,
    };
    let outcome: Pkcs11Outcome | undefined;
    try {
      outcome = await this.#pool.run(request);
    } finally {
      this.#seam?.afterCall?.(op, outcome?.ok === true);
    }
    if (!outcome.ok) throw mapPkcs11Failure(outcome.failure, operation, where);
    const { answer } = outcome;
    this.#tokenHasGcm = answer.gcm;
    this.#knownTokenLabel ??= answer.tokenLabel;
    if (request.op === 'probe') {
      // First wrap of an `auto` slot: now that the token's mechanisms are known, the real call.
      if (!answer.gcm) return undefined;
      return this.#call(op, data, aad, context, operation, where, expectTokenLabel);
    }
    if (op === 'encrypt' && !answer.gcm && this.#mechanism === 'auto') {
      answer.data.fill(0);
      return undefined;
    }
    return answer.data;
  }
}

/**
 * Resolves pkcs11js's entry file (the worker loads it by that path).
 * @throws MissingDependencyError when pkcs11js is not installed.
 */
async function pkcs11jsPath(): Promise<string> {
  return importOptional('pkcs11js', 'provider "pkcs11"', async () =>
    createRequire(import.meta.url).resolve('pkcs11js'),
  );
}

function checkOptions(options: Pkcs11ProviderOptions, where: ErrorContext): void {
  const fail = (message: string) => {
    throw new ConfigError(message, { ...where, provider: id });
  };
  if (typeof options.module !== 'string' || !isAbsolute(options.module)) {
    fail('pkcs11 "options.module" must be the absolute path of the PKCS#11 module (.so / .dll / .dylib)');
  }
  const hasLabel = options.tokenLabel !== undefined;
  const hasSlot = options.slotId !== undefined;
  if (hasLabel === hasSlot) fail('pkcs11 needs exactly one of "options.tokenLabel" and "options.slotId"');
  if (
    hasLabel &&
    (typeof options.tokenLabel !== 'string' ||
      options.tokenLabel.length === 0 ||
      options.tokenLabel.length > 32)
  ) {
    fail('pkcs11 "options.tokenLabel" must be the token label (1-32 characters)');
  }
  if (hasSlot && !/^\d{1,20}$/.test(String(options.slotId)))
    fail('pkcs11 "options.slotId" must be a non-negative integer');
  const sessions = options.sessions ?? DEFAULT_SESSIONS;
  if (!Number.isInteger(sessions) || sessions < 1 || sessions > MAX_SESSIONS) {
    fail(`pkcs11 "options.sessions" must be an integer from 1 to ${MAX_SESSIONS}`);
  }
  if (options.mechanism !== undefined && !['auto', 'gcm', 'wrap-pad'].includes(options.mechanism)) {
    fail('pkcs11 "options.mechanism" must be auto, gcm or wrap-pad');
  }
  if (!(options.pin instanceof Uint8Array) || options.pin.length === 0) fail('pkcs11 needs a non-empty PIN');
}

/**
 * Creates a `pkcs11` provider. No token call is made until the first wrap or unwrap.
 * @throws ConfigError for missing or malformed options; MissingDependencyError without pkcs11js.
 */
export async function createPkcs11Provider(
  options: Pkcs11ProviderOptions,
  where: ErrorContext = {},
): Promise<KmsProvider> {
  checkOptions(options, where);
  parsePkcs11KeyRef(options.key, where);
  return new Pkcs11Provider(options, await pkcs11jsPath());
}

/** A slot option, under its camelCase or snake_case name (never both). */
function optionOf(slot: KmsSlot, camel: string, snake?: string): unknown {
  const options = slot.options ?? {};
  const a = options[camel];
  const b = snake === undefined ? undefined : options[snake];
  if (a !== undefined && b !== undefined) {
    throw new ConfigError(`pkcs11 slot option "${camel}" is given twice ("${camel}" and "${snake}")`, {
      slot: slot.name,
      provider: id,
    });
  }
  return a ?? b;
}

const KNOWN_OPTIONS = new Set([
  'module',
  'tokenLabel',
  'token_label',
  'slotId',
  'slot_id',
  'pin',
  'sessions',
  'mechanism',
  'allowExtractableKey',
  'allow_extractable_key',
  'testSeam',
]);

/**
 * Creates the `pkcs11` provider of a slot: `key_id` (key label or `id:<hex>`) and, in `options`,
 * `module`, `tokenLabel` | `slotId`, `pin` (a secret reference), `sessions`, `mechanism`,
 * `allowExtractableKey` (snake_case spellings accepted too).
 * @throws ConfigError for a missing or malformed field (an unknown option too), or a PIN
 * reference that does not resolve; MissingDependencyError without pkcs11js.
 */
export async function createPkcs11ProviderForSlot(
  slot: KmsSlot,
  environment: ProviderEnvironment,
): Promise<KmsProvider> {
  const where = { slot: slot.name, provider: id };
  if (!slot.keyId) {
    throw new ConfigError(
      'slot of provider "pkcs11" needs "key_id": the key label, or id:<hex> for its CKA_ID',
      where,
    );
  }
  for (const name of Object.keys(slot.options ?? {})) {
    if (!KNOWN_OPTIONS.has(name)) {
      throw new ConfigError(
        `unknown pkcs11 slot option ${/^[A-Za-z_]{1,32}$/.test(name) ? `"${name}"` : '(not shown)'}`,
        where,
      );
    }
  }
  const pinRef = optionOf(slot, 'pin');
  if (typeof pinRef !== 'string' || pinRef.length === 0) {
    throw new ConfigError(
      'slot of provider "pkcs11" needs "options.pin": a secret reference (env:NAME, file:/path, secret:name)',
      where,
    );
  }
  const seam = optionOf(slot, 'testSeam');
  const options = {
    module: optionOf(slot, 'module') as string,
    tokenLabel: optionOf(slot, 'tokenLabel', 'token_label') as string | undefined,
    slotId: optionOf(slot, 'slotId', 'slot_id') as number | string | undefined,
    key: slot.keyId,
    sessions: optionOf(slot, 'sessions') as number | undefined,
    mechanism: optionOf(slot, 'mechanism') as Pkcs11Mechanism | undefined,
    allowExtractableKey: optionOf(slot, 'allowExtractableKey', 'allow_extractable_key') === true,
    ...(typeof seam === 'object' && seam !== null ? { testSeam: seam as Pkcs11TestSeam } : {}),
  };
  checkOptions({ ...options, pin: Uint8Array.of(1) }, where);
  parsePkcs11KeyRef(slot.keyId, where);
  const path = await pkcs11jsPath();
  const pin = await resolveSecretRef(pinRef, environment.secrets);
  try {
    if (pin.length === 0) throw new ConfigError('the pkcs11 PIN reference resolved to nothing', where);
    return new Pkcs11Provider({ ...options, pin }, path);
  } finally {
    pin.fill(0);
  }
}

/** The plugin record the registry loads. */
export const plugin: ProviderPlugin = { id, create: createPkcs11ProviderForSlot };
