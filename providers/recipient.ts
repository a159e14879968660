/**
 * Provider `recipient`: the break-glass wrap. Wrapping needs only a recipient's **public** key (in
 * the slot); unwrapping needs the **private** key, which is kept offline and used only by an
 * operator through `kms-envelope recover` ({@link RecipientProvider.unwrapOffline}). On the request
 * path a recipient slot never unwraps: {@link RecipientProvider.unwrap} always refuses, because
 * anyone with the public key can make a wrap of a KEK of their choosing, so a store writer could
 * forge an envelope (the threat model's public-key forgery).
 *
 * Two kinds:
 * - `x25519`: an ephemeral X25519 key agreement (node:crypto) with the recipient's key;
 * - `x25519-mlkem768` (default, post-quantum): the same X25519 agreement **and** an ML-KEM-768
 *   encapsulation (FIPS 203, `@noble/post-quantum`, an optional peer dependency) to the
 *   recipient's ML-KEM key. Both shared secrets feed the KDF, so the wrap stays safe while either
 *   X25519 or ML-KEM-768 holds (an envelope recorded today and attacked with a quantum computer
 *   later still needs the ML-KEM secret).
 *
 * Key derivation (the wrap key, 32 bytes, for AES-256-GCM):
 * ```
 * ikm        = ss_x25519 ‖ ss_mlkem                 (ss_mlkem absent for kind x25519)
 * transcript = SHA-256(eph_x25519_pub ‖ mlkem_ct ‖ recipient_x25519_pub ‖ recipient_mlkem_pub)
 * info       = "kms-envelope/recipient/v1/<kind>" ‖ transcript
 * key        = HKDF-SHA256(salt = empty, ikm, info, 32)
 * ```
 * Every field has a fixed length per kind (the kind is in the label), so the concatenations are
 * unambiguous. The KEK is then sealed with AES-256-GCM under that key with the envelope binding
 * (`bindingAadOf('recipient', context)`: index, slot, context, version, creation id) as AAD.
 *
 * Wrapped form (`wrapped_kek`), lengths checked exactly on open:
 * `version (1) = 1 ‖ kind (1: 1 = x25519, 2 = x25519-mlkem768) ‖ eph X25519 pub (32) ‖
 * [ML-KEM-768 ciphertext (1088)] ‖ nonce (12) ‖ sealed KEK (32) ‖ tag (16)`: 94 or 1182 bytes.
 *
 * `key_id` is the recipient's fingerprint, `recipient:<kind>:<16 hex>` (SHA-256 over a label, the
 * kind and the public key bytes, truncated to 8 bytes): it names the key without revealing
 * anything secret. The printable public key is `kmsr1-<kind>:<base64url of the raw public key>`
 * (X25519 public ‖ ML-KEM-768 encapsulation key). The private key file format is described at
 * {@link generateRecipientKeyPair}. See docs/providers/recipient.md.
 *
 * @module
 */
import {
  createHash,
  createPrivateKey,
  createPublicKey,
  diffieHellman,
  generateKeyPairSync,
  hkdfSync,
  type KeyObject,
  randomFillSync,
} from 'node:crypto';
import { type FileHandle, open, unlink } from 'node:fs/promises';
import { dirname } from 'node:path';
import { inspect } from 'node:util';
import { openAes256Gcm, sealAes256Gcm, sealAes256GcmWithNonce } from '../src/crypto/aes-gcm.js';
import { bindingAadOf } from '../src/crypto/binding.js';
import { GCM_NONCE_LENGTH } from '../src/crypto/nonce-pool.js';
import {
  ConfigError,
  type ErrorContext,
  InvalidArgumentError,
  KeyNotFoundError,
  SlotNotAllowedError,
  UnwrapFailedError,
} from '../src/errors.js';
import { KEK_LENGTH, Kek } from '../src/keys/kek.js';
import { SecretKey } from '../src/keys/secret-key.js';
import { decodeKeyMaterial } from '../src/keys/secret-ref.js';
import type {
  KmsProvider,
  ProviderPlugin,
  UnwrapContext,
  WrapContext,
  WrappedKek,
} from '../src/providers/provider.js';
import type { KmsSlot } from '../src/providers/slot.js';
import { importOptional } from '../src/providers/support.js';

/** Provider id. */
export const id = 'recipient';

/** The two recipient kinds: classical X25519, or the X25519 + ML-KEM-768 hybrid (default). */
export type RecipientKind = 'x25519' | 'x25519-mlkem768';

/** Every recipient kind. */
export const RECIPIENT_KINDS: readonly RecipientKind[] = ['x25519', 'x25519-mlkem768'];

/** The default kind of new key pairs: the post-quantum hybrid. */
export const DEFAULT_RECIPIENT_KIND: RecipientKind = 'x25519-mlkem768';

const FORMAT_VERSION = 1;
const KIND_BYTE: Readonly<Record<RecipientKind, number>> = { x25519: 1, 'x25519-mlkem768': 2 };
const X25519_LENGTH = 32;
const MLKEM768_PUBLIC_LENGTH = 1184;
const MLKEM768_CIPHERTEXT_LENGTH = 1088;
const MLKEM768_SEED_LENGTH = 64;
const MLKEM768_MESSAGE_LENGTH = 32;
const SEALED_LENGTH = GCM_NONCE_LENGTH + KEK_LENGTH + 16;
const HEADER_LENGTH = 2;

/** Length of a wrapped KEK of each kind (94 and 1182 bytes). */
export const RECIPIENT_WRAPPED_LENGTH: Readonly<Record<RecipientKind, number>> = {
  x25519: HEADER_LENGTH + X25519_LENGTH + SEALED_LENGTH,
  'x25519-mlkem768': HEADER_LENGTH + X25519_LENGTH + MLKEM768_CIPHERTEXT_LENGTH + SEALED_LENGTH,
};

/** Prefix of a printable public key (`kmsr1-<kind>:<base64url>`). */
export const RECIPIENT_PUBLIC_KEY_PREFIX = 'kmsr1-';

const PRIVATE_KEY_BEGIN = '-----BEGIN KMS-ENVELOPE RECIPIENT PRIVATE KEY-----';
const PRIVATE_KEY_END = '-----END KMS-ENVELOPE RECIPIENT PRIVATE KEY-----';
const FINGERPRINT_HEADER = 'Fingerprint: ';
const FINGERPRINT_LABEL = 'kms-envelope/recipient-key-id/v1';
const FINGERPRINT_PATTERN = /^recipient:(x25519|x25519-mlkem768):[0-9a-f]{16}$/;
const PUBLIC_KEY_PATTERN = /^kmsr1-(x25519|x25519-mlkem768):([A-Za-z0-9_-]+)$/;

// DER prefixes of an X25519 key (RFC 8410): node:crypto on Node 20 imports and exports X25519 keys
// only as DER, PEM or JWK, and JWK would put the private key into a JS string.
const PKCS8_X25519_PREFIX = Buffer.from('302e020100300506032b656e04220420', 'hex');
const SPKI_X25519_PREFIX = Buffer.from('302a300506032b656e032100', 'hex');

/** What the provider needs of `@noble/post-quantum`'s `ml_kem768`. */
interface MlKem768 {
  keygen(seed: Uint8Array): { publicKey: Uint8Array; secretKey: Uint8Array };
  encapsulate(
    publicKey: Uint8Array,
    message?: Uint8Array,
  ): { cipherText: Uint8Array; sharedSecret: Uint8Array };
  decapsulate(cipherText: Uint8Array, secretKey: Uint8Array): Uint8Array;
}

let mlKemLoading: Promise<MlKem768> | undefined;

/** Loads ML-KEM-768 on first use (only the hybrid kind needs it). */
function loadMlKem(): Promise<MlKem768> {
  if (mlKemLoading === undefined) {
    mlKemLoading = importOptional(
      '@noble/post-quantum',
      'provider "recipient" (kind x25519-mlkem768)',
      () => import('@noble/post-quantum/ml-kem.js'),
    ).then((module) => module.ml_kem768 as unknown as MlKem768);
    mlKemLoading.catch(() => {
      mlKemLoading = undefined;
    });
  }
  return mlKemLoading;
}

const mlKemFor = (kind: RecipientKind) =>
  kind === 'x25519-mlkem768' ? loadMlKem() : Promise.resolve(undefined);

// --- public keys ---------------------------------------------------------------------------------

/** A parsed recipient public key. Public data: nothing here is secret. */
export interface RecipientPublicKey {
  /** The kind of key. */
  readonly kind: RecipientKind;
  /** The raw X25519 public key (32 bytes). */
  readonly x25519: Buffer;
  /** The raw ML-KEM-768 encapsulation key (1184 bytes), for the hybrid kind. */
  readonly mlKem: Buffer | undefined;
  /** `recipient:<kind>:<16 hex>`: the `key_id` of every wrap to this key. */
  readonly fingerprint: string;
  /** The printable form, `kmsr1-<kind>:<base64url>`. */
  readonly text: string;
}

/** The `key_id` fingerprint of a recipient public key. */
function fingerprintOf(kind: RecipientKind, x25519: Uint8Array, mlKem: Uint8Array | undefined): string {
  const hash = createHash('sha256')
    .update(FINGERPRINT_LABEL)
    .update(Uint8Array.of(KIND_BYTE[kind]))
    .update(x25519);
  if (mlKem !== undefined) hash.update(mlKem);
  return `recipient:${kind}:${hash.digest('hex').slice(0, 16)}`;
}

function publicKeyFrom(
  kind: RecipientKind,
  x25519: Uint8Array,
  mlKem: Uint8Array | undefined,
): RecipientPublicKey {
  const raw = mlKem === undefined ? Buffer.from(x25519) : Buffer.concat([x25519, mlKem]);
  return {
    kind,
    x25519: Buffer.from(raw.subarray(0, X25519_LENGTH)),
    mlKem: mlKem === undefined ? undefined : Buffer.from(raw.subarray(X25519_LENGTH)),
    fingerprint: fingerprintOf(kind, x25519, mlKem),
    text: `${RECIPIENT_PUBLIC_KEY_PREFIX}${kind}:${raw.toString('base64url')}`,
  };
}

/**
 * The FIPS 203 §7.2 "modulus check" of an ML-KEM-768 encapsulation key: each 12-bit coefficient
 * of its three polynomials (the first 1152 bytes) is below q = 3329.
 */
function isValidMlKem768PublicKey(key: Uint8Array): boolean {
  if (key.length !== MLKEM768_PUBLIC_LENGTH) return false;
  for (let i = 0; i < 3 * 384; i += 3) {
    const b0 = key[i]!;
    const b1 = key[i + 1]!;
    const b2 = key[i + 2]!;
    if ((b0 | ((b1 & 0x0f) << 8)) >= 3329 || ((b1 >> 4) | (b2 << 4)) >= 3329) return false;
  }
  return true;
}

/**
 * Parses a printable public key, `kmsr1-<kind>:<base64url>` (no padding, canonical), where the
 * bytes are the raw X25519 public key (32) and, for `x25519-mlkem768`, the ML-KEM-768
 * encapsulation key (1184), which must pass the FIPS 203 modulus check.
 * @throws ConfigError for anything else (wrong prefix or kind, wrong length, bad encoding).
 */
export function parseRecipientPublicKey(text: string, where: ErrorContext = {}): RecipientPublicKey {
  const fail = (why: string) =>
    new ConfigError(
      `a recipient public key must be ${RECIPIENT_PUBLIC_KEY_PREFIX}x25519:<base64url> or ${RECIPIENT_PUBLIC_KEY_PREFIX}x25519-mlkem768:<base64url>, as printed by "kms-envelope keygen recipient" (${why})`,
      { ...where, provider: id },
    );
  if (typeof text !== 'string') throw fail('not a string');
  const match = PUBLIC_KEY_PATTERN.exec(text);
  if (match === null) throw fail('unknown prefix, kind or characters');
  const kind = match[1] as RecipientKind;
  const raw = Buffer.from(match[2]!, 'base64url');
  if (raw.toString('base64url') !== match[2]) throw fail('not canonical base64url');
  const expected = X25519_LENGTH + (kind === 'x25519' ? 0 : MLKEM768_PUBLIC_LENGTH);
  if (raw.length !== expected) throw fail(`${raw.length} bytes, not ${expected} for kind ${kind}`);
  const mlKem = kind === 'x25519' ? undefined : raw.subarray(X25519_LENGTH);
  if (mlKem !== undefined && !isValidMlKem768PublicKey(mlKem)) {
    throw fail('the ML-KEM-768 key fails the FIPS 203 modulus check');
  }
  return publicKeyFrom(kind, raw.subarray(0, X25519_LENGTH), mlKem);
}

// --- X25519 through node:crypto ------------------------------------------------------------------

function x25519PrivateKeyObject(raw: Uint8Array): KeyObject {
  const der = Buffer.alloc(PKCS8_X25519_PREFIX.length + X25519_LENGTH);
  PKCS8_X25519_PREFIX.copy(der);
  der.set(raw, PKCS8_X25519_PREFIX.length);
  try {
    return createPrivateKey({ key: der, format: 'der', type: 'pkcs8' });
  } finally {
    der.fill(0);
  }
}

function x25519PublicKeyObject(raw: Uint8Array): KeyObject {
  return createPublicKey({ key: Buffer.concat([SPKI_X25519_PREFIX, raw]), format: 'der', type: 'spki' });
}

/** The raw public key of an X25519 key (private or public). */
function rawX25519Public(key: KeyObject): Buffer {
  const der = (key.type === 'private' ? createPublicKey(key) : key).export({ format: 'der', type: 'spki' });
  return Buffer.from(der.subarray(der.length - X25519_LENGTH));
}

function rawX25519Private(key: KeyObject): Buffer {
  const der = key.export({ format: 'der', type: 'pkcs8' });
  try {
    const raw = Buffer.alloc(X25519_LENGTH);
    der.copy(raw, 0, der.length - X25519_LENGTH);
    return raw;
  } finally {
    der.fill(0);
  }
}

/**
 * X25519 with a peer's raw public key; `undefined` for a low-order point (an all-zero result,
 * which OpenSSL refuses too: checked here as well rather than relied on).
 */
function x25519Agree(privateKey: KeyObject, peer: Uint8Array): Buffer | undefined {
  let shared: Buffer;
  try {
    shared = diffieHellman({ privateKey, publicKey: x25519PublicKeyObject(peer) });
  } catch {
    return undefined;
  }
  if (shared.every((byte) => byte === 0)) return undefined;
  return shared;
}

// --- the KDF ------------------------------------------------------------------------------------

/**
 * The 32-byte AES-256-GCM key of one wrap (see the module documentation). The transcript is
 * hashed into `info` because node:crypto's `hkdfSync` takes at most 1024 bytes of info, and the
 * hybrid transcript is 2336 bytes.
 */
function deriveWrapKey(
  recipient: RecipientPublicKey,
  ephemeralPublic: Uint8Array,
  mlKemCipherText: Uint8Array | undefined,
  sharedX25519: Uint8Array,
  sharedMlKem: Uint8Array | undefined,
): Buffer {
  const transcript = createHash('sha256').update(ephemeralPublic);
  if (mlKemCipherText !== undefined) transcript.update(mlKemCipherText);
  transcript.update(recipient.x25519);
  if (recipient.mlKem !== undefined) transcript.update(recipient.mlKem);
  const info = Buffer.concat([
    Buffer.from(`kms-envelope/recipient/v1/${recipient.kind}`),
    transcript.digest(),
  ]);
  const ikm = Buffer.alloc(sharedX25519.length + (sharedMlKem?.length ?? 0));
  ikm.set(sharedX25519);
  if (sharedMlKem !== undefined) ikm.set(sharedMlKem, sharedX25519.length);
  try {
    return Buffer.from(hkdfSync('sha256', ikm, Buffer.alloc(0), info, KEK_LENGTH));
  } finally {
    ikm.fill(0);
  }
}

// --- wrap ---------------------------------------------------------------------------------------

/** The randomness of one wrap, for {@link wrapForRecipientWithEphemerals}. */
export interface RecipientEphemerals {
  /** The ephemeral X25519 private key (32 bytes). */
  readonly x25519Private: Uint8Array;
  /** ML-KEM-768 encapsulation randomness `m` (32 bytes; hybrid kind only). */
  readonly mlKemMessage?: Uint8Array;
  /** The AES-GCM nonce (12 bytes). */
  readonly nonce: Uint8Array;
}

function sealToRecipient(
  kek: Kek,
  context: WrapContext,
  recipient: RecipientPublicKey,
  mlKem: MlKem768 | undefined,
  ephemeral: KeyObject,
  mlKemMessage: Uint8Array | undefined,
  nonce: Uint8Array | undefined,
): Buffer {
  const where = { index: context.index, slot: context.slot, provider: id };
  const ephemeralPublic = rawX25519Public(ephemeral);
  const sharedX25519 = x25519Agree(ephemeral, recipient.x25519);
  if (sharedX25519 === undefined) {
    throw new ConfigError('the recipient X25519 public key is not usable (a low-order point)', where);
  }
  let encapsulated: { cipherText: Uint8Array; sharedSecret: Uint8Array } | undefined;
  let key: Buffer | undefined;
  try {
    if (recipient.mlKem !== undefined) {
      if (mlKem === undefined) throw new ConfigError('ML-KEM-768 is not loaded', where);
      try {
        encapsulated = mlKem.encapsulate(recipient.mlKem, mlKemMessage);
      } catch (cause) {
        throw new ConfigError('the recipient ML-KEM-768 public key is not usable', { ...where, cause });
      }
    }
    key = deriveWrapKey(
      recipient,
      ephemeralPublic,
      encapsulated?.cipherText,
      sharedX25519,
      encapsulated?.sharedSecret,
    );
    const aad = bindingAadOf(id, context);
    const sealed =
      nonce === undefined
        ? sealAes256Gcm(key, kek.expose(), aad)
        : sealAes256GcmWithNonce(key, nonce, kek.expose(), aad);
    const out = Buffer.alloc(RECIPIENT_WRAPPED_LENGTH[recipient.kind]);
    out[0] = FORMAT_VERSION;
    out[1] = KIND_BYTE[recipient.kind];
    out.set(ephemeralPublic, HEADER_LENGTH);
    if (encapsulated !== undefined) out.set(encapsulated.cipherText, HEADER_LENGTH + X25519_LENGTH);
    out.set(sealed, out.length - SEALED_LENGTH);
    return out;
  } finally {
    sharedX25519.fill(0);
    encapsulated?.sharedSecret.fill(0);
    key?.fill(0);
  }
}

/**
 * Wraps `kek` to `recipient` with caller-chosen randomness: the golden test vectors use it to be
 * reproducible byte for byte. The provider's {@link RecipientProvider.wrap} draws fresh randomness.
 *
 * Security: for test vectors only. Reusing an ephemeral X25519 key, ML-KEM randomness or nonce
 * reuses the wrap key and, with the nonce, breaks AES-GCM; predictable values let anyone who
 * knows them compute the wrap key without the private key.
 * @throws InvalidArgumentError for randomness of the wrong lengths; ConfigError for an unusable
 * public key; MissingDependencyError without `@noble/post-quantum` (hybrid kind).
 */
export async function wrapForRecipientWithEphemerals(
  kek: Kek,
  context: WrapContext,
  recipient: RecipientPublicKey,
  ephemerals: RecipientEphemerals,
): Promise<WrappedKek> {
  const hybrid = recipient.kind === 'x25519-mlkem768';
  if (
    ephemerals.x25519Private.length !== X25519_LENGTH ||
    ephemerals.nonce.length !== GCM_NONCE_LENGTH ||
    (hybrid
      ? ephemerals.mlKemMessage?.length !== MLKEM768_MESSAGE_LENGTH
      : ephemerals.mlKemMessage !== undefined)
  ) {
    throw new InvalidArgumentError(
      `recipient ephemerals must be an X25519 private key (32), a nonce (12) and, for the hybrid kind only, an ML-KEM message (32)`,
    );
  }
  const mlKem = await mlKemFor(recipient.kind);
  const wrapped = sealToRecipient(
    kek,
    context,
    recipient,
    mlKem,
    x25519PrivateKeyObject(ephemerals.x25519Private),
    ephemerals.mlKemMessage,
    ephemerals.nonce,
  );
  return { wrappedKek: wrapped, keyId: recipient.fingerprint, region: '' };
}

// --- private keys -------------------------------------------------------------------------------

/** The secret bytes of a recipient private key: X25519 private key ‖ [ML-KEM-768 seed]. */
class RecipientSecret extends SecretKey {
  declare private readonly brand: 'RecipientSecret';
  protected get kind(): string {
    return 'recipient private key';
  }
  constructor(bytes: Uint8Array) {
    super(bytes, bytes.length, 'recipient private key');
  }
}

/** The secret bytes of each parsed private key, out of reach of code outside this module. */
const secretOf = new WeakMap<RecipientPrivateKey, RecipientSecret>();
const CONSTRUCT = Symbol('RecipientPrivateKey');

/**
 * A parsed recipient private key. Printing it shows `[redacted]`; {@link zero} wipes its bytes.
 * Made by {@link parseRecipientPrivateKey}; the caller zeroes it when done.
 */
export class RecipientPrivateKey {
  /** The kind of key. */
  readonly kind: RecipientKind;
  /** Its public half (what the slot holds). */
  readonly publicKey: RecipientPublicKey;

  /** @internal Only {@link parseRecipientPrivateKey} makes these. */
  constructor(token: symbol, kind: RecipientKind, publicKey: RecipientPublicKey, secret: Uint8Array) {
    if (token !== CONSTRUCT) throw new InvalidArgumentError('use parseRecipientPrivateKey()');
    this.kind = kind;
    this.publicKey = publicKey;
    secretOf.set(this, new RecipientSecret(secret));
  }

  /** True once {@link zero} was called. */
  get isZeroed(): boolean {
    return secretOf.get(this)!.isZeroed;
  }

  /** Overwrites the private key bytes with zeros; the key is unusable afterwards. Idempotent. */
  zero(): void {
    secretOf.get(this)!.zero();
  }

  /** Never the key: `RecipientPrivateKey[redacted] <fingerprint>`. */
  toString(): string {
    return `RecipientPrivateKey[redacted] ${this.publicKey.fingerprint}`;
  }

  /** Never the key. */
  toJSON(): string {
    return this.toString();
  }

  /** `util.inspect` shows the redacted form. */
  [inspect.custom](): string {
    return this.toString();
  }
}

/** The X25519 private key of `key`, as a node:crypto key. */
const x25519KeyOf = (key: RecipientPrivateKey) =>
  x25519PrivateKeyObject(secretOf.get(key)!.expose().subarray(0, X25519_LENGTH));

/** The ML-KEM-768 seed of `key` (a view of its own bytes: never kept). */
const mlKemSeedOf = (key: RecipientPrivateKey) =>
  key.kind === 'x25519' ? undefined : secretOf.get(key)!.expose().subarray(X25519_LENGTH);

const STANDARD_BASE64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';

/**
 * Standard base64 (with padding) of `bytes`, written into a buffer: `Buffer#toString('base64')`
 * would put the private key into a JS string, which nothing can wipe.
 */
function base64Bytes(bytes: Uint8Array): Buffer {
  const out = Buffer.alloc(Math.ceil(bytes.length / 3) * 4);
  let o = 0;
  for (let i = 0; i < bytes.length; i += 3) {
    const n = (bytes[i]! << 16) | ((bytes[i + 1] ?? 0) << 8) | (bytes[i + 2] ?? 0);
    out[o++] = STANDARD_BASE64.charCodeAt(n >> 18);
    out[o++] = STANDARD_BASE64.charCodeAt((n >> 12) & 63);
    out[o++] = i + 1 < bytes.length ? STANDARD_BASE64.charCodeAt((n >> 6) & 63) : 0x3d;
    out[o++] = i + 2 < bytes.length ? STANDARD_BASE64.charCodeAt(n & 63) : 0x3d;
  }
  return out;
}

const isStandardBase64Byte = (b: number) =>
  (b >= 0x41 && b <= 0x5a) ||
  (b >= 0x61 && b <= 0x7a) ||
  (b >= 0x30 && b <= 0x39) ||
  b === 0x2b ||
  b === 0x2f;

/** The file body: `version ‖ kind ‖ X25519 private ‖ [ML-KEM seed]`. */
const bodyLength = (kind: RecipientKind) =>
  HEADER_LENGTH + X25519_LENGTH + (kind === 'x25519' ? 0 : MLKEM768_SEED_LENGTH);

function encodePrivateKeyFile(kind: RecipientKind, secret: Uint8Array, fingerprint: string): Buffer {
  const body = Buffer.alloc(bodyLength(kind));
  body[0] = FORMAT_VERSION;
  body[1] = KIND_BYTE[kind];
  body.set(secret, HEADER_LENGTH);
  const text = base64Bytes(body);
  body.fill(0);
  try {
    // Buffer.alloc (never the shared pool), so wiping the file contents wipes the only copy.
    const head = Buffer.from(`${PRIVATE_KEY_BEGIN}\n${FINGERPRINT_HEADER}${fingerprint}\n`);
    const tail = Buffer.from(`\n${PRIVATE_KEY_END}\n`);
    const out = Buffer.alloc(head.length + text.length + tail.length);
    head.copy(out);
    text.copy(out, head.length);
    tail.copy(out, head.length + text.length);
    return out;
  } finally {
    text.fill(0);
  }
}

/** The private key's public half, from its secret bytes. */
async function publicKeyOfSecret(kind: RecipientKind, secret: Uint8Array): Promise<RecipientPublicKey> {
  const x25519 = rawX25519Public(x25519PrivateKeyObject(secret.subarray(0, X25519_LENGTH)));
  if (kind === 'x25519') return publicKeyFrom(kind, x25519, undefined);
  const mlKem = (await loadMlKem()).keygen(secret.subarray(X25519_LENGTH));
  mlKem.secretKey.fill(0);
  return publicKeyFrom(kind, x25519, mlKem.publicKey);
}

/** The lines of a text file's bytes, split on LF (a CR before it dropped). */
function linesOf(bytes: Uint8Array): Uint8Array[] {
  const lines: Uint8Array[] = [];
  let start = 0;
  for (let i = 0; i <= bytes.length; i++) {
    if (i === bytes.length || bytes[i] === 0x0a) {
      const end = i > start && bytes[i - 1] === 0x0d ? i - 1 : i;
      lines.push(bytes.subarray(start, end));
      start = i + 1;
    }
  }
  while (lines.length > 0 && lines[lines.length - 1]!.length === 0) lines.pop();
  return lines;
}

const latin1 = (bytes: Uint8Array) =>
  Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString('latin1');

/**
 * Parses a recipient private key file (the contents, as bytes; see {@link generateRecipientKeyPair}
 * for the format) and checks that its `Fingerprint:` line is the key's own. The key bytes are
 * decoded without ever becoming a JS string. `bytes` stays the caller's: wipe it.
 * @throws ConfigError (never naming a key byte) for a file that is not exactly that format, or
 * whose fingerprint line does not match its key (a damaged file); MissingDependencyError for a
 * hybrid key without `@noble/post-quantum`.
 */
export async function parseRecipientPrivateKey(bytes: Uint8Array): Promise<RecipientPrivateKey> {
  const fail = (why: string) =>
    new ConfigError(`not a kms-envelope recipient private key file (${why})`, { provider: id });
  if (!(bytes instanceof Uint8Array)) throw fail('not bytes');
  const lines = linesOf(bytes);
  if (
    lines.length !== 4 ||
    latin1(lines[0]!) !== PRIVATE_KEY_BEGIN ||
    latin1(lines[3]!) !== PRIVATE_KEY_END
  ) {
    throw fail(
      `expected the ${PRIVATE_KEY_BEGIN} line, a Fingerprint line, one base64 line and the END line`,
    );
  }
  const header = latin1(lines[1]!);
  const fingerprint = header.startsWith(FINGERPRINT_HEADER) ? header.slice(FINGERPRINT_HEADER.length) : '';
  if (!FINGERPRINT_PATTERN.test(fingerprint))
    throw fail('no valid "Fingerprint: recipient:<kind>:<hex>" line');
  const text = lines[2]!;
  let digits = text.length;
  while (digits > 0 && text.length - digits < 2 && text[digits - 1] === 0x3d) digits--;
  for (let i = 0; i < digits; i++)
    if (!isStandardBase64Byte(text[i]!)) throw fail('the key line is not base64');
  const kind = RECIPIENT_KINDS.find((k) => text.length === Math.ceil(bodyLength(k) / 3) * 4);
  if (kind === undefined) throw fail('the key line has the length of no recipient kind');
  const body = decodeKeyMaterial(text, bodyLength(kind), 'recipient private key');
  try {
    if (body[0] !== FORMAT_VERSION) throw fail(`unknown format version ${body[0]}`);
    if (body[1] !== KIND_BYTE[kind]) throw fail('the kind byte does not match the key length');
    const secret = body.subarray(HEADER_LENGTH);
    const publicKey = await publicKeyOfSecret(kind, secret);
    if (publicKey.fingerprint !== fingerprint) {
      throw fail(`damaged: its Fingerprint line says ${fingerprint}, the key is ${publicKey.fingerprint}`);
    }
    return new RecipientPrivateKey(CONSTRUCT, kind, publicKey, secret);
  } finally {
    body.fill(0);
  }
}

/**
 * The printable public key (`kmsr1-<kind>:…`) of a private key file's contents.
 * @throws as {@link parseRecipientPrivateKey}.
 */
export async function recipientPublicKeyOf(privateKeyBytes: Uint8Array): Promise<string> {
  const key = await parseRecipientPrivateKey(privateKeyBytes);
  key.zero();
  return key.publicKey.text;
}

/** A new recipient key pair. */
export interface RecipientKeyPair {
  /** The printable public key for the slot's `options.publicKey`. */
  readonly publicKey: string;
  /**
   * The private key file's contents (text armor, see {@link generateRecipientKeyPair}), in a
   * buffer of its own: write it with {@link writeRecipientKeyFile}, then wipe it (`fill(0)`).
   */
  readonly privateKey: Buffer;
  /** `recipient:<kind>:<16 hex>`, the `key_id` of its wraps (also in the private key file). */
  readonly fingerprint: string;
}

/**
 * Makes a recipient key pair from the CSPRNG. The private key file is text:
 * ```
 * -----BEGIN KMS-ENVELOPE RECIPIENT PRIVATE KEY-----
 * Fingerprint: recipient:<kind>:<16 hex>
 * <standard base64, one line, of: version (1) = 1 ‖ kind (1) ‖ X25519 private key (32) ‖ [ML-KEM-768 seed d ‖ z (64)]>
 * -----END KMS-ENVELOPE RECIPIENT PRIVATE KEY-----
 * ```
 * The ML-KEM-768 key is stored as its 64-byte FIPS 203 seed, not the 2400-byte expanded key
 * (which is re-derived on use). The `Fingerprint:` line is checked on read, so a damaged file is
 * refused with a clear message rather than failing every unwrap.
 *
 * Security: keep the file offline (mode 0600, on removable or escrowed media); it unwraps every
 * KEK wrapped to this recipient.
 * @throws ConfigError for an unknown kind; MissingDependencyError for the hybrid kind without
 * `@noble/post-quantum`.
 */
export async function generateRecipientKeyPair(
  kind: RecipientKind = DEFAULT_RECIPIENT_KIND,
): Promise<RecipientKeyPair> {
  if (!RECIPIENT_KINDS.includes(kind)) {
    throw new ConfigError(`unknown recipient kind "${String(kind)}" (x25519 or x25519-mlkem768)`, {
      provider: id,
    });
  }
  const mlKem = await mlKemFor(kind);
  const secret = Buffer.alloc(X25519_LENGTH + (mlKem === undefined ? 0 : MLKEM768_SEED_LENGTH));
  const x25519 = rawX25519Private(generateKeyPairSync('x25519').privateKey);
  try {
    secret.set(x25519);
    if (mlKem !== undefined) randomFillSync(secret, X25519_LENGTH);
    const publicKey = await publicKeyOfSecret(kind, secret);
    return {
      publicKey: publicKey.text,
      privateKey: encodePrivateKeyFile(kind, secret, publicKey.fingerprint),
      fingerprint: publicKey.fingerprint,
    };
  } finally {
    x25519.fill(0);
    secret.fill(0);
  }
}

/**
 * Writes a private key file's contents to `path`, created exclusively (never overwriting
 * anything, not following a symlink) with mode 0600, then fsyncs the file and its folder. The
 * contents are checked to be a recipient private key first. `privateKey` stays the caller's.
 * @throws InvalidArgumentError when `path` already exists; ConfigError when `privateKey` is not a
 * recipient private key file or the file cannot be written (a partly written file is removed).
 */
export async function writeRecipientKeyFile(path: string, privateKey: Uint8Array): Promise<void> {
  (await parseRecipientPrivateKey(privateKey)).zero();
  let handle: FileHandle;
  try {
    handle = await open(path, 'wx', 0o600);
  } catch (cause) {
    if ((cause as NodeJS.ErrnoException).code === 'EEXIST') {
      throw new InvalidArgumentError(`${path} already exists: a recipient key file is never overwritten`, {
        provider: id,
        cause,
      });
    }
    throw new ConfigError(`cannot create the recipient key file ${path}`, { provider: id, cause });
  }
  try {
    await handle.chmod(0o600);
    await handle.writeFile(privateKey);
    await handle.sync();
  } catch (cause) {
    await handle.close().catch(() => undefined);
    await unlink(path).catch(() => undefined);
    throw new ConfigError(`cannot write the recipient key file ${path}`, { provider: id, cause });
  }
  await handle.close();
  // Not every platform can fsync a folder (Windows): the file itself is already synced.
  const folder = await open(dirname(path), 'r').catch(() => undefined);
  if (folder !== undefined) {
    await folder.sync().catch(() => undefined);
    await folder.close();
  }
}

// --- the offline unwrap -------------------------------------------------------------------------

/**
 * Opens a recipient wrap with its private key: the offline path, never the request path.
 * @throws KeyNotFoundError when the wrap was made for another recipient (its `key_id`);
 * UnwrapFailedError for a `key_id` that is no recipient fingerprint, a wrong length, version or
 * kind, or bytes that do not authenticate (tampered, or bound to another index, slot, context,
 * version or creation id).
 */
export async function unwrapWithRecipientKey(
  wrapped: WrappedKek,
  context: WrapContext,
  key: RecipientPrivateKey,
): Promise<Kek> {
  const where = { index: context.index, slot: context.slot, provider: id };
  if (!FINGERPRINT_PATTERN.test(wrapped.keyId)) {
    throw new UnwrapFailedError(
      'the wrap does not name a recipient key (key_id recipient:<kind>:<hex>)',
      where,
    );
  }
  if (wrapped.keyId !== key.publicKey.fingerprint) {
    throw new KeyNotFoundError(
      `the wrap is for recipient ${wrapped.keyId}; the private key given is ${key.publicKey.fingerprint}`,
      where,
    );
  }
  const kind = key.kind;
  const bytes = wrapped.wrappedKek;
  if (
    bytes.length !== RECIPIENT_WRAPPED_LENGTH[kind] ||
    bytes[0] !== FORMAT_VERSION ||
    bytes[1] !== KIND_BYTE[kind]
  ) {
    throw new UnwrapFailedError(`the wrapped KEK is not in the recipient ${kind} format`, where);
  }
  const mlKem = await mlKemFor(kind);
  const ephemeralPublic = bytes.subarray(HEADER_LENGTH, HEADER_LENGTH + X25519_LENGTH);
  const cipherText =
    kind === 'x25519'
      ? undefined
      : bytes.subarray(
          HEADER_LENGTH + X25519_LENGTH,
          HEADER_LENGTH + X25519_LENGTH + MLKEM768_CIPHERTEXT_LENGTH,
        );
  const sharedX25519 = x25519Agree(x25519KeyOf(key), ephemeralPublic);
  if (sharedX25519 === undefined) throw new UnwrapFailedError('cannot unwrap the KEK', where);
  let sharedMlKem: Uint8Array | undefined;
  let wrapKey: Buffer | undefined;
  try {
    const seed = mlKemSeedOf(key);
    if (mlKem !== undefined && seed !== undefined && cipherText !== undefined) {
      const expanded = mlKem.keygen(seed);
      try {
        // ML-KEM rejects implicitly: a tampered ciphertext gives a pseudo-random secret, and the
        // tag check below fails.
        sharedMlKem = mlKem.decapsulate(cipherText, expanded.secretKey);
      } finally {
        expanded.secretKey.fill(0);
      }
    }
    wrapKey = deriveWrapKey(key.publicKey, ephemeralPublic, cipherText, sharedX25519, sharedMlKem);
    const plaintext = openAes256Gcm(
      wrapKey,
      bytes.subarray(bytes.length - SEALED_LENGTH),
      bindingAadOf(id, context),
    );
    if (plaintext === undefined) throw new UnwrapFailedError('cannot unwrap the KEK', where);
    return Kek.fromBytesAndWipe(plaintext);
  } finally {
    sharedX25519.fill(0);
    sharedMlKem?.fill(0);
    wrapKey?.fill(0);
  }
}

// --- the provider -------------------------------------------------------------------------------

const REFUSAL =
  'a recipient slot never unwraps on the request path: anyone with its public key can make a wrap, so a store writer could forge the envelope. Its wraps are opened only offline, by "kms-envelope recover" with the private key';

/**
 * The `recipient` provider: wraps to a public key; {@link unwrap} always refuses;
 * {@link unwrapOffline} opens a wrap with the offline private key.
 */
export class RecipientProvider implements KmsProvider {
  /** Provider id, `recipient`. */
  readonly id = id;
  /** Always true: a wrap needs only the public key (see the module documentation). */
  readonly publicKeyWrap = true;
  /** The recipient this provider wraps to. */
  readonly publicKey: RecipientPublicKey;
  readonly #mlKem: MlKem768 | undefined;
  readonly #slot: string | undefined;

  /** @internal Use {@link createRecipientProvider}. */
  constructor(publicKey: RecipientPublicKey, mlKem: MlKem768 | undefined, slot: string | undefined) {
    this.publicKey = publicKey;
    this.#mlKem = mlKem;
    this.#slot = slot;
  }

  /**
   * Wraps `kek` to the recipient with a fresh ephemeral X25519 key, ML-KEM encapsulation and
   * nonce; `key_id` is the recipient's fingerprint.
   * @throws ConfigError for an unusable public key.
   */
  wrap(kek: Kek, context: WrapContext): Promise<WrappedKek> {
    try {
      const wrappedKek = sealToRecipient(
        kek,
        context,
        this.publicKey,
        this.#mlKem,
        generateKeyPairSync('x25519').privateKey,
        undefined,
        undefined,
      );
      return Promise.resolve({ wrappedKek, keyId: this.publicKey.fingerprint, region: '' });
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /**
   * Always refuses, before reading its arguments: see the module documentation. Use
   * {@link unwrapOffline} (what `kms-envelope recover` does) with the private key.
   * @throws SlotNotAllowedError, always.
   */
  unwrap(_wrapped: WrappedKek, _context: UnwrapContext): Promise<Kek> {
    return Promise.reject(
      new SlotNotAllowedError(REFUSAL, {
        provider: id,
        ...(this.#slot !== undefined ? { slot: this.#slot } : {}),
      }),
    );
  }

  /**
   * Opens a wrap of this provider with the recipient's private key, offline (`kms-envelope
   * recover`). `privateKey` is the private key FILE's contents; it stays the caller's (wipe it),
   * and the key parsed from it is wiped before this returns. The wrap's recipient (its `key_id`)
   * need not be this slot's current public key: an envelope wrapped before the slot's key was
   * replaced still opens with the old private key.
   * @throws ConfigError for a file that is not a recipient private key; KeyNotFoundError when the
   * wrap is for another recipient; UnwrapFailedError for tampered, truncated or re-bound wraps.
   */
  async unwrapOffline(wrapped: WrappedKek, context: WrapContext, privateKey: Uint8Array): Promise<Kek> {
    const key = await parseRecipientPrivateKey(privateKey);
    try {
      return await unwrapWithRecipientKey(wrapped, context, key);
    } finally {
      key.zero();
    }
  }
}

/** Options of {@link createRecipientProvider}. */
export interface RecipientProviderOptions {
  /** The printable public key, `kmsr1-<kind>:<base64url>`. */
  readonly publicKey: string;
  /** The slot's name, for error messages. */
  readonly slot?: string;
}

/**
 * Creates a `recipient` provider for a printable public key; loads ML-KEM-768 for the hybrid kind
 * and checks that the X25519 key is usable, so a bad key fails here rather than at the first wrap.
 * @throws ConfigError for a malformed or unusable key; MissingDependencyError for the hybrid kind
 * without `@noble/post-quantum`.
 */
export async function createRecipientProvider(options: RecipientProviderOptions): Promise<RecipientProvider> {
  const where = options.slot !== undefined ? { slot: options.slot } : {};
  const publicKey = parseRecipientPublicKey(options.publicKey, where);
  const probe = x25519Agree(generateKeyPairSync('x25519').privateKey, publicKey.x25519);
  if (probe === undefined) {
    throw new ConfigError('the recipient X25519 public key is not usable (a low-order point)', {
      ...where,
      provider: id,
    });
  }
  probe.fill(0);
  return new RecipientProvider(publicKey, await mlKemFor(publicKey.kind), options.slot);
}

const UNUSED_SLOT_FIELDS = [
  'masterKey',
  'region',
  'endpoint',
  'roleArn',
  'externalId',
  'roleSessionName',
] as const;

/**
 * Creates the `recipient` provider of a slot: `options.publicKey` holds the printable public key.
 * `key_id` is optional; when set it must be that key's fingerprint (a pin against pasting the
 * wrong key). Any other option or slot field is refused, `master_key` above all: the private key
 * never goes into a slot.
 * @throws ConfigError as described; MissingDependencyError as {@link createRecipientProvider}.
 */
export async function createRecipientProviderForSlot(slot: KmsSlot): Promise<RecipientProvider> {
  const where = { slot: slot.name, provider: id };
  for (const field of UNUSED_SLOT_FIELDS) {
    if (slot[field] !== undefined) {
      throw new ConfigError(
        field === 'masterKey'
          ? 'a recipient slot takes no master_key: its private key stays offline and is used only by "kms-envelope recover"'
          : `a recipient slot does not use "${field}"`,
        where,
      );
    }
  }
  const options = slot.options ?? {};
  for (const name of Object.keys(options)) {
    if (name !== 'publicKey')
      throw new ConfigError(`unknown recipient slot option "${name}" (only publicKey)`, where);
  }
  if (typeof options.publicKey !== 'string' || options.publicKey === '') {
    throw new ConfigError(
      'slot of provider "recipient" needs options.publicKey: the kmsr1-… public key that "kms-envelope keygen recipient" printed',
      where,
    );
  }
  const provider = await createRecipientProvider({ publicKey: options.publicKey, slot: slot.name });
  if (slot.keyId && slot.keyId !== provider.publicKey.fingerprint) {
    throw new ConfigError(
      `the slot's key_id "${slot.keyId}" is not the fingerprint of its publicKey (${provider.publicKey.fingerprint})`,
      where,
    );
  }
  return provider;
}

/** The plugin record the registry loads. */
export const plugin: ProviderPlugin = { id, create: (slot) => createRecipientProviderForSlot(slot) };
