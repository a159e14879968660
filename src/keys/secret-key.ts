import { randomFillSync, timingSafeEqual } from 'node:crypto';
import { inspect } from 'node:util';
import { InvalidArgumentError } from '../errors.js';

const REDACTED = '[redacted]';
const fillTypedArray = Uint8Array.prototype.fill;

/**
 * Key bytes in a `Buffer` that is never printed: `toString`, `toJSON`, `util.inspect` and string
 * coercion all give a redacted placeholder. The bytes live in a private field, are copied in and
 * never shared with the caller's buffer, and can be overwritten with zeros by {@link zero}.
 *
 * Subclasses ({@link Kek}, and the DEK type of the wire layer) fix the length and brand the type
 * so that one kind of key cannot be passed where another is expected.
 */
export abstract class SecretKey {
  readonly #bytes: Buffer;
  #zeroed = false;

  /** What the key is called in messages (`KEK`, `DEK`). */
  protected abstract get kind(): string;

  protected constructor(bytes: Uint8Array, expectedLength: number, kind: string) {
    if (!(bytes instanceof Uint8Array) || bytes.length !== expectedLength) {
      // Only the length is reported, never the bytes.
      const got = bytes instanceof Uint8Array ? `${bytes.length} bytes` : typeof bytes;
      throw new InvalidArgumentError(`a ${kind} must be exactly ${expectedLength} bytes, got ${got}`);
    }
    // An unpooled buffer of its own (never a slice of Buffer's shared pool), so zero() wipes
    // only this key; every byte is overwritten by the copy at once (the length was checked), so
    // skipping the zero-fill of Buffer.alloc leaves nothing uninitialised.
    this.#bytes = Buffer.allocUnsafeSlow(expectedLength);
    this.#bytes.set(bytes);
  }

  /** Fills `length` fresh bytes from the CSPRNG. */
  protected static randomBytes(length: number): Buffer {
    return randomFillSync(Buffer.alloc(length));
  }

  /** A key made by `make` from `length` fresh random bytes, which are wiped afterwards. */
  protected static fresh<K extends SecretKey>(length: number, make: (bytes: Uint8Array) => K): K {
    const bytes = SecretKey.randomBytes(length);
    try {
      return make(bytes);
    } finally {
      bytes.fill(0);
    }
  }

  /** Length of the key in bytes. */
  get length(): number {
    return this.#bytes.length;
  }

  /** True once {@link zero} has been called. */
  get isZeroed(): boolean {
    return this.#zeroed;
  }

  /**
   * The key bytes themselves (not a copy), for handing to `node:crypto`.
   *
   * Security: do not log, serialise or keep the returned buffer; it is wiped by {@link zero}.
   * @throws InvalidArgumentError if the key was zeroed.
   */
  expose(): Buffer {
    if (this.#zeroed)
      throw new InvalidArgumentError(`this ${this.kind} was zeroed and can no longer be used`);
    return this.#bytes;
  }

  /** Overwrites the bytes with zeros; the key is unusable afterwards. Idempotent. */
  zero(): void {
    // TypedArray's own fill: Buffer#fill's argument handling costs more than the 32 stores.
    fillTypedArray.call(this.#bytes, 0);
    this.#zeroed = true;
  }

  /** Constant-time comparison with another key of the same kind and length. */
  equals(other: SecretKey): boolean {
    if (this.#zeroed || other.#zeroed || other.#bytes.length !== this.#bytes.length) return false;
    return timingSafeEqual(this.#bytes, other.#bytes);
  }

  /** `Kek[redacted]`: never the bytes. */
  toString(): string {
    return `${this.kind}${REDACTED}`;
  }

  /** `"[redacted]"` in `JSON.stringify`: never the bytes. */
  toJSON(): string {
    return REDACTED;
  }

  /** Template literals and string concatenation get {@link toString}. */
  [Symbol.toPrimitive](): string {
    return this.toString();
  }

  /** `util.inspect` and `console.log` show `Kek [redacted]`. */
  [inspect.custom](): string {
    return `${this.kind} ${REDACTED}`;
  }
}

/**
 * Runs `fn` with `key` and zeroes the key afterwards, whether `fn` returns or throws.
 *
 * @example
 * const sealed = await withKey(await client.unwrap('orders'), (kek) => seal(kek.expose(), data));
 */
export async function withKey<K extends SecretKey, T>(key: K, fn: (key: K) => T | Promise<T>): Promise<T> {
  try {
    return await fn(key);
  } finally {
    key.zero();
  }
}
