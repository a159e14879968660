/**
 * KMIP TTLV (Tag, Type, Length, Value) encoding, KMIP 1.x specification §9.1: every item is a
 * 3-byte tag (`0x42xxxx`, or `0x54xxxx` for extensions), a 1-byte type, a 4-byte big-endian length
 * and the value, padded with zeros to a multiple of 8 bytes. A Structure's value is its items.
 *
 * Decoding is strict and canonical: a truncated item, a length that does not fit the type or the
 * enclosing structure, a non-zero padding byte, a Boolean other than 0 or 1, a Big Integer with
 * redundant sign bytes, a Text String that is not UTF-8, an unknown type, an unknown tag prefix or
 * nesting deeper than {@link MAX_TTLV_DEPTH} raise {@link TtlvError}; nothing crashes, hangs or
 * returns half an item. So whatever decodes re-encodes to the very same bytes.
 *
 * Security: decoded Byte Strings are *views* of the input (no copy), so that a response holding
 * key material can be wiped by wiping the one buffer it came in. Copy what you keep, then wipe
 * the input.
 *
 * @module
 */
import { InvalidArgumentError } from '../errors.js';

/** The TTLV item types (KMIP 1.x). */
export const TtlvType = {
  Structure: 0x01,
  Integer: 0x02,
  LongInteger: 0x03,
  BigInteger: 0x04,
  Enumeration: 0x05,
  Boolean: 0x06,
  TextString: 0x07,
  ByteString: 0x08,
  DateTime: 0x09,
  Interval: 0x0a,
} as const;
/** A TTLV type name. */
export type TtlvTypeName = keyof typeof TtlvType;

const TYPE_NAMES: Readonly<Record<number, TtlvTypeName>> = Object.fromEntries(
  Object.entries(TtlvType).map(([name, code]) => [code, name as TtlvTypeName]),
);

/** One TTLV item. Integers that may exceed 2^53 (Long Integer, Big Integer, Date-Time) are `bigint`. */
export type TtlvItem =
  | { readonly tag: number; readonly type: 'Structure'; readonly value: readonly TtlvItem[] }
  /** Signed 32-bit. */
  | { readonly tag: number; readonly type: 'Integer'; readonly value: number }
  /** Signed 64-bit. */
  | { readonly tag: number; readonly type: 'LongInteger'; readonly value: bigint }
  /** Any size, two's complement. */
  | { readonly tag: number; readonly type: 'BigInteger'; readonly value: bigint }
  /** Unsigned 32-bit. */
  | { readonly tag: number; readonly type: 'Enumeration'; readonly value: number }
  | { readonly tag: number; readonly type: 'Boolean'; readonly value: boolean }
  | { readonly tag: number; readonly type: 'TextString'; readonly value: string }
  | { readonly tag: number; readonly type: 'ByteString'; readonly value: Uint8Array }
  /** Seconds since the Unix epoch, signed 64-bit. */
  | { readonly tag: number; readonly type: 'DateTime'; readonly value: bigint }
  /** Seconds, unsigned 32-bit. */
  | { readonly tag: number; readonly type: 'Interval'; readonly value: number };

/** The item of type `T`. */
export type TtlvItemOf<T extends TtlvTypeName> = Extract<TtlvItem, { type: T }>;

/** Length of an item header (tag 3, type 1, length 4). */
export const TTLV_HEADER_LENGTH = 8;

/** Deepest nesting of Structures the decoder accepts (KMIP messages nest about 8 deep). */
export const MAX_TTLV_DEPTH = 32;

/**
 * Bytes that are not valid TTLV, or a value that cannot be encoded. Says where (byte offset) and
 * what, never the value.
 */
export class TtlvError extends InvalidArgumentError {
  /** Byte offset of the offending item in the input (decoding), or -1 (encoding). */
  readonly offset: number;
  constructor(message: string, offset = -1) {
    super(offset >= 0 ? `TTLV: ${message} (at byte ${offset})` : `TTLV: ${message}`);
    this.offset = offset;
  }
}

const INT32_MIN = -(2 ** 31);
const INT32_MAX = 2 ** 31 - 1;
const UINT32_MAX = 2 ** 32 - 1;
const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

// Arithmetic, not bitwise: lengths reach 2^32 - 1, past what 32-bit bit operations hold.
const pad8 = (n: number) => Math.ceil(n / 8) * 8;

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
const utf8Encoder = new TextEncoder();

function checkTag(tag: number): void {
  if (!Number.isInteger(tag) || tag < 0 || tag > 0xffffff || (tag >> 16 !== 0x42 && tag >> 16 !== 0x54)) {
    throw new TtlvError(`tag 0x${tag.toString(16)} is not a KMIP tag (0x42xxxx or 0x54xxxx)`);
  }
}

/** Big-endian two's complement of `value` in the fewest bytes, sign-extended to a multiple of 8. */
function bigIntegerBytes(value: bigint): Uint8Array {
  let length = 1;
  // The fewest bytes whose two's complement range holds the value.
  while (value < -(1n << BigInt(8 * length - 1)) || value >= 1n << BigInt(8 * length - 1)) length++;
  const padded = pad8(length);
  const out = new Uint8Array(padded);
  let v = BigInt.asUintN(8 * padded, value);
  for (let i = padded - 1; i >= 0; i--) {
    out[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  return out;
}

/** Value length (before padding) of an item, validating its value. */
function valueLength(
  item: TtlvItem,
  text: Map<TtlvItem, Uint8Array>,
  big: Map<TtlvItem, Uint8Array>,
): number {
  checkTag(item.tag);
  switch (item.type) {
    case 'Structure': {
      let n = 0;
      for (const child of item.value) n += TTLV_HEADER_LENGTH + pad8(valueLength(child, text, big));
      return n;
    }
    case 'Integer':
      if (!Number.isInteger(item.value) || item.value < INT32_MIN || item.value > INT32_MAX)
        throw new TtlvError('an Integer must be a signed 32-bit integer');
      return 4;
    case 'Enumeration':
    case 'Interval':
      if (!Number.isInteger(item.value) || item.value < 0 || item.value > UINT32_MAX)
        throw new TtlvError(`an ${item.type} must be an unsigned 32-bit integer`);
      return 4;
    case 'LongInteger':
    case 'DateTime':
      if (typeof item.value !== 'bigint' || item.value < INT64_MIN || item.value > INT64_MAX)
        throw new TtlvError(`a ${item.type} must be a signed 64-bit bigint`);
      return 8;
    case 'BigInteger': {
      if (typeof item.value !== 'bigint') throw new TtlvError('a BigInteger must be a bigint');
      const bytes = bigIntegerBytes(item.value);
      big.set(item, bytes);
      return bytes.length;
    }
    case 'Boolean':
      if (typeof item.value !== 'boolean') throw new TtlvError('a Boolean must be true or false');
      return 8;
    case 'TextString': {
      if (typeof item.value !== 'string') throw new TtlvError('a TextString must be a string');
      const bytes = utf8Encoder.encode(item.value);
      text.set(item, bytes);
      return bytes.length;
    }
    case 'ByteString':
      if (!(item.value instanceof Uint8Array)) throw new TtlvError('a ByteString must be a Uint8Array');
      return item.value.length;
    default:
      throw new TtlvError(`unknown item type "${String((item as { type?: unknown }).type)}"`);
  }
}

function write(
  item: TtlvItem,
  out: Buffer,
  at: number,
  text: Map<TtlvItem, Uint8Array>,
  big: Map<TtlvItem, Uint8Array>,
): number {
  const start = at;
  out.writeUIntBE(item.tag, at, 3);
  out[at + 3] = TtlvType[item.type];
  at += TTLV_HEADER_LENGTH;
  switch (item.type) {
    case 'Structure':
      for (const child of item.value) at = write(child, out, at, text, big);
      break;
    case 'Integer':
      out.writeInt32BE(item.value, at);
      at += 8;
      break;
    case 'Enumeration':
    case 'Interval':
      out.writeUInt32BE(item.value, at);
      at += 8;
      break;
    case 'LongInteger':
    case 'DateTime':
      out.writeBigInt64BE(item.value, at);
      at += 8;
      break;
    case 'Boolean':
      out.writeBigUInt64BE(item.value ? 1n : 0n, at);
      at += 8;
      break;
    case 'BigInteger':
    case 'TextString':
    case 'ByteString': {
      const bytes =
        item.type === 'ByteString'
          ? item.value
          : ((item.type === 'TextString' ? text : big).get(item) as Uint8Array);
      out.set(bytes, at);
      at += pad8(bytes.length);
      break;
    }
  }
  out.writeUInt32BE(
    item.type === 'Structure' ? at - start - TTLV_HEADER_LENGTH : lengthOf(item, text, big),
    start + 4,
  );
  return at;
}

function lengthOf(item: TtlvItem, text: Map<TtlvItem, Uint8Array>, big: Map<TtlvItem, Uint8Array>): number {
  switch (item.type) {
    case 'Integer':
    case 'Enumeration':
    case 'Interval':
      return 4;
    case 'ByteString':
      return item.value.length;
    case 'TextString':
      return (text.get(item) as Uint8Array).length;
    case 'BigInteger':
      return (big.get(item) as Uint8Array).length;
    default:
      return 8;
  }
}

/**
 * Encodes one item (a whole message is one Structure) into a new buffer, zero-padded.
 * @throws TtlvError for a tag outside `0x42xxxx`/`0x54xxxx`, a value out of its type's range, or
 * an unknown type.
 */
export function encodeTtlv(item: TtlvItem): Buffer {
  const text = new Map<TtlvItem, Uint8Array>();
  const big = new Map<TtlvItem, Uint8Array>();
  const length = TTLV_HEADER_LENGTH + pad8(valueLength(item, text, big));
  if (length > UINT32_MAX) throw new TtlvError('the item is longer than 2^32 - 1 bytes');
  // alloc (zero-filled), not allocUnsafe: padding must be zeros, never old heap bytes.
  const out = Buffer.alloc(length);
  write(item, out, 0, text, big);
  return out;
}

/** Options of {@link decodeTtlv}. */
export interface TtlvDecodeOptions {
  /** Largest input accepted, in bytes (default 1 MiB). */
  readonly maxBytes?: number;
}

/** Default {@link TtlvDecodeOptions.maxBytes}. */
export const DEFAULT_MAX_TTLV_BYTES = 1 << 20;

/**
 * Reads the header of the item at the start of `bytes`: its tag, type code and the total length
 * of the item with padding (what a reader of a stream must wait for). Does not check the value.
 * @throws TtlvError when fewer than 8 bytes are given, for an unknown tag prefix or type, or a
 * Structure whose length is not a multiple of 8.
 */
export function readTtlvHeader(bytes: Uint8Array): { tag: number; type: TtlvTypeName; totalLength: number } {
  if (bytes.length < TTLV_HEADER_LENGTH) throw new TtlvError('truncated item header', 0);
  const tag = (bytes[0]! << 16) | (bytes[1]! << 8) | bytes[2]!;
  if (bytes[0] !== 0x42 && bytes[0] !== 0x54)
    throw new TtlvError(`tag 0x${tag.toString(16)} is not a KMIP tag`, 0);
  const type = TYPE_NAMES[bytes[3]!];
  if (type === undefined) throw new TtlvError(`unknown item type 0x${bytes[3]!.toString(16)}`, 3);
  const length = ((bytes[4]! << 24) >>> 0) + ((bytes[5]! << 16) | (bytes[6]! << 8) | bytes[7]!);
  if (type === 'Structure' && length % 8 !== 0)
    throw new TtlvError('a Structure length must be a multiple of 8', 4);
  return { tag, type, totalLength: TTLV_HEADER_LENGTH + pad8(length) };
}

/**
 * Decodes exactly one item that fills `bytes` (no trailing bytes).
 * @throws TtlvError for anything that is not canonical TTLV (see the module comment), for input
 * longer than `maxBytes`, and for trailing bytes.
 */
export function decodeTtlv(bytes: Uint8Array, options: TtlvDecodeOptions = {}): TtlvItem {
  const maxBytes = options.maxBytes ?? DEFAULT_MAX_TTLV_BYTES;
  if (bytes.length > maxBytes)
    throw new TtlvError(`input of ${bytes.length} bytes exceeds the limit of ${maxBytes}`);
  const view = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const [item, end] = readItem(view, 0, view.length, 0);
  if (end !== view.length) throw new TtlvError('trailing bytes after the item', end);
  return item;
}

function checkZeros(buf: Buffer, from: number, to: number): void {
  for (let i = from; i < to; i++) {
    if (buf[i] !== 0) throw new TtlvError('non-zero padding', i);
  }
}

/** Reads the item at `at`, which must end by `limit`; returns it and the offset after it. */
function readItem(buf: Buffer, at: number, limit: number, depth: number): [TtlvItem, number] {
  if (limit - at < TTLV_HEADER_LENGTH) throw new TtlvError('truncated item header', at);
  const tag = buf.readUIntBE(at, 3);
  if (buf[at] !== 0x42 && buf[at] !== 0x54)
    throw new TtlvError(`tag 0x${tag.toString(16)} is not a KMIP tag`, at);
  const type = TYPE_NAMES[buf[at + 3]!];
  if (type === undefined) throw new TtlvError(`unknown item type 0x${buf[at + 3]!.toString(16)}`, at + 3);
  const length = buf.readUInt32BE(at + 4);
  const valueAt = at + TTLV_HEADER_LENGTH;
  const padded = pad8(length);
  // Compared as numbers, never by allocating: a length of 4 GiB just fails here.
  if (padded > limit - valueAt) throw new TtlvError(`${type} of ${length} bytes is truncated`, at);
  const end = valueAt + padded;
  const fixed = (expected: number) => {
    if (length !== expected) throw new TtlvError(`a ${type} must have length ${expected}, not ${length}`, at);
  };
  switch (type) {
    case 'Structure': {
      if (length % 8 !== 0) throw new TtlvError('a Structure length must be a multiple of 8', at);
      if (depth >= MAX_TTLV_DEPTH) throw new TtlvError(`Structures nested deeper than ${MAX_TTLV_DEPTH}`, at);
      const children: TtlvItem[] = [];
      let p = valueAt;
      while (p < end) {
        const [child, next] = readItem(buf, p, end, depth + 1);
        children.push(child);
        p = next;
      }
      return [{ tag, type, value: children }, end];
    }
    case 'Integer':
      fixed(4);
      checkZeros(buf, valueAt + 4, end);
      return [{ tag, type, value: buf.readInt32BE(valueAt) }, end];
    case 'Enumeration':
    case 'Interval':
      fixed(4);
      checkZeros(buf, valueAt + 4, end);
      return [{ tag, type, value: buf.readUInt32BE(valueAt) }, end];
    case 'LongInteger':
    case 'DateTime':
      fixed(8);
      return [{ tag, type, value: buf.readBigInt64BE(valueAt) }, end];
    case 'Boolean': {
      fixed(8);
      const v = buf.readBigUInt64BE(valueAt);
      if (v > 1n) throw new TtlvError('a Boolean must be 0 or 1', at);
      return [{ tag, type, value: v === 1n }, end];
    }
    case 'BigInteger': {
      if (length === 0 || length % 8 !== 0)
        throw new TtlvError('a BigInteger length must be a positive multiple of 8', at);
      let v = 0n;
      for (let i = valueAt; i < end; i++) v = (v << 8n) | BigInt(buf[i]!);
      v = BigInt.asIntN(8 * length, v);
      if (bigIntegerBytes(v).length !== length)
        throw new TtlvError('a BigInteger has redundant sign-extension bytes', at);
      return [{ tag, type, value: v }, end];
    }
    case 'TextString': {
      checkZeros(buf, valueAt + length, end);
      let value: string;
      try {
        value = utf8.decode(buf.subarray(valueAt, valueAt + length));
      } catch {
        throw new TtlvError('a TextString is not valid UTF-8', at);
      }
      return [{ tag, type, value }, end];
    }
    case 'ByteString':
      checkZeros(buf, valueAt + length, end);
      return [{ tag, type, value: buf.subarray(valueAt, valueAt + length) }, end];
  }
}

// --- building items --------------------------------------------------------------------------

/** A Structure item. */
export const structure = (tag: number, value: readonly TtlvItem[]): TtlvItemOf<'Structure'> => ({
  tag,
  type: 'Structure',
  value,
});
/** An Integer item (signed 32-bit). */
export const integer = (tag: number, value: number): TtlvItemOf<'Integer'> => ({
  tag,
  type: 'Integer',
  value,
});
/** A Long Integer item. */
export const longInteger = (tag: number, value: bigint): TtlvItemOf<'LongInteger'> => ({
  tag,
  type: 'LongInteger',
  value,
});
/** A Big Integer item. */
export const bigInteger = (tag: number, value: bigint): TtlvItemOf<'BigInteger'> => ({
  tag,
  type: 'BigInteger',
  value,
});
/** An Enumeration item. */
export const enumeration = (tag: number, value: number): TtlvItemOf<'Enumeration'> => ({
  tag,
  type: 'Enumeration',
  value,
});
/** A Boolean item. */
export const boolean = (tag: number, value: boolean): TtlvItemOf<'Boolean'> => ({
  tag,
  type: 'Boolean',
  value,
});
/** A Text String item. */
export const textString = (tag: number, value: string): TtlvItemOf<'TextString'> => ({
  tag,
  type: 'TextString',
  value,
});
/** A Byte String item (the bytes are referenced, not copied). */
export const byteString = (tag: number, value: Uint8Array): TtlvItemOf<'ByteString'> => ({
  tag,
  type: 'ByteString',
  value,
});
/** A Date-Time item (seconds since the epoch). */
export const dateTime = (tag: number, value: bigint): TtlvItemOf<'DateTime'> => ({
  tag,
  type: 'DateTime',
  value,
});
/** An Interval item (seconds). */
export const interval = (tag: number, value: number): TtlvItemOf<'Interval'> => ({
  tag,
  type: 'Interval',
  value,
});

// --- reading decoded structures ----------------------------------------------------------------

const hexTag = (tag: number) => `0x${tag.toString(16).padStart(6, '0')}`;

/** The items of a Structure (`item` must be one). @throws TtlvError otherwise. */
export function fieldsOf(item: TtlvItem): readonly TtlvItem[] {
  if (item.type !== 'Structure')
    throw new TtlvError(`item ${hexTag(item.tag)} is a ${item.type}, not a Structure`);
  return item.value;
}

/** Every child of `struct` with `tag`. */
export function findAll(struct: TtlvItem, tag: number): TtlvItem[] {
  return fieldsOf(struct).filter((child) => child.tag === tag);
}

/**
 * The one child of `struct` with `tag` and `type`, or `undefined` when there is none.
 * @throws TtlvError when it appears more than once or has another type.
 */
export function findOne<T extends TtlvTypeName>(
  struct: TtlvItem,
  tag: number,
  type: T,
): TtlvItemOf<T> | undefined {
  const found = findAll(struct, tag);
  if (found.length > 1) throw new TtlvError(`${hexTag(tag)} appears ${found.length} times`);
  const child = found[0];
  if (child === undefined) return undefined;
  if (child.type !== type) throw new TtlvError(`${hexTag(tag)} is a ${child.type}, not a ${type}`);
  return child as TtlvItemOf<T>;
}

/** Like {@link findOne}, but the child must be there. @throws TtlvError when it is missing. */
export function requireOne<T extends TtlvTypeName>(struct: TtlvItem, tag: number, type: T): TtlvItemOf<T> {
  const child = findOne(struct, tag, type);
  if (child === undefined) throw new TtlvError(`required item ${hexTag(tag)} (${type}) is missing`);
  return child;
}
