import CRC32C from 'crc-32/crc32c.js';

/** Length of the CRC32C trailer of a stored envelope. */
export const CHECKSUM_LENGTH = 4;

/** CRC32C (Castagnoli) of `bytes[start, end)`, as an unsigned 32-bit number. */
export function crc32c(bytes: Uint8Array, start = 0, end = bytes.length): number {
  const view = start === 0 && end === bytes.length ? bytes : bytes.subarray(start, end);
  return CRC32C.buf(view) >>> 0;
}
