import { InvalidArgumentError } from '../errors.js';
import { NAME_PATTERN } from '../names.js';
import type { RecordKind } from './store.js';

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
