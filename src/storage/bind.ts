import { decodeKmsBlob } from '../envelope/codec.js';
import type { KmsBlob } from '../envelope/kms-blob.js';
import { InvalidArgumentError, MalformedEnvelopeError, VersionConflictError } from '../errors.js';
import { type IndexName, parseIndexName } from '../names.js';
import type { PushOptions } from './store.js';

/**
 * The checks every store makes on the way in: a valid index name, and a blob bound to it.
 * @throws InvalidArgumentError
 */
export function checkWrite(index: string, blob: KmsBlob): IndexName {
  const name = parseIndexName(index);
  if (blob?.indexName !== name) {
    throw new InvalidArgumentError(
      `envelope is bound to index "${String(blob?.indexName)}", not to this one`,
      {
        index: name,
      },
    );
  }
  return name;
}

/** The check every store makes on the way out: the stored blob is bound to the index read. */
export function checkRead(index: IndexName, blob: KmsBlob): KmsBlob {
  if (blob.indexName !== index) {
    throw new MalformedEnvelopeError(`stored envelope is bound to another index ("${blob.indexName}")`, {
      index,
    });
  }
  return blob;
}

/**
 * Decodes stored bytes of `index`: verified, bound to the index, errors naming the index.
 * @throws MalformedEnvelopeError
 */
export function decodeStored(index: IndexName, bytes: Uint8Array): KmsBlob {
  let blob: KmsBlob;
  try {
    blob = decodeKmsBlob(bytes);
  } catch (err) {
    throw new MalformedEnvelopeError((err as MalformedEnvelopeError).detail ?? 'malformed KMSBlob', {
      index,
      cause: err,
    });
  }
  return checkRead(index, blob);
}

/** An empty creation id: what an envelope written before creation ids is compared as. */
const NO_CREATION_ID = new Uint8Array(0);

/**
 * Whether a compare-and-set push with `options` must be refused given what is stored
 * (`undefined`: nothing): the version differs, or `expectedCreationId` is given and the stored
 * creation id (empty when it has none) differs. Creation ids are not secret: a plain comparison.
 */
export function casConflict(stored: KmsBlob | undefined, options: PushOptions): boolean {
  if (options.expectedVersion === undefined) return false;
  if (stored === undefined || stored.version !== options.expectedVersion) return true;
  const expected = options.expectedCreationId;
  if (expected === undefined) return false;
  const actual = stored.creationId ?? NO_CREATION_ID;
  return !Buffer.from(actual.buffer, actual.byteOffset, actual.byteLength).equals(expected);
}

/**
 * Throws the `VersionConflictError` of a compare-and-set push when {@link casConflict} says so.
 * `stored`: what is stored (`undefined`: nothing).
 */
export function checkCas(index: IndexName, stored: KmsBlob | undefined, options: PushOptions): void {
  const expected = options.expectedVersion;
  if (expected === undefined || !casConflict(stored, options)) return;
  const recreated = stored !== undefined && stored.version === expected;
  throw new VersionConflictError(expected, stored?.version, { index }, recreated);
}
