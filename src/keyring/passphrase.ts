/**
 * Passphrase KEKs: PBKDF2-HMAC-SHA256 with parameters persisted beside the envelope (record
 * `meta/kdf`) as JSON — `{"hash":"sha256","iterations":600000,"kdf":"pbkdf2-hmac-sha256",
 * "length":32,"salt":"…"}` — which are the source of truth whenever the KEK is derived again.
 * Use with provider `none` (nothing key-derived is stored but the KEK check).
 *
 * @module
 */
import { pbkdf2, randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import type { KmsEnvelopeClient } from '../client.js';
import { ConfigError, InvalidArgumentError } from '../errors.js';
import { Kek } from '../keys/kek.js';
import { decodeBase64UrlPadded, encodeBase64UrlPadded } from '../wire/base64.js';
import { canonicalJson } from '../wire/params.js';
import { IndexKeyring, kekSlotOf, recordStoreOf } from './keyring.js';
import { META } from './records.js';

const pbkdf2Async = promisify(pbkdf2);

/** Default PBKDF2 iterations for new passphrase KEKs (OWASP 2023 guidance for HMAC-SHA256). */
export const DEFAULT_KDF_ITERATIONS = 600_000;

/** Persisted KDF parameters. */
export interface KdfParams {
  readonly kdf: 'pbkdf2-hmac-sha256';
  readonly hash: 'sha256';
  /** URL-safe base64 with padding of the salt. */
  readonly salt: string;
  readonly iterations: number;
  readonly length: 32;
}

/** Fresh parameters: a random 16-byte salt and `iterations` (default 600,000). */
export function newKdfParams(iterations = DEFAULT_KDF_ITERATIONS): KdfParams {
  return {
    kdf: 'pbkdf2-hmac-sha256',
    hash: 'sha256',
    salt: encodeBase64UrlPadded(randomBytes(16)),
    iterations,
    length: 32,
  };
}

/** Validates parsed parameters. @throws ConfigError */
export function parseKdfParams(value: unknown): KdfParams {
  const p = value as Partial<KdfParams> | null;
  if (
    typeof p !== 'object' ||
    p === null ||
    p.kdf !== 'pbkdf2-hmac-sha256' ||
    p.hash !== 'sha256' ||
    typeof p.salt !== 'string' ||
    !Number.isSafeInteger(p.iterations) ||
    (p.iterations as number) < 1000 ||
    p.length !== 32
  ) {
    throw new ConfigError(
      'KDF parameters are not {kdf: pbkdf2-hmac-sha256, hash: sha256, salt, iterations ≥ 1000, length: 32}',
    );
  }
  decodeBase64UrlPadded(p.salt, 'KDF salt');
  return p as KdfParams;
}

/** Derives a KEK from a passphrase with the given parameters (off the event loop). */
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
    Buffer.from(canonicalJson(params), 'utf8'),
  );
  return new IndexKeyring(client, index, { kek });
}

/**
 * Derives the index's KEK from `passphrase` with its stored KDF parameters and checks it against
 * the KEK-check record. The caller zeroes the returned KEK.
 * @throws KekMismatchError for a wrong passphrase; ConfigError without stored parameters.
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
