/**
 * Encoding and verified decoding of KMSBlob envelopes.
 *
 * Stored form: a standard FlatBuffer of `schemas/kms_blob.fbs` (file identifier `KMSB`) followed
 * by a 4-byte little-endian CRC32C of the FlatBuffer bytes. {@link decodeKmsBlob} verifies the
 * checksum and the whole structure before it trusts a field (see ./verify.ts), then applies the
 * same value rules as {@link encodeKmsBlob}. See schemas/README.md.
 *
 * @module
 */
import { InvalidArgumentError, MalformedEnvelopeError } from '../errors.js';
import { MAX_NAME_LENGTH, NAME_PATTERN } from '../names.js';
import { CHECKSUM_LENGTH, crc32c } from './checksum.js';
import {
  CREATION_ID_LENGTH,
  KmsBlobField as F,
  KMS_BLOB_FILE_IDENTIFIER,
  KMS_BLOB_MAX_SCHEMA_VERSION,
  KMS_BLOB_MIN_SCHEMA_VERSION,
  KMS_BLOB_SCHEMA_VERSION,
  KMS_BLOB_THRESHOLD_SCHEMA_VERSION,
  type KmsBlob,
  KmsBlobLimits,
  type KmsWrap,
  MAX_WRAPS,
  PROVIDER_ID_PATTERN,
} from './kms-blob.js';
import { malformed, readVerifiedKmsBlob } from './verify.js';

/* ------------------------------------------------------------------------------------------ */
/* Value rules, shared by encode (InvalidArgumentError) and decode (MalformedEnvelopeError).   */
/* ------------------------------------------------------------------------------------------ */

type Fail = (message: string) => never;

const invalid: Fail = (message) => {
  throw new InvalidArgumentError(`cannot encode KMSBlob: ${message}`);
};

/** The rule of names.ts (`parseSlotName`/`parseIndexName`), with the caller's error type. */
function checkName(what: string, value: string, fail: Fail): void {
  if (
    value.length === 0 ||
    value.length > MAX_NAME_LENGTH ||
    !NAME_PATTERN.test(value) ||
    value.includes('..')
  ) {
    fail(`${what} is not a valid name`);
  }
}

function checkTimestamp(what: string, value: number, fail: Fail): void {
  if (!Number.isSafeInteger(value) || value < 0 || value > KmsBlobLimits.maxTimestamp) {
    fail(`${what} must be whole epoch seconds from 0 to ${KmsBlobLimits.maxTimestamp}`);
  }
}

function checkLength(what: string, value: string, max: number, fail: Fail): void {
  if (value.length > max) fail(`${what} is longer than ${max} characters`);
}

/**
 * The rules on every field but the encryption context. Text fields must also be free of control
 * characters and lone surrogates: encode checks that while measuring them, decode while reading.
 */
function checkFields(blob: KmsBlob, fail: Fail): void {
  checkName('kms_name', blob.kmsName, fail);
  checkName('index_name', blob.indexName, fail);
  if (!PROVIDER_ID_PATTERN.test(blob.provider)) fail('provider is not a valid provider id');
  checkLength('key_id', blob.keyId, KmsBlobLimits.maxKeyIdLength, fail);
  checkLength('region', blob.region, KmsBlobLimits.maxRegionLength, fail);
  if (blob.wrappedKek.length > KmsBlobLimits.maxWrappedKekBytes) {
    fail(`wrapped_kek is larger than ${KmsBlobLimits.maxWrappedKekBytes} bytes`);
  }
  if (!Number.isInteger(blob.version) || blob.version < 1 || blob.version > KmsBlobLimits.maxVersion) {
    fail(`version must be a whole number from 1 to ${KmsBlobLimits.maxVersion}`);
  }
  checkTimestamp('created_at', blob.createdAt, fail);
  checkTimestamp('updated_at', blob.updatedAt, fail);
  if (blob.updatedAt < blob.createdAt) fail('updated_at is before created_at');
  if (blob.schemaVersion < KMS_BLOB_MIN_SCHEMA_VERSION || blob.schemaVersion > KMS_BLOB_MAX_SCHEMA_VERSION) {
    fail(
      blob.schemaVersion > KMS_BLOB_MAX_SCHEMA_VERSION
        ? `schema_version ${blob.schemaVersion} was written by a newer kms-envelope`
        : `schema_version ${blob.schemaVersion} is not supported`,
    );
  }
  const check = blob.kekCheck;
  if (check !== undefined && (check.length === 0 || check.length > KmsBlobLimits.maxKekCheckBytes)) {
    fail(`kek_check must be 1 to ${KmsBlobLimits.maxKekCheckBytes} bytes`);
  }
  // Provider `none` wraps nothing: without its check value any supplied KEK would pass.
  if (check === undefined && blob.provider === 'none') fail('an envelope of provider "none" needs kek_check');
  const creationId = blob.creationId;
  if (blob.schemaVersion >= 2) {
    if (creationId === undefined || creationId.length !== CREATION_ID_LENGTH) {
      fail(`schema_version ${blob.schemaVersion} needs a ${CREATION_ID_LENGTH}-byte creation_id`);
    }
  } else if (creationId !== undefined) {
    fail(`schema_version ${blob.schemaVersion} has no creation_id`);
  }
  checkWraps(blob, fail);
}

/**
 * The rules on `wraps` and `threshold` (schemas/README.md): at most {@link MAX_WRAPS} wraps in
 * all, each slot once, valid names and sizes, never provider `none`; an envelope with wraps is
 * schema 2 or 3 and has `kek_check` (what tells a good wrap from a forged one); a threshold
 * 2 ≤ k ≤ n exactly in schema 3.
 */
function checkWraps(blob: KmsBlob, fail: Fail): void {
  const wraps = blob.wraps ?? [];
  const threshold = blob.threshold ?? 0;
  if (wraps.length > MAX_WRAPS - 1) fail(`wraps has more than ${MAX_WRAPS - 1} entries`);
  if (wraps.length > 0) {
    if (blob.schemaVersion < 2) fail('schema_version 1 has no wraps');
    if (blob.kekCheck === undefined) fail('an envelope with wraps needs kek_check');
    if (blob.provider === 'none') fail('an envelope of provider "none" has no wraps');
  }
  const slots = new Set([blob.kmsName]);
  for (const wrap of wraps) {
    checkName('a wrap kms_name', wrap.kmsName, fail);
    if (!PROVIDER_ID_PATTERN.test(wrap.provider)) fail('a wrap provider is not a valid provider id');
    if (wrap.provider === 'none') fail('a wrap of provider "none" wraps nothing');
    checkLength('a wrap key_id', wrap.keyId, KmsBlobLimits.maxKeyIdLength, fail);
    checkLength('a wrap region', wrap.region, KmsBlobLimits.maxRegionLength, fail);
    if (wrap.wrappedKek.length > KmsBlobLimits.maxWrappedKekBytes) {
      fail(`a wrap wrapped_kek is larger than ${KmsBlobLimits.maxWrappedKekBytes} bytes`);
    }
    if (slots.has(wrap.kmsName)) fail('two wraps name the same slot');
    slots.add(wrap.kmsName);
  }
  if (blob.schemaVersion === KMS_BLOB_THRESHOLD_SCHEMA_VERSION) {
    if (!Number.isInteger(threshold) || threshold < 2 || threshold > 1 + wraps.length) {
      fail('schema_version 3 needs a threshold from 2 to the number of wraps');
    }
  } else if (threshold !== 0) {
    fail(`schema_version ${blob.schemaVersion} has no threshold`);
  }
}

/** The rules on one encryption-context entry (the count and order are checked by the caller). */
function checkContextEntry(key: string, value: string, fail: Fail): void {
  if (key.length === 0) fail('encryption_context has an empty key');
  // JSON.parse can make an own "__proto__" property; assignment cannot, so decode could not.
  if (key === '__proto__') fail('encryption_context key "__proto__" is reserved');
  checkLength('an encryption_context key', key, KmsBlobLimits.maxContextKeyLength, fail);
  checkLength('an encryption_context value', value, KmsBlobLimits.maxContextValueLength, fail);
}

/* ------------------------------------------------------------------------------------------ */
/* Encode                                                                                      */
/* ------------------------------------------------------------------------------------------ */

/**
 * UTF-8 length of a text field, refusing C0 control characters, DEL and lone surrogates (which
 * UTF-8 cannot carry: they would come back as U+FFFD).
 */
function utf8Length(what: string, s: string): number {
  let bytes = s.length;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) {
      if (c < 0x20 || c === 0x7f) invalid(`${what} contains control characters`);
    } else if (c < 0x800) {
      bytes += 1;
    } else if (c < 0xd800 || c > 0xdfff) {
      bytes += 2;
    } else {
      const next = s.charCodeAt(i + 1); // NaN past the end
      if (c > 0xdbff || !(next >= 0xdc00 && next <= 0xdfff)) invalid(`${what} contains a lone surrogate`);
      bytes += 2; // 4 bytes for the two code units
      i++;
    }
  }
  return bytes;
}

/**
 * Code point order, which is the byte order of the UTF-8 encodings. It differs from JavaScript's
 * default UTF-16 order only between a surrogate pair (U+10000 and above) and U+E000..U+FFFF.
 */
function compareCodePoints(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x !== y) {
      const xSurrogate = x >= 0xd800 && x <= 0xdfff;
      const ySurrogate = y >= 0xd800 && y <= 0xdfff;
      if (xSurrogate !== ySurrogate) return xSurrogate ? 1 : -1;
      return x - y;
    }
  }
  return a.length - b.length;
}

/** A string to write, with its UTF-8 length. */
interface Text {
  readonly value: string;
  readonly bytes: number;
}

/** A blob whose every field was read once, checked, and measured: what the writer writes. */
interface Prepared {
  readonly blob: KmsBlob;
  readonly keyId: Text;
  readonly region: Text;
  /** Context entries sorted by key in UTF-8 byte order. */
  readonly context: ReadonlyArray<readonly [Text, Text]>;
  /** The wraps with their measured key ids and regions, in stored order. */
  readonly wraps: ReadonlyArray<{ readonly wrap: KmsWrap; readonly keyId: Text; readonly region: Text }>;
  /** Size of the FlatBuffer, without the trailer. */
  readonly size: number;
  readonly layout: Layout;
}

const isPlainObject = (value: object): boolean => {
  const proto: unknown = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
};

const STRING_FIELDS = ['kmsName', 'provider', 'keyId', 'region', 'indexName'] as const;
const NUMBER_FIELDS = ['version', 'createdAt', 'updatedAt', 'schemaVersion'] as const;

/**
 * A KMSBlob as callers may write one: the fields the seed system documents (`kmsName`,
 * `provider`, `keyId`, `region`, `wrappedKek`, `version`) and `indexName`, the rest optional.
 * Missing fields are filled as {@link encodeKmsBlob} says. Every {@link KmsBlob} is one.
 */
export type KmsBlobInput = Pick<
  KmsBlob,
  'kmsName' | 'provider' | 'keyId' | 'region' | 'wrappedKek' | 'version'
> &
  Partial<Omit<KmsBlob, 'kmsName' | 'provider' | 'keyId' | 'region' | 'wrappedKek' | 'version'>>;

/**
 * A snapshot of `input` with checked types, so getters cannot change a field between checks;
 * fields a seed-style blob leaves out get their defaults here (see {@link encodeKmsBlob}).
 */
function snapshot(input: KmsBlobInput): KmsBlob {
  if (typeof input !== 'object' || input === null) invalid('blob must be an object');
  // `=== undefined`, not `??`: a null field is a type error below, not a field left out.
  const createdAt = input.createdAt === undefined ? Math.floor(Date.now() / 1000) : input.createdAt;
  const creationId = input.creationId;
  const indexName = input.indexName;
  if (indexName === undefined) {
    invalid(
      'indexName is missing: an envelope is bound to its index (createIndexKms and pushIndexKms fill it from their index argument)',
    );
  }
  const blob: KmsBlob = {
    kmsName: input.kmsName,
    provider: input.provider,
    keyId: input.keyId,
    region: input.region,
    wrappedKek: input.wrappedKek,
    version: input.version,
    createdAt,
    indexName,
    encryptionContext: input.encryptionContext === undefined ? {} : input.encryptionContext,
    // Schema 2 is "bound with version and creation id": without a creation id, only schema 1 is
    // true to how the wrap is unwrapped (the binding of provider, slot, index and context).
    schemaVersion:
      input.schemaVersion === undefined
        ? creationId === undefined
          ? 1
          : input.threshold === undefined || input.threshold === 0
            ? KMS_BLOB_SCHEMA_VERSION
            : KMS_BLOB_THRESHOLD_SCHEMA_VERSION
        : input.schemaVersion,
    // The decoder's default for an envelope written without updated_at.
    updatedAt: input.updatedAt === undefined ? createdAt : input.updatedAt,
    kekCheck: input.kekCheck,
    creationId,
    wraps: snapshotWraps(input.wraps),
    // 0 is how the schema stores anyOf; in memory it is undefined.
    threshold: input.threshold === 0 ? undefined : input.threshold,
  };
  if (blob.threshold !== undefined && typeof blob.threshold !== 'number')
    invalid('threshold must be a number');
  // Unrolled: a loop over field names costs a keyed load per field on every encode.
  if (
    typeof blob.kmsName !== 'string' ||
    typeof blob.provider !== 'string' ||
    typeof blob.keyId !== 'string' ||
    typeof blob.region !== 'string' ||
    typeof blob.indexName !== 'string'
  ) {
    invalid(`${STRING_FIELDS.find((f) => typeof blob[f] !== 'string')} must be a string`);
  }
  if (
    typeof blob.version !== 'number' ||
    typeof blob.createdAt !== 'number' ||
    typeof blob.updatedAt !== 'number' ||
    typeof blob.schemaVersion !== 'number'
  ) {
    invalid(`${NUMBER_FIELDS.find((f) => typeof blob[f] !== 'number')} must be a number`);
  }
  if (!(blob.wrappedKek instanceof Uint8Array)) invalid('wrappedKek must be a Uint8Array');
  if (blob.kekCheck !== undefined && !(blob.kekCheck instanceof Uint8Array)) {
    invalid('kekCheck must be a Uint8Array or undefined');
  }
  if (blob.creationId !== undefined && !(blob.creationId instanceof Uint8Array)) {
    invalid('creationId must be a Uint8Array or undefined');
  }
  const ctx = blob.encryptionContext;
  if (typeof ctx !== 'object' || ctx === null || !isPlainObject(ctx)) {
    invalid('encryptionContext must be a plain object of strings');
  }
  return blob;
}

/** A checked copy of `wraps` (`undefined` when absent or empty). */
function snapshotWraps(input: KmsBlobInput['wraps']): KmsWrap[] | undefined {
  if (input === undefined) return undefined;
  if (!Array.isArray(input)) invalid('wraps must be an array');
  if (input.length > MAX_WRAPS - 1) invalid(`wraps has more than ${MAX_WRAPS - 1} entries`);
  const out: KmsWrap[] = [];
  for (const raw of input as readonly KmsWrap[]) {
    if (typeof raw !== 'object' || raw === null) invalid('each wrap must be an object');
    const wrap: KmsWrap = {
      kmsName: raw.kmsName,
      provider: raw.provider,
      keyId: raw.keyId,
      region: raw.region,
      wrappedKek: raw.wrappedKek,
    };
    if (
      typeof wrap.kmsName !== 'string' ||
      typeof wrap.provider !== 'string' ||
      typeof wrap.keyId !== 'string' ||
      typeof wrap.region !== 'string'
    ) {
      invalid('a wrap kmsName, provider, keyId and region must be strings');
    }
    if (!(wrap.wrappedKek instanceof Uint8Array)) invalid('a wrap wrappedKek must be a Uint8Array');
    out.push(wrap);
  }
  return out.length === 0 ? undefined : out;
}

/** Checked, sorted and measured context entries. */
function prepareContext(ctx: Readonly<Record<string, string>>): Array<[Text, Text]> {
  const keys = Object.keys(ctx);
  if (keys.length > KmsBlobLimits.maxContextEntries) {
    invalid(`encryption_context has more than ${KmsBlobLimits.maxContextEntries} entries`);
  }
  const entries: Array<[Text, Text]> = [];
  for (const key of keys) {
    const value: unknown = ctx[key];
    if (typeof value !== 'string') invalid('encryption_context values must be strings');
    checkContextEntry(key, value, invalid);
    entries.push([
      { value: key, bytes: utf8Length('an encryption_context key', key) },
      { value, bytes: utf8Length('an encryption_context value', value) },
    ]);
  }
  return entries.sort((a, b) => compareCodePoints(a[0].value, b[0].value));
}

const align4 = (n: number): number => (n + 3) & ~3;
/** Bytes of a string: length prefix, UTF-8, NUL terminator, padding to 4. */
const stringSize = (bytes: number): number => align4(4 + bytes + 1);
/** Bytes of a [ubyte] vector: length prefix, bytes, padding to 4. */
const vectorSize = (length: number): number => align4(4 + length);

// The writer lays the buffer out front to back, as FlatBuffers allows (uoffsets point forward,
// a table's soffset back to its vtable). Two layouts: schema 1 envelopes keep the exact bytes
// they always had (12 fields), schema 2 ones have the 13th field, creation_id:
//    0  root uoffset → table       4  file identifier "KMSB"
//    8  vtable: 12 slots (28 bytes)  |  13 slots (30 bytes, then 2 bytes of padding)
//   36  table: soffset, then the     |  40  table: soffset, then the inline fields
//       inline fields (longs at 40 and 48, 8-aligned)  |  (longs at 48 and 56)
//   96  strings and vectors, 4-aligned, in field order; the context vector and entries last.
// A direct writer is ~5× faster than flatc's builder (which builds back to front and copies);
// the tests check that the flatc-generated reader reads it and that flatc's layout decodes.
const VTABLE_POS = 8;

/** Where the vtable says each field is. */
interface Layout {
  readonly slots: number;
  readonly tablePos: number;
  readonly tableSize: number;
  readonly dataPos: number;
  /** Offsets of the inline fields from the table start, by slot. */
  readonly inline: readonly number[];
}

function layout(slots: number, tablePos: number, tableSize: number, inline: readonly number[]): Layout {
  return { slots, tablePos, tableSize, dataPos: tablePos + tableSize, inline };
}

const LAYOUT_V1 = layout(12, 36, 60, [24, 28, 32, 36, 40, 20, 4, 44, 48, 56, 12, 52]);
const LAYOUT_V2 = layout(13, 40, 64, [24, 28, 32, 36, 40, 4, 8, 44, 48, 60, 16, 52, 56]);
// Multi-wrap: schema 2 with `wraps` (14 slots), schema 3 with `threshold` too (15 slots; the
// 34-byte vtable ends at 42, so the table starts at 48 to keep its longs 8-aligned).
const LAYOUT_V2_WRAPS = layout(14, 40, 68, [24, 28, 32, 36, 40, 4, 8, 44, 48, 64, 16, 52, 56, 60]);
const LAYOUT_V3 = layout(15, 48, 68, [24, 28, 32, 36, 40, 4, 8, 44, 48, 64, 16, 52, 56, 60, 66]);

// Per context entry: its vtable (2 slots), its table (soffset + 2 uoffsets).
const ENTRY_VTABLE_SIZE = 8;
const ENTRY_TABLE_SIZE = 12;
// Per wrap: its vtable (5 slots: 14 bytes, then 2 of padding), its table (soffset + 5 uoffsets).
const WRAP_VTABLE_SIZE = 14;
const WRAP_VTABLE_ROOM = 16;
const WRAP_TABLE_SIZE = 24;

/** Checks `input` completely and measures what the writer will write. */
function prepare(input: KmsBlobInput): Prepared {
  const blob = snapshot(input);
  checkFields(blob, invalid); // names and provider are ASCII by their patterns
  const keyId = { value: blob.keyId, bytes: utf8Length('key_id', blob.keyId) };
  const region = { value: blob.region, bytes: utf8Length('region', blob.region) };
  const context = prepareContext(blob.encryptionContext);
  const wraps = (blob.wraps ?? []).map((wrap) => ({
    wrap,
    keyId: { value: wrap.keyId, bytes: utf8Length('a wrap key_id', wrap.keyId) },
    region: { value: wrap.region, bytes: utf8Length('a wrap region', wrap.region) },
  }));
  const layout =
    blob.threshold !== undefined
      ? LAYOUT_V3
      : wraps.length > 0
        ? LAYOUT_V2_WRAPS
        : blob.creationId === undefined
          ? LAYOUT_V1
          : LAYOUT_V2;
  let size =
    layout.dataPos +
    stringSize(blob.kmsName.length) +
    stringSize(blob.provider.length) +
    (keyId.bytes > 0 ? stringSize(keyId.bytes) : 0) +
    (region.bytes > 0 ? stringSize(region.bytes) : 0) +
    vectorSize(blob.wrappedKek.length) +
    stringSize(blob.indexName.length) +
    (blob.kekCheck !== undefined ? vectorSize(blob.kekCheck.length) : 0) +
    (blob.creationId !== undefined ? vectorSize(blob.creationId.length) : 0);
  if (context.length > 0) size += 4 + 4 * context.length;
  for (const [key, value] of context) {
    size += ENTRY_VTABLE_SIZE + ENTRY_TABLE_SIZE + stringSize(key.bytes) + stringSize(value.bytes);
  }
  if (wraps.length > 0) size += 4 + 4 * wraps.length;
  for (const { wrap, keyId, region } of wraps) {
    size +=
      WRAP_VTABLE_ROOM +
      WRAP_TABLE_SIZE +
      stringSize(wrap.kmsName.length) +
      stringSize(wrap.provider.length) +
      (keyId.bytes > 0 ? stringSize(keyId.bytes) : 0) +
      (region.bytes > 0 ? stringSize(region.bytes) : 0) +
      vectorSize(wrap.wrappedKek.length);
  }
  if (size + CHECKSUM_LENGTH > KmsBlobLimits.maxEnvelopeBytes) {
    invalid(`the envelope would be ${size + CHECKSUM_LENGTH} bytes, over ${KmsBlobLimits.maxEnvelopeBytes}`);
  }
  return { blob, keyId, region, context, wraps, size, layout };
}

const textEncoder = new TextEncoder();
// ASCII strings up to this length are copied in a loop; longer ones by encodeInto (measured).
const SHORT_ASCII = 32;

/** Writes into a zero-filled, exactly-sized buffer (so NUL terminators and padding are there). */
class Writer {
  readonly out: Uint8Array;
  readonly layout: Layout;
  /** Where the next string or vector goes. */
  next: number;

  constructor(size: number, layout: Layout) {
    this.out = new Uint8Array(size);
    this.layout = layout;
    this.next = layout.dataPos;
  }

  /** Position of field `slot`'s inline value. */
  at(slot: number): number {
    return this.layout.tablePos + this.layout.inline[slot]!;
  }

  u16(pos: number, value: number): void {
    this.out[pos] = value;
    this.out[pos + 1] = value >>> 8;
  }

  u32(pos: number, value: number): void {
    const out = this.out;
    out[pos] = value;
    out[pos + 1] = value >>> 8;
    out[pos + 2] = value >>> 16;
    out[pos + 3] = value >>> 24;
  }

  /** A non-negative whole number below 2^53 as an int64, in two 32-bit halves. */
  u64(pos: number, value: number): void {
    this.u32(pos, value % 0x1_0000_0000);
    this.u32(pos + 4, Math.floor(value / 0x1_0000_0000));
  }

  /** Points the uoffset at `from` to the next free position. */
  link(from: number): void {
    this.u32(from, this.next - from);
  }

  string(from: number, text: Text): void {
    this.link(from);
    const { value, bytes } = text;
    const start = this.next + 4;
    this.u32(this.next, bytes);
    if (bytes === value.length && bytes <= SHORT_ASCII) {
      for (let i = 0; i < bytes; i++) this.out[start + i] = value.charCodeAt(i);
    } else {
      textEncoder.encodeInto(value, this.out.subarray(start, start + bytes));
    }
    this.next = align4(start + bytes + 1);
  }

  vector(from: number, bytes: Uint8Array): void {
    this.link(from);
    this.u32(this.next, bytes.length);
    this.out.set(bytes, this.next + 4);
    this.next = align4(this.next + 4 + bytes.length);
  }
}

/** Writes the header, the vtable and the table with its scalars. */
function writeHeader(w: Writer, p: Prepared): void {
  const { blob, layout } = p;
  w.u32(0, layout.tablePos);
  for (let i = 0; i < 4; i++) w.out[4 + i] = KMS_BLOB_FILE_IDENTIFIER.charCodeAt(i);
  w.u16(VTABLE_POS, 4 + 2 * layout.slots);
  w.u16(VTABLE_POS + 2, layout.tableSize);
  // Every field is written, even schema_version and updated_at at their defaults (fixed bytes),
  // except key_id and region when empty, an empty context and an undefined kek_check.
  for (let slot = 0; slot < layout.slots; slot++) w.u16(VTABLE_POS + 4 + 2 * slot, layout.inline[slot]!);
  const absent = (slot: number) => w.u16(VTABLE_POS + 4 + 2 * slot, 0);
  if (p.keyId.bytes === 0) absent(F.keyId);
  if (p.region.bytes === 0) absent(F.region);
  if (p.context.length === 0) absent(F.encryptionContext);
  if (blob.kekCheck === undefined) absent(F.kekCheck);
  w.u32(layout.tablePos, layout.tablePos - VTABLE_POS);
  w.u64(w.at(F.createdAt), blob.createdAt);
  w.u64(w.at(F.updatedAt), blob.updatedAt);
  w.u32(w.at(F.version), blob.version);
  w.u16(w.at(F.schemaVersion), blob.schemaVersion);
  if (layout.slots > F.threshold) w.out[w.at(F.threshold)] = blob.threshold ?? 0;
}

/** Writes the context vector and its entries (each: vtable, table, key, value). */
function writeContext(w: Writer, context: Prepared['context']): void {
  w.link(w.at(F.encryptionContext));
  const vector = w.next;
  w.u32(vector, context.length);
  w.next += 4 + 4 * context.length;
  context.forEach(([key, value], i) => {
    const vtable = w.next;
    w.u16(vtable, ENTRY_VTABLE_SIZE);
    w.u16(vtable + 2, ENTRY_TABLE_SIZE);
    w.u16(vtable + 4, 4);
    w.u16(vtable + 6, 8);
    const table = vtable + ENTRY_VTABLE_SIZE;
    w.u32(table, table - vtable);
    const element = vector + 4 + 4 * i;
    w.u32(element, table - element);
    w.next = table + ENTRY_TABLE_SIZE;
    w.string(table + 4, key);
    w.string(table + 8, value);
  });
}

/** Writes the wraps vector and each wrap (vtable, table, then its strings and vector). */
function writeWraps(w: Writer, wraps: Prepared['wraps']): void {
  w.link(w.at(F.wraps));
  const vector = w.next;
  w.u32(vector, wraps.length);
  w.next += 4 + 4 * wraps.length;
  wraps.forEach(({ wrap, keyId, region }, i) => {
    const vtable = w.next;
    w.u16(vtable, WRAP_VTABLE_SIZE);
    w.u16(vtable + 2, WRAP_TABLE_SIZE);
    w.u16(vtable + 4, 4);
    w.u16(vtable + 6, 8);
    w.u16(vtable + 8, keyId.bytes > 0 ? 12 : 0);
    w.u16(vtable + 10, region.bytes > 0 ? 16 : 0);
    w.u16(vtable + 12, 20);
    const table = vtable + WRAP_VTABLE_ROOM;
    w.u32(table, table - vtable);
    const element = vector + 4 + 4 * i;
    w.u32(element, table - element);
    w.next = table + WRAP_TABLE_SIZE;
    w.string(table + 4, { value: wrap.kmsName, bytes: wrap.kmsName.length });
    w.string(table + 8, { value: wrap.provider, bytes: wrap.provider.length });
    if (keyId.bytes > 0) w.string(table + 12, keyId);
    if (region.bytes > 0) w.string(table + 16, region);
    w.vector(table + 20, wrap.wrappedKek);
  });
}

/**
 * Encodes a KMSBlob into its stored form: the FlatBuffer followed by its CRC32C trailer.
 * Deterministic: equal blobs give equal bytes (context keys are written in UTF-8 byte order).
 *
 * A blob with only the seed system's fields and `indexName` is accepted ({@link KmsBlobInput}):
 * `createdAt` defaults to now, `updatedAt` to `createdAt` (as the decoder reads an envelope
 * without it), `encryptionContext` to `{}`, `kekCheck` to none, and `schemaVersion` to 2 when a
 * `creationId` is given, else 1 (schema 2 needs a creation id, and a blob without one is
 * unwrapped with the schema 1 binding). There is no default index: an envelope that is bound to
 * no index cannot exist, so `indexName` is required here (the low-level `createIndexKms` /
 * `pushIndexKms` take it from their index argument).
 *
 * @throws InvalidArgumentError naming the first invalid field (never showing byte values): a name,
 * provider id, length, count, range or type outside the rules of schemas/README.md, control
 * characters or lone surrogates in text, a context that is not a plain object of strings, or an
 * envelope that would exceed {@link KmsBlobLimits.maxEnvelopeBytes}.
 */
export function encodeKmsBlob(blob: KmsBlobInput): Uint8Array {
  const p = prepare(blob);
  const w = new Writer(p.size + CHECKSUM_LENGTH, p.layout);
  writeHeader(w, p);
  w.string(w.at(F.kmsName), { value: p.blob.kmsName, bytes: p.blob.kmsName.length });
  w.string(w.at(F.provider), { value: p.blob.provider, bytes: p.blob.provider.length });
  if (p.keyId.bytes > 0) w.string(w.at(F.keyId), p.keyId);
  if (p.region.bytes > 0) w.string(w.at(F.region), p.region);
  w.vector(w.at(F.wrappedKek), p.blob.wrappedKek);
  w.string(w.at(F.indexName), { value: p.blob.indexName, bytes: p.blob.indexName.length });
  if (p.blob.kekCheck !== undefined) w.vector(w.at(F.kekCheck), p.blob.kekCheck);
  if (p.blob.creationId !== undefined) w.vector(w.at(F.creationId), p.blob.creationId);
  if (p.context.length > 0) writeContext(w, p.context);
  if (p.wraps.length > 0) writeWraps(w, p.wraps);
  w.u32(p.size, crc32c(w.out, 0, p.size));
  return w.out;
}

/* ------------------------------------------------------------------------------------------ */
/* Verified decode                                                                             */
/* ------------------------------------------------------------------------------------------ */

/**
 * Decodes a stored envelope after verifying it completely: size, CRC32C trailer, file
 * identifier, every offset, vtable, string and vector in bounds and aligned, UTF-8 without
 * control characters, required fields, context keys strictly ascending, then every value rule
 * that {@link encodeKmsBlob} applies. Fields this version does not know are accepted (forward
 * compatibility) but still bounds-checked.
 *
 * Byte fields are fresh copies, each with an ArrayBuffer of its own: never views into `bytes`
 * or into a buffer shared with another decode (transferring one never empties another).
 *
 * @throws MalformedEnvelopeError for anything that is not a valid envelope (truncated, corrupt,
 * foreign, written by a newer schema, out of range); its message names the failed check and never
 * shows bytes. No other error type escapes.
 */
export function decodeKmsBlob(bytes: Uint8Array): KmsBlob {
  try {
    const blob = readVerifiedKmsBlob(bytes);
    checkFields(blob, malformed);
    for (const key in blob.encryptionContext) {
      checkContextEntry(key, blob.encryptionContext[key]!, malformed);
    }
    return blob;
  } catch (err) {
    if (err instanceof MalformedEnvelopeError) throw err;
    // Not expected: every check throws MalformedEnvelopeError first. A last guard only.
    throw new MalformedEnvelopeError('malformed KMSBlob: unreadable', { cause: err });
  }
}
