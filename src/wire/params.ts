/**
 * The params segment of the wire format: the algorithm parameters as canonical JSON (Python's
 * `json.dumps(params, sort_keys=True, separators=(",", ":"))`), UTF-8, URL-safe base64 with
 * padding. `{}` is `e30=`.
 *
 * @module
 */
import { MalformedTokenError } from '../errors.js';
import { decodeBase64UrlPadded, encodeBase64UrlPadded } from './base64.js';

/** Parameters of a token: a JSON object. */
export type WireParams = Readonly<Record<string, unknown>>;

/** `{}` as the params segment: `e30=`. */
export const EMPTY_PARAMS_SEGMENT = 'e30=';

/** The one empty params object every default token shares (frozen). */
export const EMPTY_PARAMS: WireParams = Object.freeze({});

/** Orders strings by Unicode code point, as Python sorts `str` (JS `<` compares UTF-16 units). */
function byCodePoint(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    if (a.charCodeAt(i) !== b.charCodeAt(i)) return a.codePointAt(i)! - b.codePointAt(i)!;
  }
  return a.length - b.length;
}

function sortDeep(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortDeep);
  if (typeof value === 'object' && value !== null) {
    return Object.fromEntries(
      Object.keys(value)
        .sort(byCodePoint)
        .map((k) => [k, sortDeep((value as Record<string, unknown>)[k])]),
    );
  }
  return value;
}

/**
 * The JSON text Python's `json.dumps(value, sort_keys=True, separators=(",", ":"))` writes:
 * keys sorted by code point at every level, no spaces, and (its default `ensure_ascii`) every
 * character outside printable ASCII, DEL included, escaped as lower-case `\uXXXX`.
 *
 * Identical to Python for strings, integers, booleans, null, arrays and objects; floats may be
 * spelled differently (`1.0` is `1` here).
 */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(sortDeep(value)).replace(
    /[\u007f-\uffff]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
}

/** The params segment of `params`: canonical JSON, UTF-8, URL-safe base64 with padding. */
export function encodeParams(params: WireParams): string {
  if (params === EMPTY_PARAMS || Object.keys(params).length === 0) return EMPTY_PARAMS_SEGMENT;
  return encodeBase64UrlPadded(Buffer.from(canonicalJson(params), 'utf8'));
}

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/**
 * Decodes a params segment into a JSON object. `e30=` returns {@link EMPTY_PARAMS} without
 * parsing. Anything else must be exactly what {@link encodeParams} writes for the object it
 * holds (sorted keys, no spaces, ASCII escapes), so a token has one spelling.
 * @throws MalformedTokenError when the segment is not base64, not UTF-8 JSON, not an object, or
 * not in canonical form.
 */
export function decodeParams(segment: string): WireParams {
  if (segment === EMPTY_PARAMS_SEGMENT) return EMPTY_PARAMS;
  const bytes = decodeBase64UrlPadded(segment, 'params');
  let parsed: unknown;
  try {
    parsed = JSON.parse(utf8.decode(bytes));
  } catch {
    throw new MalformedTokenError('params are not UTF-8 JSON');
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new MalformedTokenError('params are not a JSON object');
  }
  if (encodeParams(parsed as WireParams) !== segment) {
    throw new MalformedTokenError('params are not canonical JSON (sorted keys, no spaces, ASCII escapes)');
  }
  return parsed as WireParams;
}
