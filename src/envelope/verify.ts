/**
 * The structural verifier of stored KMSBlob envelopes.
 *
 * The flatbuffers JavaScript runtime has no verifier and reads mutated buffers silently into wrong
 * values, so this module checks the CRC32C trailer and then every offset, vtable, length and
 * string of the FlatBuffer itself, reading each field straight from the bytes as it verifies it.
 * Value rules (name patterns, ranges, ordering of times) are checked afterwards by the codec.
 * Every check throws {@link MalformedEnvelopeError}; nothing else is thrown by design.
 *
 * @module
 */
import { MalformedEnvelopeError } from '../errors.js';
import { MAX_NAME_LENGTH } from '../names.js';
import { CHECKSUM_LENGTH, crc32c } from './checksum.js';
import {
  ContextEntryField,
  CREATION_ID_LENGTH,
  KmsBlobField as F,
  KMS_BLOB_FILE_IDENTIFIER,
  type KmsBlob,
  KmsBlobLimits,
  type KmsWrap,
  MAX_WRAPS,
  WrapField,
} from './kms-blob.js';

/** Smallest stored envelope: root offset, file identifier, a 4-byte vtable, then the trailer. */
export const MIN_ENVELOPE_BYTES = 4 + 4 + 4 + CHECKSUM_LENGTH;

/**
 * Throws the {@link MalformedEnvelopeError} of a failed check. Messages name the check, never
 * byte values.
 */
export function malformed(message: string): never {
  throw new MalformedEnvelopeError(`malformed KMSBlob: ${message}`);
}

// ignoreBOM: a leading U+FEFF is part of the string, not a byte-order mark to strip.
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
const IDENTIFIER = [...KMS_BLOB_FILE_IDENTIFIER].map((c) => c.charCodeAt(0));

// Longest strings in UTF-8 bytes: limits count UTF-16 code units, each at most 3 bytes
// (a 4-byte character is two code units).
const MAX_STRING_BYTES = {
  name: MAX_NAME_LENGTH,
  provider: 64,
  keyId: KmsBlobLimits.maxKeyIdLength * 3,
  region: KmsBlobLimits.maxRegionLength * 3,
  contextKey: KmsBlobLimits.maxContextKeyLength * 3,
  contextValue: KmsBlobLimits.maxContextValueLength * 3,
} as const;

// Byte fields up to this length are copied in a loop (V8 allocates such typed arrays on its heap);
// longer ones with set(). Every copy has an ArrayBuffer of its own: a slab shared between decodes
// was ~0.5 µs cheaper per wrapped KEK, but transferring or detaching one envelope's field then
// emptied every other envelope's fields cut from the same slab.
const SMALL_COPY = 64;

/**
 * `Buffer#latin1Slice`: what `buf.toString('latin1', start, end)` calls after its argument
 * handling, which costs ~40% on short strings. Present on Buffer.prototype since Node 6 but not
 * in the typings; the fallback keeps decode working should it ever go.
 */
type Latin1Slice = (this: Buffer, start: number, end: number) => string;
const latin1Slice: Latin1Slice =
  (Buffer.prototype as Buffer & { latin1Slice?: Latin1Slice }).latin1Slice ??
  function (this: Buffer, start: number, end: number): string {
    return this.toString('latin1', start, end);
  };

// Fields this reader knows (and reads, each checked by Reader#field); later slots are unknown.
const KMS_BLOB_FIELDS = Object.keys(F).length;
const CONTEXT_ENTRY_FIELDS = Object.keys(ContextEntryField).length;
const WRAP_FIELDS = Object.keys(WrapField).length;

// Envelopes up to this size are turned into text once (see Reader#ascii); typical ones are ~500.
// Decoded strings of 13 characters or more may then be slices of that text and keep it alive:
// at most this many bytes of envelope (no plaintext key material is ever in an envelope).
const WHOLE_TEXT_BYTES = 1024;

/** Little-endian reads. Callers check bounds first (an out-of-range index would read 0). */
const u16 = (b: Uint8Array, p: number): number => b[p]! | (b[p + 1]! << 8);
const i32 = (b: Uint8Array, p: number): number =>
  b[p]! | (b[p + 1]! << 8) | (b[p + 2]! << 16) | (b[p + 3]! << 24);
const u32 = (b: Uint8Array, p: number): number => i32(b, p) >>> 0;

/** A verified table: where it is, where its vtable is, and both sizes. */
interface Table {
  readonly pos: number;
  readonly vtable: number;
  readonly vtableSize: number;
  readonly tableSize: number;
}

/** Bounds-checked reads over the FlatBuffer part `[0, end)` of a stored envelope. */
class Reader {
  readonly bytes: Uint8Array;
  /** The same bytes as a Buffer (no copy), for native Latin-1 slicing of ASCII strings. */
  readonly text: Buffer;
  /** Length of the FlatBuffer, without the trailer. */
  readonly end: number;
  /** The whole FlatBuffer as Latin-1 text, made on the first ASCII string of a small envelope. */
  private whole: string | undefined;
  /** Byte range of the string last read by {@link string}. */
  stringStart = 0;
  stringEnd = 0;

  constructor(bytes: Uint8Array, end: number) {
    this.bytes = bytes;
    this.text = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
    this.end = end;
  }

  /**
   * Fails unless `[pos, pos + size)` lies inside the FlatBuffer. The message (`part` of `what`)
   * is only built on failure: this runs for every field of every decode.
   */
  need(pos: number, size: number, what: string, part?: string): void {
    if (pos < 0 || size < 0 || pos + size > this.end) {
      malformed(`${part === undefined ? '' : `${part} of `}${what} is out of bounds`);
    }
  }

  /**
   * Verifies the table at `pos`: aligned and in bounds, its vtable (found through the soffset)
   * aligned, in bounds and of even size, and every vtable entry past the first `known` (fields
   * of a newer schema) inside the table; {@link field} checks the known ones as it reads them.
   */
  table(pos: number, what: string, known: number): Table {
    if (pos % 4 !== 0) malformed(`${what} is misaligned`);
    this.need(pos, 4, what);
    const vtable = pos - i32(this.bytes, pos);
    if (vtable % 2 !== 0) malformed(`vtable of ${what} is misaligned`);
    this.need(vtable, 4, what, 'vtable');
    const vtableSize = u16(this.bytes, vtable);
    const tableSize = u16(this.bytes, vtable + 2);
    if (vtableSize < 4 || vtableSize % 2 !== 0) malformed(`vtable of ${what} has a bad size`);
    this.need(vtable, vtableSize, what, 'vtable');
    if (tableSize < 4) malformed(`${what} has a bad size`);
    this.need(pos, tableSize, what);
    for (let at = vtable + 4 + 2 * known; at < vtable + vtableSize; at += 2) {
      const offset = u16(this.bytes, at);
      if (offset !== 0 && (offset < 4 || offset >= tableSize))
        malformed(`a field of ${what} is out of its table`);
    }
    return { pos, vtable, vtableSize, tableSize };
  }

  /**
   * Position of field `slot` of table `t`, or 0 when absent (vtable too short or entry 0).
   * Checks that the field's `width` bytes fit the table and are aligned to `width`.
   */
  field(t: Table, slot: number, width: number, what: string): number {
    const entry = 4 + 2 * slot;
    if (entry + 2 > t.vtableSize) return 0;
    const offset = u16(this.bytes, t.vtable + entry);
    if (offset === 0) return 0;
    if (offset < 4) malformed(`${what} overlaps its table's vtable offset`);
    if (offset + width > t.tableSize) malformed(`${what} overruns its table`);
    const pos = t.pos + offset;
    if (pos % width !== 0) malformed(`${what} is misaligned`);
    return pos;
  }

  /** Follows the uoffset at `at` (4-aligned, in bounds); returns its non-zero, aligned target. */
  follow(at: number, what: string): number {
    const rel = u32(this.bytes, at);
    if (rel === 0) malformed(`offset to ${what} is zero`);
    const target = at + rel;
    if (target % 4 !== 0) malformed(`${what} is misaligned`);
    this.need(target, 4, what);
    return target;
  }

  /** The start of the [ubyte] vector or string that the uoffset at `at` points to, after checks. */
  vector(at: number, maxLength: number, what: string): number {
    const target = this.follow(at, what);
    const length = u32(this.bytes, target);
    if (length > maxLength) malformed(`${what} is longer than ${maxLength} bytes`);
    this.need(target + 4, length, what);
    return target + 4;
  }

  /** A fresh copy of the [ubyte] vector at `at` (never a view into the input). */
  bytesAt(at: number, maxLength: number, what: string): Uint8Array {
    const start = this.vector(at, maxLength, what);
    const length = u32(this.bytes, start - 4);
    const copy = new Uint8Array(length);
    if (length <= SMALL_COPY) {
      for (let i = 0; i < length; i++) copy[i] = this.bytes[start + i]!;
    } else {
      copy.set(this.bytes.subarray(start, start + length));
    }
    return copy;
  }

  /**
   * The string that the uoffset at `at` points to: NUL-terminated, valid UTF-8, without C0
   * control characters or DEL, at most `maxBytes` long. Sets {@link stringStart}/{@link stringEnd}.
   */
  string(at: number, maxBytes: number, what: string): string {
    const start = this.vector(at, maxBytes, what);
    const end = start + u32(this.bytes, start - 4);
    this.need(end, 1, what, 'terminator');
    const bytes = this.bytes;
    if (bytes[end] !== 0) malformed(`${what} is not NUL-terminated`);
    this.stringStart = start;
    this.stringEnd = end;
    let i = start;
    // Printable ASCII (0x20..0x7e) in one unsigned comparison; anything else takes the slow path.
    while (i < end && (bytes[i]! - 0x20) >>> 0 < 0x5f) i++;
    if (i === end) return this.ascii(start, end);
    return this.unusualString(start, end, i, what);
  }

  /**
   * The verified ASCII bytes `[start, end)` as a string. Small envelopes are rendered once as a
   * whole (one native call instead of one per field, ~60 ns each) and cut with substring.
   */
  private ascii(start: number, end: number): string {
    if (this.end > WHOLE_TEXT_BYTES) return latin1Slice.call(this.text, start, end);
    this.whole ??= latin1Slice.call(this.text, 0, this.end);
    return this.whole.substring(start, end);
  }

  /** The rest of {@link string} once a byte outside printable ASCII was found at `from`. */
  private unusualString(start: number, end: number, from: number, what: string): string {
    const bytes = this.bytes;
    for (let i = from; i < end; i++) {
      const b = bytes[i]!;
      if (b < 0x20 || b === 0x7f) malformed(`${what} contains control characters`);
    }
    try {
      return utf8.decode(bytes.subarray(start, end));
    } catch {
      return malformed(`${what} is not valid UTF-8`);
    }
  }

  /** A string field: '' when absent, unless `required`. */
  stringField(t: Table, slot: number, maxBytes: number, what: string, required: boolean): string {
    const pos = this.field(t, slot, 4, what);
    if (pos === 0) return required ? malformed(`required field ${what} is missing`) : '';
    return this.string(pos, maxBytes, what);
  }

  /** A [ubyte] field as a fresh copy; `undefined` when absent. */
  bytesField(t: Table, slot: number, maxLength: number, what: string): Uint8Array | undefined {
    const pos = this.field(t, slot, 4, what);
    return pos === 0 ? undefined : this.bytesAt(pos, maxLength, what);
  }

  /** A uint field; `fallback` when absent. */
  uintField(t: Table, slot: number, fallback: number, what: string): number {
    const pos = this.field(t, slot, 4, what);
    return pos === 0 ? fallback : u32(this.bytes, pos);
  }

  /** A ushort field; `fallback` when absent. */
  ushortField(t: Table, slot: number, fallback: number, what: string): number {
    const pos = this.field(t, slot, 2, what);
    return pos === 0 ? fallback : u16(this.bytes, pos);
  }

  /** A ubyte field; `fallback` when absent. */
  ubyteField(t: Table, slot: number, fallback: number, what: string): number {
    const pos = this.field(t, slot, 1, what);
    return pos === 0 ? fallback : this.bytes[pos]!;
  }

  /**
   * A long field that must be non-negative and below 2^53, so that a number holds it exactly
   * (the codec then checks the real range); 0 when absent.
   */
  longField(t: Table, slot: number, what: string): number {
    const pos = this.field(t, slot, 8, what);
    if (pos === 0) return 0;
    const high = i32(this.bytes, pos + 4);
    if (high < 0 || high > 0x1f_ffff) malformed(`${what} is out of range`);
    return high * 0x1_0000_0000 + u32(this.bytes, pos);
  }

  /** Byte-wise comparison of two verified ranges (UTF-8 byte order is code point order). */
  compare(aStart: number, aEnd: number, bStart: number, bEnd: number): number {
    const bytes = this.bytes;
    const n = Math.min(aEnd - aStart, bEnd - bStart);
    for (let i = 0; i < n; i++) {
      const d = bytes[aStart + i]! - bytes[bStart + i]!;
      if (d !== 0) return d;
    }
    return aEnd - aStart - (bEnd - bStart);
  }
}

/**
 * The encryption context: a vector of ContextEntry tables, each verified like the root table,
 * keys strictly ascending by their UTF-8 bytes (so unique, and one canonical order).
 */
function readContext(r: Reader, root: Table): Record<string, string> {
  const context: Record<string, string> = {};
  const pos = r.field(root, F.encryptionContext, 4, 'encryption_context');
  if (pos === 0) return context;
  const vector = r.follow(pos, 'encryption_context');
  const count = u32(r.bytes, vector);
  if (count > KmsBlobLimits.maxContextEntries) malformed('encryption_context has too many entries');
  r.need(vector + 4, 4 * count, 'encryption_context');
  let previousStart = 0;
  let previousEnd = -1;
  for (let i = 0; i < count; i++) {
    const what = 'encryption_context entry';
    const entry = r.table(r.follow(vector + 4 + 4 * i, what), what, CONTEXT_ENTRY_FIELDS);
    const key = r.stringField(
      entry,
      ContextEntryField.key,
      MAX_STRING_BYTES.contextKey,
      'encryption_context key',
      true,
    );
    if (previousEnd >= 0 && r.compare(previousStart, previousEnd, r.stringStart, r.stringEnd) >= 0) {
      malformed('encryption_context keys are not strictly ascending');
    }
    previousStart = r.stringStart;
    previousEnd = r.stringEnd;
    const value = r.stringField(
      entry,
      ContextEntryField.value,
      MAX_STRING_BYTES.contextValue,
      'encryption_context value',
      true,
    );
    // An own property named "__proto__" cannot be made by assignment; the codec refuses the key.
    if (key === '__proto__') malformed('encryption_context key "__proto__" is reserved');
    context[key] = value;
  }
  return context;
}

/**
 * The further wraps: a vector of at most {@link MAX_WRAPS} − 1 Wrap tables, each verified like the
 * root table; `undefined` when absent or empty. Names, duplicates and policy are value rules,
 * checked by the codec.
 */
function readWraps(r: Reader, root: Table): KmsWrap[] | undefined {
  const pos = r.field(root, F.wraps, 4, 'wraps');
  if (pos === 0) return undefined;
  const vector = r.follow(pos, 'wraps');
  const count = u32(r.bytes, vector);
  if (count > MAX_WRAPS - 1) malformed('wraps has too many entries');
  r.need(vector + 4, 4 * count, 'wraps');
  const wraps: KmsWrap[] = [];
  for (let i = 0; i < count; i++) {
    const t = r.table(r.follow(vector + 4 + 4 * i, 'a wrap'), 'a wrap', WRAP_FIELDS);
    wraps.push({
      kmsName: r.stringField(t, WrapField.kmsName, MAX_STRING_BYTES.name, 'a wrap kms_name', true),
      provider: r.stringField(t, WrapField.provider, MAX_STRING_BYTES.provider, 'a wrap provider', true),
      keyId: r.stringField(t, WrapField.keyId, MAX_STRING_BYTES.keyId, 'a wrap key_id', false),
      region: r.stringField(t, WrapField.region, MAX_STRING_BYTES.region, 'a wrap region', false),
      wrappedKek:
        r.bytesField(t, WrapField.wrappedKek, KmsBlobLimits.maxWrappedKekBytes, 'a wrap wrapped_kek') ??
        new Uint8Array(0),
    });
  }
  return wraps.length === 0 ? undefined : wraps;
}

/** Fails unless the size, the CRC32C trailer and the file identifier are right. */
function checkFrame(bytes: Uint8Array): number {
  if (!(bytes instanceof Uint8Array)) malformed('input is not a Uint8Array');
  if (bytes.length > KmsBlobLimits.maxEnvelopeBytes) malformed('envelope is too large');
  if (bytes.length < MIN_ENVELOPE_BYTES) malformed('envelope is too short');
  const end = bytes.length - CHECKSUM_LENGTH;
  if (u32(bytes, end) !== crc32c(bytes, 0, end)) malformed('checksum does not match (corrupt or truncated)');
  for (let i = 0; i < IDENTIFIER.length; i++) {
    if (bytes[4 + i] !== IDENTIFIER[i]) malformed(`file identifier is not "${KMS_BLOB_FILE_IDENTIFIER}"`);
  }
  return end;
}

/**
 * Verifies the structure of a stored envelope and reads its fields: checksum, size, identifier,
 * every offset, vtable, length, string terminator and UTF-8 sequence, no control characters in
 * strings, required fields present, context keys strictly ascending, longs exactly representable.
 * Applies the defaults for absent fields (`''`, `undefined`, schema version 1, version 0,
 * `updatedAt` = `createdAt`). Does not check value ranges or name patterns: the codec does.
 *
 * @throws MalformedEnvelopeError naming the failed check.
 */
export function readVerifiedKmsBlob(bytes: Uint8Array): KmsBlob {
  const end = checkFrame(bytes);
  const r = new Reader(bytes, end);
  const rootPos = u32(bytes, 0);
  if (rootPos < 8) malformed('root offset points into the header');
  const t = r.table(rootPos, 'root table', KMS_BLOB_FIELDS);
  const createdAt = r.longField(t, F.createdAt, 'created_at');
  const updatedAt = r.longField(t, F.updatedAt, 'updated_at');
  const kekCheck = r.bytesField(t, F.kekCheck, KmsBlobLimits.maxKekCheckBytes, 'kek_check');
  const creationId = r.bytesField(t, F.creationId, CREATION_ID_LENGTH, 'creation_id');
  const threshold = r.ubyteField(t, F.threshold, 0, 'threshold');
  return {
    kmsName: r.stringField(t, F.kmsName, MAX_STRING_BYTES.name, 'kms_name', true),
    provider: r.stringField(t, F.provider, MAX_STRING_BYTES.provider, 'provider', true),
    keyId: r.stringField(t, F.keyId, MAX_STRING_BYTES.keyId, 'key_id', false),
    region: r.stringField(t, F.region, MAX_STRING_BYTES.region, 'region', false),
    wrappedKek:
      r.bytesField(t, F.wrappedKek, KmsBlobLimits.maxWrappedKekBytes, 'wrapped_kek') ?? new Uint8Array(0),
    version: r.uintField(t, F.version, 0, 'version'),
    createdAt,
    indexName: r.stringField(t, F.indexName, MAX_STRING_BYTES.name, 'index_name', true),
    encryptionContext: readContext(r, t),
    // The schema's default: envelopes that omit the field were written as schema 1.
    schemaVersion: r.ushortField(t, F.schemaVersion, 1, 'schema_version'),
    // Writers that predate updated_at (or wrote 0): the envelope was last written when created.
    updatedAt: updatedAt === 0 ? createdAt : updatedAt,
    kekCheck: kekCheck === undefined || kekCheck.length === 0 ? undefined : kekCheck,
    creationId,
    wraps: readWraps(r, t),
    threshold: threshold === 0 ? undefined : threshold,
  };
}
