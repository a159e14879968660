/**
 * KMSBlob buffers built with the flatc-generated builder (back to front, flatc's own layout, no
 * value checks), and the CRC32C trailer of a stored envelope: what the codec tests read.
 */
import { Builder } from 'flatbuffers';
import { crc32c } from '../../src/envelope/checksum.js';
import type { KmsBlob } from '../../src/envelope/kms-blob.js';
import { ContextEntry, KMSBlob, Wrap } from '../../src/generated/kms_blob_generated.js';

/** UTF-8 byte order of strings: the order in which context entries are stored. */
export const byUtf8 = (a: string, b: string): number => Buffer.compare(Buffer.from(a), Buffer.from(b));

/** A copy of `fb` (without trailer) with a fresh valid CRC32C trailer. */
export function withTrailer(fb: Uint8Array): Uint8Array {
  const out = new Uint8Array(fb.length + 4);
  out.set(fb);
  new DataView(out.buffer).setUint32(fb.length, crc32c(fb), true);
  return out;
}

/** Builds a buffer with the flatc-generated builder (back to front, its own layout). */
export function buildWithFlatc(blob: KmsBlob, extra?: (b: Builder) => void): Uint8Array {
  const b = new Builder(256);
  const entries = Object.keys(blob.encryptionContext)
    .sort(byUtf8)
    .map((k) =>
      ContextEntry.createContextEntry(b, b.createString(k), b.createString(blob.encryptionContext[k]!)),
    );
  const ctx = entries.length ? KMSBlob.createEncryptionContextVector(b, entries) : 0;
  const strings = [blob.kmsName, blob.provider, blob.keyId, blob.region, blob.indexName].map((s) =>
    b.createString(s),
  );
  const wrapped = KMSBlob.createWrappedKekVector(b, blob.wrappedKek);
  const check = blob.kekCheck ? KMSBlob.createKekCheckVector(b, blob.kekCheck) : 0;
  const creation = blob.creationId ? KMSBlob.createCreationIdVector(b, blob.creationId) : 0;
  const wrapTables = (blob.wraps ?? []).map((w) =>
    Wrap.createWrap(
      b,
      b.createString(w.kmsName),
      b.createString(w.provider),
      w.keyId === '' ? 0 : b.createString(w.keyId),
      w.region === '' ? 0 : b.createString(w.region),
      Wrap.createWrappedKekVector(b, w.wrappedKek),
    ),
  );
  const wraps = wrapTables.length > 0 ? KMSBlob.createWrapsVector(b, wrapTables) : 0;
  // startKMSBlob() makes room for the known fields only; endObject() would drop later ones.
  if (extra) b.startObject(18);
  else KMSBlob.startKMSBlob(b);
  KMSBlob.addKmsName(b, strings[0]!);
  KMSBlob.addProvider(b, strings[1]!);
  KMSBlob.addKeyId(b, strings[2]!);
  KMSBlob.addRegion(b, strings[3]!);
  KMSBlob.addWrappedKek(b, wrapped);
  KMSBlob.addVersion(b, blob.version);
  KMSBlob.addCreatedAt(b, BigInt(blob.createdAt));
  KMSBlob.addIndexName(b, strings[4]!);
  if (ctx) KMSBlob.addEncryptionContext(b, ctx);
  KMSBlob.addUpdatedAt(b, BigInt(blob.updatedAt));
  if (check) KMSBlob.addKekCheck(b, check);
  if (creation) KMSBlob.addCreationId(b, creation);
  if (blob.schemaVersion !== 1) KMSBlob.addSchemaVersion(b, blob.schemaVersion);
  if (wraps) KMSBlob.addWraps(b, wraps);
  if (blob.threshold !== undefined) KMSBlob.addThreshold(b, blob.threshold);
  extra?.(b);
  KMSBlob.finishKMSBlobBuffer(b, KMSBlob.endKMSBlob(b));
  return withTrailer(b.asUint8Array());
}
