/**
 * Application values encrypted under DEKs, with the function names of gemstone_utils:
 * `encryptString(plaintext, keyContext)` and `decryptString(token, keyContext)`.
 *
 * @module
 */
import {
  ContextBindingError,
  InvalidArgumentError,
  MalformedTokenError,
  UnknownKeyError,
} from '../errors.js';
import type { Dek } from '../keys/dek.js';
import { algorithm } from './algorithms.js';
import { type EncryptedField, formatEncryptedField, parseEncryptedField } from './format.js';
import { type DekId, parseDekId } from './key-id.js';
import { canonicalJson, type WireParams } from './params.js';

/** A DEK with its id and algorithm: what encrypts and decrypts application values. */
export interface KeyContext {
  /** The DEK's id (segment 2 of every token it writes). */
  readonly keyid: DekId;
  /** The DEK. */
  readonly key: Dek;
  /** Algorithm id, e.g. `A256GCM`. */
  readonly alg: string;
}

/** Maps a token's DEK id to its key context (see `keyctxResolver`). */
export type KeyContextResolver = (keyId: DekId) => KeyContext | Promise<KeyContext>;

/**
 * Optional context binding: a map of names to values (table, column, row, tenant, …) used as
 * AAD. Off by default, so default tokens stay readable by gemstone_utils.
 */
export type BindingContext = Readonly<Record<string, string>>;

/** Options of {@link encryptString} / {@link decryptString}. */
export interface FieldOptions {
  /**
   * Bind the value to this context. Encrypting with it writes `{"aad":"ctx-v1"}` into the
   * token's params, so a reader knows it must supply the same context; the AAD bytes are the
   * UTF-8 of the context's canonical JSON (sorted keys, no spaces, non-ASCII escaped).
   */
  readonly context?: BindingContext;
}

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** The params value that marks a context-bound token. */
export const CONTEXT_BINDING_V1 = 'ctx-v1';

function contextAad(context: BindingContext): Buffer {
  if (typeof context !== 'object' || context === null || Array.isArray(context)) {
    throw new InvalidArgumentError('a binding context must be an object of strings');
  }
  for (const value of Object.values(context)) {
    if (typeof value !== 'string')
      throw new InvalidArgumentError('a binding context must be an object of strings');
  }
  return Buffer.from(canonicalJson(context), 'utf8');
}

/**
 * Encrypts `plaintext` (UTF-8) under the key context: `$alg$keyid$params$blob`.
 * @throws UnsupportedAlgorithmError, NonceLimitError, InvalidArgumentError
 */
export function encryptString(plaintext: string, keyContext: KeyContext, options: FieldOptions = {}): string {
  if (typeof plaintext !== 'string') throw new InvalidArgumentError('plaintext must be a string');
  const alg = algorithm(keyContext.alg);
  const params: WireParams = options.context === undefined ? {} : { aad: CONTEXT_BINDING_V1 };
  const aad = options.context === undefined ? undefined : contextAad(options.context);
  const blob = alg.encrypt(keyContext.key, Buffer.from(plaintext, 'utf8'), aad);
  return formatEncryptedField({ alg: alg.id, keyId: keyContext.keyid, params, blob });
}

/** The AAD a token needs given its params and the caller's options. */
function aadFor(field: EncryptedField, options: FieldOptions): Buffer | undefined {
  const marker = field.params.aad;
  for (const key of Object.keys(field.params)) {
    if (key !== 'aad') throw new MalformedTokenError(`token has an unknown parameter "${key.slice(0, 32)}"`);
  }
  if (marker === undefined) {
    if (options.context !== undefined) {
      throw new ContextBindingError('this value is not bound to a context, but a context was given');
    }
    return undefined;
  }
  if (marker !== CONTEXT_BINDING_V1) throw new MalformedTokenError('token has an unknown context binding');
  if (options.context === undefined) {
    throw new ContextBindingError('this value is bound to a context: pass the same context to decrypt it');
  }
  return contextAad(options.context);
}

/**
 * Decrypts a token with the key context (or a resolver that finds it by the token's DEK id).
 * @throws MalformedTokenError, UnsupportedAlgorithmError, InvalidKeyIdError, UnknownKeyError
 * (a key id other than the context's), ContextBindingError, DecryptFailedError
 */
export function decryptString(token: string, keyContext: KeyContext, options?: FieldOptions): string;
export function decryptString(
  token: string,
  resolver: KeyContextResolver,
  options?: FieldOptions,
): Promise<string>;
export function decryptString(
  token: string,
  keys: KeyContext | KeyContextResolver,
  options: FieldOptions = {},
): string | Promise<string> {
  if (typeof keys === 'function') {
    // The resolver form reports every failure through its promise.
    try {
      return decryptWith(token, keys, options);
    } catch (err) {
      return Promise.reject(err);
    }
  }
  return decryptWith(token, keys, options) as string;
}

function decryptWith(
  token: string,
  keys: KeyContext | KeyContextResolver,
  options: FieldOptions,
): string | Promise<string> {
  const field = parseEncryptedField(token);
  const alg = algorithm(field.alg);
  const keyId = parseDekId(field.keyId);
  const aad = aadFor(field, options);
  const open = (ctx: KeyContext): string => {
    if (ctx.keyid !== keyId)
      throw new UnknownKeyError(keyId, `value was encrypted under DEK ${keyId}, not ${ctx.keyid}`);
    if (ctx.alg !== alg.id)
      throw new UnknownKeyError(keyId, `DEK ${keyId} is a ${ctx.alg} key, the value is ${alg.id}`);
    const plaintext = alg.decrypt(ctx.key, field.blob, aad);
    try {
      return utf8.decode(plaintext);
    } catch {
      throw new MalformedTokenError('decrypted value is not UTF-8 text');
    } finally {
      plaintext.fill(0);
    }
  };
  if (typeof keys === 'function') return Promise.resolve(keys(keyId)).then(open);
  return open(keys);
}
