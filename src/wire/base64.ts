import { MalformedTokenError } from '../errors.js';

const URLSAFE_PADDED = /^(?:[A-Za-z0-9_-]{4})*(?:[A-Za-z0-9_-]{2}==|[A-Za-z0-9_-]{3}=)?$/;

/** URL-safe base64 *with* `=` padding, as Python's `base64.urlsafe_b64encode` writes it. */
export function encodeBase64UrlPadded(bytes: Uint8Array): string {
  const text = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64url');
  const pad = (4 - (text.length % 4)) % 4;
  return pad === 0 ? text : text + '='.repeat(pad);
}

/**
 * Strict decode of URL-safe base64 with padding: only the URL-safe alphabet, length a multiple of
 * four, `=` only as padding.
 * @throws MalformedTokenError naming `what`.
 */
export function decodeBase64UrlPadded(text: string, what: string): Buffer {
  if (!URLSAFE_PADDED.test(text))
    throw new MalformedTokenError(`${what} is not URL-safe base64 with padding`);
  return Buffer.from(text, 'base64url');
}
