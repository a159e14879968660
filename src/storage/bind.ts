import { decodeKmsBlob } from '../envelope/codec.js';
import type { KmsBlob } from '../envelope/kms-blob.js';
import { InvalidArgumentError, MalformedEnvelopeError } from '../errors.js';
import { type IndexName, parseIndexName } from '../names.js';

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
