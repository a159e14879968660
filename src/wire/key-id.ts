import { v7 } from 'uuid';
import { InvalidKeyIdError } from '../errors.js';

/** The id of a DEK: segment 2 of application ciphertext. Canonical lower-case UUID text. */
export type DekId = string & { readonly __brand: 'DekId' };
/** The id of the KEK slot that wrapped a DEK record or a KEK-check record (their segment 2). */
export type KekSlotId = string & { readonly __brand: 'KekSlotId' };

const HEX32 = /^[0-9a-fA-F]{32}$/;
const CANONICAL = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/**
 * Canonical lower-case UUID text of `text`, accepting what Python's `uuid.UUID(str)` accepts (the
 * parser gemstone_utils uses): upper or lower case, optional `{…}` braces or `urn:uuid:` prefix,
 * hyphens anywhere or none.
 * @throws InvalidKeyIdError, with a migration hint for integer ids.
 */
function canonicalUuid(text: string, kind: string): string {
  if (typeof text !== 'string') throw new InvalidKeyIdError(`${kind} must be a string`);
  if (text.length === 36 && CANONICAL.test(text)) return text; // what we write: the hot path
  if (/^[0-9]{1,20}$/.test(text)) {
    throw new InvalidKeyIdError(
      `${kind} "${text}" is an integer: integer key ids are no longer supported; migrate the key to a UUID id (newKeyId()) and re-encrypt or re-wrap under it`,
    );
  }
  let hex = text.trim();
  if (hex.toLowerCase().startsWith('urn:uuid:')) hex = hex.slice(9);
  if (hex.startsWith('{') && hex.endsWith('}')) hex = hex.slice(1, -1);
  hex = hex.replace(/-/g, '');
  if (!HEX32.test(hex))
    throw new InvalidKeyIdError(`${kind} ${JSON.stringify(text.slice(0, 60))} is not a UUID`);
  // Any 128-bit value, as Python's uuid.UUID reads it (no version or variant check).
  const h = hex.toLowerCase();
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** Parses a DEK id into canonical form. @throws InvalidKeyIdError */
export function parseDekId(text: string): DekId {
  return canonicalUuid(text, 'DEK id') as DekId;
}

/** Parses a KEK slot id into canonical form. @throws InvalidKeyIdError */
export function parseKekSlotId(text: string): KekSlotId {
  return canonicalUuid(text, 'KEK slot id') as KekSlotId;
}

/** A new DEK id: a UUIDv7 (time-ordered), canonical lower case. */
export function newKeyId(): DekId {
  return v7() as DekId;
}

/** A new KEK slot id: a UUIDv7. */
export function newKekSlotId(): KekSlotId {
  return v7() as KekSlotId;
}
