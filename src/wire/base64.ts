/**
 * URL-safe base64 *with* `=` padding, the encoding of the params and blob segments of the wire
 * format (Python's `base64.urlsafe_b64encode`).
 *
 * Decoding is strict where Python's `urlsafe_b64decode` is lax. Python skips characters outside
 * the alphabet, reads `+` and `/`, ignores anything after the padding and ignores the unused low
 * bits of the last character, so one value has many spellings. Here exactly one spelling is
 * accepted: the one `urlsafe_b64encode` writes. Everything gemstone_utils writes is therefore
 * read, and a token read here is also read by gemstone_utils.
 *
 * @module
 */
import { MalformedTokenError } from '../errors.js';

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

/** Value of each URL-safe base64 character by char code (others are never looked up). */
const VALUE = new Uint8Array(128);
for (let i = 0; i < ALPHABET.length; i++) VALUE[ALPHABET.charCodeAt(i)] = i;

/** Alphabet characters, then at most two `=`; with a length that is a multiple of 4 this is exactly the padded form. */
const SHAPE = /^[A-Za-z0-9_-]*={0,2}$/;

/** Padding by `byteLength % 3`. */
const PADDING = ['', '==', '='] as const;

const EQUALS = 61;

/**
 * URL-safe base64 with `=` padding, as Python's `base64.urlsafe_b64encode` writes it.
 * Reads `bytes` in place (no copy).
 */
export function encodeBase64UrlPadded(bytes: Uint8Array): string {
  const view = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return view.toString('base64url') + PADDING[bytes.byteLength % 3]!;
}

/**
 * True when `text` is URL-safe base64 with padding in its one canonical spelling: only
 * `A–Z a–z 0–9 - _`, length a multiple of four, `=` only as the final one or two characters, and
 * the unused low bits of the last data character zero. Does not decode.
 */
export function isCanonicalBase64UrlPadded(text: string): boolean {
  const n = text.length;
  if ((n & 3) !== 0 || !SHAPE.test(text)) return false;
  if (n === 0 || text.charCodeAt(n - 1) !== EQUALS) return true;
  // One `=`: the last data character carries 2 unused bits; two: 4 unused bits.
  const twoPads = text.charCodeAt(n - 2) === EQUALS;
  const last = VALUE[text.charCodeAt(n - (twoPads ? 3 : 2))]!;
  return (last & (twoPads ? 0b1111 : 0b11)) === 0;
}

/**
 * Strict decode of URL-safe base64 with padding: accepts exactly what
 * {@link isCanonicalBase64UrlPadded} accepts, without scanning the text with a regular expression
 * (this is on the hot path of every decrypt).
 *
 * How: Node's decoder reads both alphabets, skips (or stops at) other ASCII characters, and reads
 * a UTF-16 unit above 0xFF by its low byte (`ｅ` as `E`). So: refuse non-ASCII (UTF-8 length
 * equal to the length), refuse `+` and `/`; then the text is canonical exactly when the decoded
 * length is the one its length and padding promise (every skipped character costs 6 bits, so
 * the length falls short) and the unused bits of the last character are zero. The property
 * tests compare this against the plain definition.
 * @param what names the segment in the error message (`params`, `blob`, …).
 * @throws MalformedTokenError for any other spelling.
 */
export function decodeBase64UrlPadded(text: string, what: string): Buffer {
  const n = text.length;
  const pads = n === 0 || text.charCodeAt(n - 1) !== EQUALS ? 0 : text.charCodeAt(n - 2) === EQUALS ? 2 : 1;
  const bytes = Buffer.from(text, 'base64url');
  if (
    (n & 3) !== 0 ||
    bytes.length !== (n >> 2) * 3 - pads ||
    Buffer.byteLength(text, 'utf8') !== n ||
    text.indexOf('+') !== -1 ||
    text.indexOf('/') !== -1 ||
    (pads !== 0 && (VALUE[text.charCodeAt(n - 1 - pads)]! & (pads === 2 ? 0b1111 : 0b11)) !== 0)
  ) {
    throw new MalformedTokenError(`${what} is not URL-safe base64 with padding`);
  }
  return bytes;
}
