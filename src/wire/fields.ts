/**
 * Application values encrypted under DEKs, with the names of gemstone_utils
 * (`encrypt_string(plaintext, keyctx)`, `decrypt_string(value, keyctx)`): a string in, a wire
 * token `$alg$keyid$params$blob` out, and back.
 *
 * Context binding (opt-in). `encryptString(v, ctx, { context })` authenticates `context` (a
 * table/column/row, a tenant, …) as AES-GCM additional data, so the token only decrypts with the
 * same context. The binding is visible in the token, so a reader never guesses:
 *
 * - the params segment is `{"aad":"ctx-v1"}` (`eyJhYWQiOiJjdHgtdjEifQ==`) instead of `{}`;
 * - the AAD bytes are the UTF-8 of the context's canonical JSON: keys sorted by code point, no
 *   spaces, non-ASCII and DEL as `\uXXXX` (what Python's
 *   `json.dumps(context, sort_keys=True, separators=(",", ":"))` writes). For
 *   `{ table: 'users', row: '42' }` that is `{"row":"42","table":"users"}`;
 * - decrypting a bound token without a context, or an unbound token with one, is a
 *   `ContextBindingError`; a bound token with another context is a `DecryptFailedError`.
 *
 * Bound tokens are ours: gemstone_utils refuses them (its `A256GCM` takes no params), which fails
 * closed. Default tokens (no context) are byte-compatible with gemstone_utils v0.5.
 *
 * @module
 */
import {
  ContextBindingError,
  DecryptFailedError,
  InvalidArgumentError,
  MalformedTokenError,
} from '../errors.js';
import { Dek } from '../keys/dek.js';
import { algorithm, type WireAlgorithm } from './algorithms.js';
import { joinToken, type ParsedField, parseEncryptedField } from './format.js';
import { type DekId, parseDekId } from './key-id.js';
import {
  canonicalJson,
  EMPTY_PARAMS,
  EMPTY_PARAMS_SEGMENT,
  encodeParams,
  type WireParams,
} from './params.js';

/** A DEK with its id and algorithm: what encrypts and decrypts application values. */
export interface KeyContext {
  /** The DEK's id (segment 2 of every token it writes). */
  readonly keyid: DekId;
  /** The DEK. */
  readonly key: Dek;
  /** Algorithm id, e.g. `A256GCM`. */
  readonly alg: string;
}

/**
 * Finds the key context of a token's DEK id (e.g. `keyctxResolver(keyring)`). May return a
 * promise; it should throw a typed error (`UnknownKeyError`) for an id it does not know.
 */
export type KeyContextResolver = (keyId: DekId) => KeyContext | Promise<KeyContext>;

/**
 * What a value is bound to: names and values such as table, column, row or tenant. Authenticated
 * (not encrypted, not stored in the token): the reader must supply it again.
 */
export type BindingContext = Readonly<Record<string, string>>;

/** Options of {@link encryptString} / {@link decryptString}. */
export interface FieldOptions {
  /**
   * Bind the value to this context (see the module comment): written as `{"aad":"ctx-v1"}` in
   * the params, required again on read. Off by default, which keeps tokens gemstone-compatible.
   */
  readonly context?: BindingContext;
}

/** The params name that marks a context-bound token. */
export const CONTEXT_BINDING_PARAM = 'aad';

/** The value of {@link CONTEXT_BINDING_PARAM}: version 1 of the binding (AAD = canonical JSON). */
export const CONTEXT_BINDING_V1 = 'ctx-v1';

/** The params segment of a bound token: `{"aad":"ctx-v1"}` → `eyJhYWQiOiJjdHgtdjEifQ==`. */
const BOUND_PARAMS_SEGMENT = encodeParams({ [CONTEXT_BINDING_PARAM]: CONTEXT_BINDING_V1 });

// A leading BOM is text, not a marker: kept, as Python's bytes.decode('utf-8') keeps it.
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

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

/** `String.prototype.isWellFormed` (ES2024, in Node 20): not in the ES2022 lib used here. */
interface WellFormedString {
  isWellFormed(): boolean;
}

function requireKeyContext(keyContext: KeyContext): void {
  if (typeof keyContext !== 'object' || keyContext === null || !(keyContext.key instanceof Dek)) {
    throw new InvalidArgumentError('a key context is { keyid, key: Dek, alg }');
  }
}

/**
 * Encrypts `plaintext` (as UTF-8) under the key context and returns the token
 * `$alg$keyid$params$blob`: a fresh random 96-bit nonce, the key id canonical, params `e30=`
 * (or the binding marker when `options.context` is given).
 *
 * Security: the token reveals the key id and the plaintext's length in UTF-8 bytes. Each call
 * counts against the DEK's limit of 2^32 encryptions.
 * @throws InvalidArgumentError (plaintext not a string or with a lone surrogate, which UTF-8
 * cannot carry; malformed key context or binding context; key of the wrong length),
 * InvalidKeyIdError (key id not a UUID), UnsupportedAlgorithmError, NonceLimitError.
 */
export function encryptString(plaintext: string, keyContext: KeyContext, options?: FieldOptions): string {
  if (typeof plaintext !== 'string') throw new InvalidArgumentError('plaintext must be a string');
  // UTF-8 cannot carry a lone surrogate: Buffer.from would write U+FFFD and the value would not
  // round-trip (Python's str.encode refuses it too).
  if (!(plaintext as unknown as WellFormedString).isWellFormed()) {
    throw new InvalidArgumentError('plaintext has a lone UTF-16 surrogate and cannot be encoded as UTF-8');
  }
  requireKeyContext(keyContext);
  const alg = algorithm(keyContext.alg);
  const keyId = parseDekId(keyContext.keyid);
  const context = options?.context;
  const aad = context === undefined ? undefined : contextAad(context);
  const paramsSegment = context === undefined ? EMPTY_PARAMS_SEGMENT : BOUND_PARAMS_SEGMENT;
  const blob =
    alg.encryptText !== undefined
      ? alg.encryptText(keyContext.key, plaintext, aad)
      : alg.encrypt(keyContext.key, Buffer.from(plaintext, 'utf8'), aad);
  return joinToken(alg.id, keyId, paramsSegment, blob);
}

/** A parsed token with its algorithm and the AAD its binding needs. */
interface Opening {
  readonly field: ParsedField;
  readonly alg: WireAlgorithm;
  readonly aad: Buffer | undefined;
}

/** The AAD `params` and the caller's options call for. A reader never guesses. */
function bindingAad(
  params: WireParams,
  alg: WireAlgorithm,
  options: FieldOptions | undefined,
): Buffer | undefined {
  const context = options?.context;
  let algorithmParams = params;
  let bound = false;
  if (params !== EMPTY_PARAMS && CONTEXT_BINDING_PARAM in params) {
    const { [CONTEXT_BINDING_PARAM]: marker, ...rest } = params;
    if (marker !== CONTEXT_BINDING_V1) throw new MalformedTokenError('token has an unknown context binding');
    algorithmParams = rest;
    bound = true;
  }
  const problem = alg.paramsProblem(algorithmParams);
  if (problem !== undefined) throw new MalformedTokenError(problem);
  if (!bound) {
    if (context !== undefined) {
      throw new ContextBindingError('this value is not bound to a context, but a context was given');
    }
    return undefined;
  }
  if (context === undefined) {
    throw new ContextBindingError('this value is bound to a context: pass the same context to decrypt it');
  }
  return contextAad(context);
}

function prepare(token: string, options: FieldOptions | undefined): Opening {
  const field = parseEncryptedField(token);
  const alg = algorithm(field.alg);
  return { field, alg, aad: bindingAad(field.params, alg, options) };
}

function open({ field, alg, aad }: Opening, keyContext: KeyContext): string {
  requireKeyContext(keyContext);
  const keyId = field.keyId;
  if (keyContext.keyid !== keyId) {
    const given = parseDekId(keyContext.keyid);
    if (given !== keyId)
      throw new DecryptFailedError(`the value was encrypted under DEK ${keyId}, not under DEK ${given}`);
  }
  if (keyContext.alg !== alg.id) {
    throw new DecryptFailedError(
      `the value is ${alg.id}, but DEK ${keyId} is given as a ${String(keyContext.alg).slice(0, 32)} key`,
    );
  }
  let plaintext: Buffer;
  try {
    plaintext = alg.decrypt(keyContext.key, field.blob, aad);
  } catch (err) {
    if (err instanceof DecryptFailedError) {
      // Says which key, not why: wrong key, wrong context and tampering look the same on purpose.
      throw new DecryptFailedError(`the value does not decrypt under DEK ${keyId}`);
    }
    throw err;
  }
  try {
    return utf8.decode(plaintext);
  } catch {
    throw new MalformedTokenError(`the value under DEK ${keyId} decrypts, but not to UTF-8 text`);
  } finally {
    plaintext.fill(0);
  }
}

/**
 * Decrypts a token with its key context, or with a resolver that finds the context by the
 * token's DEK id (then the result is a promise, and every failure a rejection). Reads the legacy
 * four-part form too (a one-time `DeprecationWarning`).
 *
 * Security: a bound token (see the module comment) needs the same `options.context`.
 * @throws MalformedTokenError (structure, base64, params, blob length, not UTF-8),
 * InvalidKeyIdError (segment 2 not a UUID; integer ids with a hint to migrate),
 * UnsupportedAlgorithmError, ContextBindingError (binding and context disagree),
 * DecryptFailedError (a key context for another DEK id or algorithm, wrong key, wrong context,
 * tampered), InvalidArgumentError (malformed key context), and whatever the resolver throws.
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
  options?: FieldOptions,
): string | Promise<string> {
  if (typeof keys !== 'function') return open(prepare(token, options), keys);
  return new Promise<Opening>((resolve) => resolve(prepare(token, options))).then(async (opening) =>
    open(opening, await keys(opening.field.keyId)),
  );
}
