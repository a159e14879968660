import { MalformedTokenError } from '../errors.js';
import { decodeBase64UrlPadded, encodeBase64UrlPadded } from './base64.js';

/** Algorithm parameters of a token: a JSON object. */
export type WireParams = Readonly<Record<string, unknown>>;

/** `{}` as the params segment: `e30=`. */
export const EMPTY_PARAMS_SEGMENT = 'e30=';

function sortDeep(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortDeep);
  if (typeof value === 'object' && value !== null) {
    return Object.fromEntries(
      Object.keys(value)
        .sort()
        .map((k) => [k, sortDeep((value as Record<string, unknown>)[k])]),
    );
  }
  return value;
}

/**
 * The JSON form Python's `json.dumps(params, sort_keys=True, separators=(",", ":"))` writes:
 * sorted keys, no spaces, non-ASCII escaped as `\uXXXX` (its default `ensure_ascii`).
 */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(sortDeep(value)).replace(
    /[\u0080-\uffff]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
}

/** The params segment: canonical JSON, UTF-8, URL-safe base64 with padding. */
export function encodeParams(params: WireParams): string {
  if (Object.keys(params).length === 0) return EMPTY_PARAMS_SEGMENT;
  return encodeBase64UrlPadded(Buffer.from(canonicalJson(params), 'utf8'));
}

const EMPTY: WireParams = Object.freeze({});

/**
 * Decodes a params segment into a JSON object (any key order is read; `e30=` without parsing).
 * @throws MalformedTokenError
 */
export function decodeParams(segment: string): WireParams {
  if (segment === EMPTY_PARAMS_SEGMENT) return EMPTY;
  const bytes = decodeBase64UrlPadded(segment, 'params');
  let parsed: unknown;
  try {
    parsed = JSON.parse(new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(bytes));
  } catch {
    throw new MalformedTokenError('params are not UTF-8 JSON');
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new MalformedTokenError('params are not a JSON object');
  }
  return parsed as WireParams;
}
