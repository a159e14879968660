import { ConfigError } from '../errors.js';
import type { IndexKeyring } from '../keyring/keyring.js';
import { isEncryptedValue } from '../wire/format.js';
import { decryptLegacyV2, isLegacyV2, type LegacyKey } from './v2.js';

/** What {@link migrateValue} found and did. */
export type MigratedKind = 'plaintext' | 'v2' | 'wire';

/** Options of {@link migrateValue}. */
export interface MigrateOptions {
  /** The index whose active DEK encrypts. */
  readonly keyring: IndexKeyring;
  /** The key of `v2:` tokens (a user key or the pool key); without it a `v2:` value is an error. */
  readonly legacyKey?: LegacyKey;
}

/** The outcome of {@link migrateValue}. */
export interface MigratedValue {
  /** What the input was. */
  kind: MigratedKind;
  /** The wire token. */
  value: string;
}

/**
 * Moves one value into the wire format: plaintext → encrypted under the index's active DEK;
 * `v2:` → decrypted and re-encrypted likewise; a wire token → unchanged.
 * @throws the decryption and keyring errors; never includes the value in a message.
 */
export async function migrateValue(value: string, options: MigrateOptions): Promise<MigratedValue> {
  if (isEncryptedValue(value)) return { kind: 'wire', value };
  if (isLegacyV2(value)) {
    if (options.legacyKey === undefined) {
      throw new ConfigError('a v2: value needs the legacy key (API_KEY_MASTER_KEY and the user or pool key)');
    }
    const plaintext = decryptLegacyV2(value, options.legacyKey);
    return { kind: 'v2', value: await options.keyring.encryptValue(plaintext) };
  }
  return { kind: 'plaintext', value: await options.keyring.encryptValue(value) };
}
