import { SecretKey } from './secret-key.js';

/**
 * A data-encryption key (DEK) of the wire format. Redacted when printed, zeroable, compared in
 * constant time — like {@link Kek}, but a distinct type so one cannot be passed for the other.
 * Its length is its algorithm's (32 bytes for `A256GCM`).
 */
export class Dek extends SecretKey {
  declare private readonly brand: 'Dek';

  protected get kind(): string {
    return 'Dek';
  }

  /**
   * Copies `bytes` into a new DEK of `length` bytes (default 32).
   * @throws InvalidArgumentError for another length.
   */
  static fromBytes(bytes: Uint8Array, length = 32): Dek {
    return new Dek(bytes, length);
  }

  /** A new random DEK of `length` bytes (default 32). */
  static generate(length = 32): Dek {
    return SecretKey.fresh(length, (bytes) => new Dek(bytes, length));
  }

  private constructor(bytes: Uint8Array, length: number) {
    super(bytes, length, 'DEK');
  }
}
