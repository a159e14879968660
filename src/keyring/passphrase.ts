/**
 * Passphrase KEKs: PBKDF2-HMAC-SHA256 with parameters persisted beside the envelope (record
 * `meta/kdf`) as JSON — `{"hash":"sha256","iterations":600000,"kdf":"pbkdf2-hmac-sha256",
 * "length":32,"salt":"…"}` — which are the source of truth whenever the KEK is derived again.
 * Use with provider `none` (nothing key-derived is stored but the KEK check).
 *
 * Floors: new parameters always have 600,000 iterations or more and a 16-byte random salt; stored
 * parameters are read only with 100,000 to 10,000,000 iterations, a salt of 16 to 1024 bytes and
 * length 32, so a store writer can neither make this process derive a KEK cheaply nor stall it
 * with a huge count. See {@link MIN_KDF_ITERATIONS} for why the read floor is below 600,000.
 *
 * @module
 */
import { pbkdf2, randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import type { KmsEnvelopeClient } from '../client.js';
import { ConfigError, InvalidArgumentError, WeakKdfParamsError } from '../errors.js';
import { Kek } from '../keys/kek.js';
import { decodeBase64UrlPadded, encodeBase64UrlPadded } from '../wire/base64.js';
import { canonicalJson } from '../wire/params.js';
import { IndexKeyring, kekSlotOf, recordStoreOf } from './keyring.js';
import { META } from './records.js';

const pbkdf2Async = promisify(pbkdf2);

/**
 * PBKDF2 iterations of every new passphrase KEK: OWASP's 2023 figure for PBKDF2-HMAC-SHA256
 * (Password Storage Cheat Sheet). Also the least a caller may ask for when writing.
 */
export const DEFAULT_KDF_ITERATIONS = 600_000;

/**
 * The fewest PBKDF2 iterations accepted when reading stored parameters.
 *
 * Lower than {@link DEFAULT_KDF_ITERATIONS} on purpose, so that data written under older, once
 * common guidance stays readable: 100,000 is the count the `v2:` API-key scheme this library
 * migrates from uses, and was a widespread default for PBKDF2-HMAC-SHA256 before OWASP raised it
 * (310,000 in 2021, 600,000 in 2023). Below it, one guess costs less than a sixth of what it
 * costs at the recommended count, which this library does not accept for a KEK. Stored parameters
 * under the floor (this library's earlier versions let a caller write as few as 1,000) are
 * refused with {@link WeakKdfParamsError}: re-key such an index.
 */
export const MIN_KDF_ITERATIONS = 100_000;

/**
 * The most PBKDF2 iterations accepted on read or write: a count that someone who can write the
 * store sets to 2^53 would otherwise keep a libuv thread busy for years per derivation.
 */
export const MAX_KDF_ITERATIONS = 10_000_000;

/** Salt length of new parameters, in bytes (NIST SP 800-132 asks for at least 128 bits). */
export const KDF_SALT_BYTES = 16;

/** The shortest salt accepted on read, in bytes: {@link KDF_SALT_BYTES}. */
export const MIN_KDF_SALT_BYTES = KDF_SALT_BYTES;

/** The longest salt accepted on read, in bytes (a bound on what a stored record makes us hash). */
export const MAX_KDF_SALT_BYTES = 1024;

/** Persisted KDF parameters. */
export interface KdfParams {
  /** The KDF: PBKDF2 with HMAC. */
  readonly kdf: 'pbkdf2-hmac-sha256';
  /** Its hash. */
  readonly hash: 'sha256';
  /** URL-safe base64 with padding of the salt (16 to 1024 bytes). */
  readonly salt: string;
  /** {@link MIN_KDF_ITERATIONS} to {@link MAX_KDF_ITERATIONS}. */
  readonly iterations: number;
  /** Bytes derived: a 32-byte KEK. */
  readonly length: 32;
}

/**
 * Fresh parameters: a random 16-byte salt and `iterations` (default and minimum 600,000).
 * @throws InvalidArgumentError for fewer than {@link DEFAULT_KDF_ITERATIONS} or more than
 * {@link MAX_KDF_ITERATIONS} iterations: no caller can write parameters weaker than the
 * recommended ones.
 */
export function newKdfParams(iterations = DEFAULT_KDF_ITERATIONS): KdfParams {
  if (
    !Number.isSafeInteger(iterations) ||
    iterations < DEFAULT_KDF_ITERATIONS ||
    iterations > MAX_KDF_ITERATIONS
  ) {
    throw new InvalidArgumentError(
      `new passphrase KEKs use ${DEFAULT_KDF_ITERATIONS} to ${MAX_KDF_ITERATIONS} PBKDF2 iterations`,
    );
  }
  return {
    kdf: 'pbkdf2-hmac-sha256',
    hash: 'sha256',
    salt: encodeBase64UrlPadded(randomBytes(KDF_SALT_BYTES)),
    iterations,
    length: 32,
  };
}

/**
 * A whole number as gemstone_utils reads one: a JSON number, or a string that Python's `int()`
 * takes (surrounding whitespace, an optional sign, ASCII digits with single `_` between them).
 * `undefined` for anything else.
 */
function wholeNumber(value: unknown): number | undefined {
  if (typeof value === 'number') return Number.isSafeInteger(value) ? value : undefined;
  if (typeof value !== 'string') return undefined;
  const m = /^\s*([+-]?)(\d+(?:_\d+)*)\s*$/.exec(value);
  if (m === null) return undefined;
  const n = Number(m[2]!.replaceAll('_', ''));
  if (!Number.isSafeInteger(n)) return undefined;
  return m[1] === '-' ? -n : n;
}

/**
 * Validates parsed parameters (stored ones are read through this) and returns them in the form
 * this library writes: `{hash: 'sha256', iterations, kdf, length: 32, salt}`, numbers as numbers.
 *
 * Accepts what gemstone_utils accepts: `kdf` `pbkdf2-hmac-sha256` and a `salt` are required; a
 * missing `hash` is `sha256` and it is read in any case (`SHA256`); a missing `iterations` is
 * {@link DEFAULT_KDF_ITERATIONS} and a missing `length` 32; `iterations` and `length` may be
 * numeric strings (`"600000"`, as Python's `int()` reads them). The defaults are those of the
 * parameters gemstone writes (docs: `{"kdf":"pbkdf2-hmac-sha256","hash":"sha256","salt":…,
 * "iterations":600000,"length":32}`). Whatever the spelling, the floors hold: a store writer who
 * drops `iterations` gets the 600,000 default, never fewer.
 * @throws ConfigError for parameters of another shape (another KDF or hash, a salt that is not
 * URL-safe base64 with padding, a length other than 32, unreadable numbers); WeakKdfParamsError
 * for fewer than {@link MIN_KDF_ITERATIONS} or more than {@link MAX_KDF_ITERATIONS} iterations,
 * or a salt shorter than {@link MIN_KDF_SALT_BYTES} or longer than {@link MAX_KDF_SALT_BYTES}
 * bytes.
 */
export function parseKdfParams(value: unknown): KdfParams {
  const p = value as Record<string, unknown> | null;
  const shape = () =>
    new ConfigError(
      'KDF parameters are not {kdf: pbkdf2-hmac-sha256, hash: sha256, salt, iterations, length: 32}',
    );
  if (typeof p !== 'object' || p === null || Array.isArray(p)) throw shape();
  const hash = p.hash === undefined ? 'sha256' : p.hash;
  const iterations = p.iterations === undefined ? DEFAULT_KDF_ITERATIONS : wholeNumber(p.iterations);
  const length = p.length === undefined ? 32 : wholeNumber(p.length);
  if (
    p.kdf !== 'pbkdf2-hmac-sha256' ||
    typeof hash !== 'string' ||
    hash.toLowerCase() !== 'sha256' ||
    typeof p.salt !== 'string' ||
    iterations === undefined ||
    length !== 32
  ) {
    throw shape();
  }
  if (iterations < MIN_KDF_ITERATIONS || iterations > MAX_KDF_ITERATIONS) {
    throw new WeakKdfParamsError(
      `stored PBKDF2 iterations (${iterations}) are outside ${MIN_KDF_ITERATIONS}–${MAX_KDF_ITERATIONS}: re-key the index`,
    );
  }
  const salt = decodeBase64UrlPadded(p.salt, 'KDF salt');
  if (salt.length < MIN_KDF_SALT_BYTES || salt.length > MAX_KDF_SALT_BYTES) {
    throw new WeakKdfParamsError(
      `stored KDF salt is ${salt.length} bytes, outside ${MIN_KDF_SALT_BYTES}–${MAX_KDF_SALT_BYTES}: re-key the index`,
    );
  }
  return { kdf: 'pbkdf2-hmac-sha256', hash: 'sha256', salt: p.salt, iterations, length: 32 };
}

/**
 * The stored form of `params`, as gemstone_utils writes it: the five fields as sorted, compact
 * JSON (`{"hash":"sha256","iterations":600000,"kdf":"pbkdf2-hmac-sha256","length":32,"salt":"…"}`).
 */
export function formatKdfParams(params: KdfParams): string {
  return canonicalJson(parseKdfParams(params));
}

/**
 * Derives a KEK from a passphrase with the given parameters (off the event loop).
 * @throws InvalidArgumentError for an empty passphrase; ConfigError and WeakKdfParamsError as
 * {@link parseKdfParams}.
 */
export async function derivePassphraseKek(passphrase: string | Uint8Array, params: KdfParams): Promise<Kek> {
  if (passphrase.length === 0) throw new InvalidArgumentError('the passphrase is empty');
  const checked = parseKdfParams(params);
  const bytes = await pbkdf2Async(
    passphrase,
    decodeBase64UrlPadded(checked.salt, 'KDF salt'),
    checked.iterations,
    32,
    'sha256',
  );
  return Kek.fromBytesAndWipe(bytes);
}

/**
 * Creates an index whose KEK is derived from `passphrase` (slot of provider `none`), storing the
 * KDF parameters and the KEK-check record. Returns the keyring, opened with that KEK.
 * `iterations` may only raise the count above {@link DEFAULT_KDF_ITERATIONS}; the salt is always
 * 16 fresh random bytes.
 * @throws InvalidArgumentError for fewer iterations (see {@link newKdfParams}), and the client's
 * errors.
 */
export async function createPassphraseIndex(
  client: KmsEnvelopeClient,
  index: string,
  options: { slot: string; passphrase: string | Uint8Array; iterations?: number },
): Promise<IndexKeyring> {
  const params = newKdfParams(options.iterations);
  const kek = await derivePassphraseKek(options.passphrase, params);
  const keyring = await IndexKeyring.createIndex(client, index, { slot: options.slot, kek });
  await recordStoreOf(client, index).putRecord(
    keyring.index,
    'meta',
    META.kdf,
    Buffer.from(formatKdfParams(params), 'utf8'),
  );
  return new IndexKeyring(client, index, { kek });
}

/**
 * Derives the index's KEK from `passphrase` with its stored KDF parameters and checks it against
 * the KEK-check record. The caller zeroes the returned KEK.
 * @throws KekMismatchError for a wrong passphrase; ConfigError without stored parameters;
 * WeakKdfParamsError for stored parameters below the read floor (see {@link parseKdfParams}).
 */
export async function deriveAndVerifyKek(
  client: KmsEnvelopeClient,
  index: string,
  passphrase: string | Uint8Array,
): Promise<Kek> {
  const keyring = new IndexKeyring(client, index);
  const raw = await recordStoreOf(client, index).getRecord(keyring.index, 'meta', META.kdf);
  if (raw === undefined)
    throw new ConfigError('this index has no passphrase KDF parameters', { index: keyring.index });
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(raw).toString('utf8'));
  } catch (cause) {
    throw new ConfigError('stored KDF parameters are not JSON', { index: keyring.index, cause });
  }
  const kek = await derivePassphraseKek(passphrase, parseKdfParams(parsed));
  try {
    const slot = kekSlotOf(await client.getEnvelope(index));
    if (slot === undefined)
      throw new ConfigError('the envelope names no KEK slot id', { index: keyring.index });
    await keyring.verifyKek(kek, slot);
    return kek;
  } catch (err) {
    kek.zero();
    throw err;
  }
}
