import { SecretKey } from './secret-key.js';

/** Length of every KEK in bytes. */
export const KEK_LENGTH = 32;

/**
 * An index's 32-byte key-encryption key. Redacted when printed, zeroable, compared in constant
 * time. This is what every API of kms-envelope takes and returns for a KEK.
 */
export class Kek extends SecretKey {
  declare private readonly brand: 'Kek';

  protected get kind(): string {
    return 'Kek';
  }

  /**
   * Copies `bytes` (exactly 32) into a new KEK. The caller should wipe its own copy.
   * @throws InvalidArgumentError if `bytes` is not 32 bytes long.
   */
  static fromBytes(bytes: Uint8Array): Kek {
    return new Kek(bytes);
  }

  /** A new random KEK from the CSPRNG. */
  static generate(): Kek {
    return Kek.fromBytesAndWipe(SecretKey.randomBytes(KEK_LENGTH));
  }

  /**
   * Copies `bytes` into a new KEK and wipes `bytes`: for plaintext that a decryption just
   * produced and nobody else holds.
   * @throws InvalidArgumentError if `bytes` is not 32 bytes long (and still wipes it).
   */
  static fromBytesAndWipe(bytes: Uint8Array): Kek {
    try {
      return new Kek(bytes);
    } finally {
      bytes.fill(0);
    }
  }

  private constructor(bytes: Uint8Array) {
    super(bytes, KEK_LENGTH, 'KEK');
  }
}
