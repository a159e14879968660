/**
 * Key ids: segment 2 of the wire format. Canonical lower-case UUID text (8-4-4-4-12); new ids are
 * UUIDv7.
 *
 * Segment 2 names a DEK in application ciphertext and a KEK slot in wrapped DEK records and
 * KEK-check records. The two are different branded types with their own parse functions, so one
 * cannot be passed where the other is expected.
 *
 * Accepted spellings (each is also accepted by Python's `uuid.UUID`, which gemstone_utils uses, so
 * a token read here is read there too); ids are always written canonical:
 *
 * - `01a20849-b253-7265-8831-44e0eb8ffa6c` (canonical; upper or mixed case also accepted)
 * - `01a20849b2537265883144e0eb8ffa6c` (32 hex digits, no hyphens)
 * - `{01a20849-b253-7265-8831-44e0eb8ffa6c}` (braces around either form)
 * - `urn:uuid:01a20849-b253-7265-8831-44e0eb8ffa6c` (lower-case prefix only: Python's parser
 *   rejects `URN:UUID:`), around either form
 *
 * Any 128-bit value is accepted, as Python does: no version or variant check. (The `uuid` npm
 * package's `validate`/`parse` accept only the hyphenated form, any case, with version 1–8 and
 * the RFC variant, or the nil and max UUIDs; no braces, no `urn:uuid:`, no bare 32 hex digits.
 * They are therefore not used for reading.) Python also tolerates hyphens anywhere, whitespace,
 * a `+` sign and underscores inside the hex; those are refused here.
 *
 * @module
 */
import { v7 } from 'uuid';
import { InvalidKeyIdError } from '../errors.js';

/** The id of a DEK: segment 2 of application ciphertext. Canonical lower-case UUID text. */
export type DekId = string & {
  /** Compile-time brand only: there is no such property at run time. */
  readonly __brand: 'DekId';
};

/** The id of the KEK slot that wrapped a DEK record or a KEK-check record (their segment 2). */
export type KekSlotId = string & {
  /** Compile-time brand only: there is no such property at run time. */
  readonly __brand: 'KekSlotId';
};

/** Either kind of key id: what segment 2 of a token holds. */
export type WireKeyId = DekId | KekSlotId;

/** Parses segment 2 into one kind of key id (e.g. {@link parseDekId}, {@link parseKekSlotId}). */
export type KeyIdParser<K extends WireKeyId> = (text: string) => K;

const CANONICAL = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const HYPHENATED = /^([0-9a-f]{8})-([0-9a-f]{4})-([0-9a-f]{4})-([0-9a-f]{4})-([0-9a-f]{12})$/i;
const BARE = /^([0-9a-f]{8})([0-9a-f]{4})([0-9a-f]{4})([0-9a-f]{4})([0-9a-f]{12})$/i;
const INTEGER = /^[0-9]+$/;

/**
 * Canonical ids seen recently. The same id string (a key context's `keyid`) comes back on every
 * encryption; a `Set` lookup of a string already hashed is ~10× cheaper than the regex. Cleared
 * when full, which costs a few regex tests, never memory.
 */
const knownCanonical = new Set<string>();
const KNOWN_CANONICAL_MAX = 4096;

/** Canonical lower-case UUID text of `text`, or `undefined` when it is no accepted spelling. */
function canonicalOrUndefined(text: string): string | undefined {
  if (knownCanonical.has(text)) return text;
  if (CANONICAL.test(text)) {
    if (knownCanonical.size >= KNOWN_CANONICAL_MAX) knownCanonical.clear();
    knownCanonical.add(text);
    return text;
  }
  let body = text;
  if (body.startsWith('urn:uuid:')) body = body.slice(9);
  else if (body.startsWith('{') && body.endsWith('}')) body = body.slice(1, -1);
  const m = HYPHENATED.exec(body) ?? BARE.exec(body);
  return m === null ? undefined : `${m[1]}-${m[2]}-${m[3]}-${m[4]}-${m[5]}`.toLowerCase();
}

/**
 * Canonical lower-case UUID text of `text` (see the module comment for the accepted spellings).
 * @throws InvalidKeyIdError, with a migration hint for integer ids.
 */
function canonicalUuid(text: string, kind: string): string {
  if (typeof text !== 'string') throw new InvalidKeyIdError(`${kind} must be a string, got ${typeof text}`);
  const canonical = canonicalOrUndefined(text);
  if (canonical !== undefined) return canonical;
  if (INTEGER.test(text)) {
    throw new InvalidKeyIdError(
      `${kind} "${text.slice(0, 40)}" is an integer: integer key ids (gemstone_utils before 0.5) are no longer supported; migrate the key to a UUID id (newKeyId()) and re-encrypt or re-wrap under it`,
    );
  }
  throw new InvalidKeyIdError(`${kind} ${JSON.stringify(text.slice(0, 60))} is not a UUID`);
}

/** True when `text` is a key id in an accepted spelling (see the module comment). Never throws. */
export function isKeyIdText(text: string): boolean {
  return typeof text === 'string' && canonicalOrUndefined(text) !== undefined;
}

/** True when `text` is an integer key id of gemstone_utils before 0.5 (which must be migrated). */
export function isIntegerKeyIdText(text: string): boolean {
  return typeof text === 'string' && INTEGER.test(text);
}

/**
 * Parses a DEK id into canonical form.
 * @throws InvalidKeyIdError when `text` is not a UUID; integer ids get a message saying to
 * migrate them.
 */
export function parseDekId(text: string): DekId {
  return canonicalUuid(text, 'DEK id') as DekId;
}

/**
 * Parses a KEK slot id into canonical form.
 * @throws InvalidKeyIdError when `text` is not a UUID; integer ids get a message saying to
 * migrate them.
 */
export function parseKekSlotId(text: string): KekSlotId {
  return canonicalUuid(text, 'KEK slot id') as KekSlotId;
}

/**
 * `id` in canonical form, keeping its kind (what the format functions write in segment 2).
 * @throws InvalidKeyIdError when `id` is not a UUID (e.g. a cast string).
 */
export function canonicalKeyId<K extends WireKeyId>(id: K): K {
  return canonicalUuid(id, 'key id') as K;
}

/** A new DEK id: a UUIDv7 (time-ordered, RFC 9562), canonical lower case. */
export function newKeyId(): DekId {
  return v7() as DekId;
}

/** A new KEK slot id: a UUIDv7 (time-ordered, RFC 9562), canonical lower case. */
export function newKekSlotId(): KekSlotId {
  return v7() as KekSlotId;
}
