import { KmsBlobLimits } from '../envelope/kms-blob.js';
import { InvalidArgumentError } from '../errors.js';
import { type IndexName, NAME_PATTERN } from '../names.js';
import type { RecordKind } from './store.js';

/**
 * Largest record read or written by every store, in bytes: twice the envelope limit, since the
 * pending-rotation record holds a whole envelope in base64 (4/3 of its size) inside JSON.
 */
export const MAX_RECORD_BYTES = 2 * KmsBlobLimits.maxEnvelopeBytes;

/** Validates a record id and kind before they become a path or a Redis key. @throws InvalidArgumentError */
export function checkRecordId(kind: RecordKind, id: string): void {
  if (kind !== 'dek' && kind !== 'meta')
    throw new InvalidArgumentError('record kind must be "dek" or "meta"');
  if (
    typeof id !== 'string' ||
    id.length === 0 ||
    id.length > 128 ||
    !NAME_PATTERN.test(id) ||
    id.includes('..')
  ) {
    throw new InvalidArgumentError(
      'record id must be letters, digits, ".", "_" and "-", at most 128 characters',
    );
  }
}

/**
 * The checks of a record write: a valid kind and id, and a value of at most
 * {@link MAX_RECORD_BYTES} (reads refuse larger values, so writing one would store what can never
 * be read back). @throws InvalidArgumentError
 */
export function checkRecordWrite(index: IndexName, kind: RecordKind, id: string, value: Uint8Array): void {
  checkRecordId(kind, id);
  if (!(value instanceof Uint8Array) || value.length > MAX_RECORD_BYTES)
    throw new InvalidArgumentError(`a record is limited to ${MAX_RECORD_BYTES} bytes`, { index });
}
