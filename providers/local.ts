/**
 * Provider `local`: AES-256-GCM under a 32-byte master key taken from a secret reference
 * (`env:`, `file:`, `secret:`; `literal:` only with `allowLiteral`), bound to the index and slot
 * names as AAD. The embedded default, for development and single-machine installs. A key file
 * that group or others may read or write is refused (see `resolveSecretRef`).
 *
 * Wrapped form: `nonce(12) ‖ ciphertext(32) ‖ tag(16)` (60 bytes); `key_id` is the slot's
 * `keyId` or, when it has none, `local:` and a fingerprint of the master key (the first 8 bytes
 * of SHA-256 over a label and the key, which reveals nothing usable about the key).
 *
 * @module
 */
import { createHash } from 'node:crypto';
import { openAes256Gcm, sealAes256Gcm } from '../src/crypto/aes-gcm.js';
import { bindingAadOf } from '../src/crypto/binding.js';
import { ConfigError, UnwrapFailedError } from '../src/errors.js';
import { KEK_LENGTH, Kek } from '../src/keys/kek.js';
import { decodeKeyMaterial, resolveSecretRef } from '../src/keys/secret-ref.js';
import type {
  KmsProvider,
  ProviderEnvironment,
  ProviderPlugin,
  UnwrapContext,
  WrapContext,
  WrappedKek,
} from '../src/providers/provider.js';
import type { KmsSlot } from '../src/providers/slot.js';

/** Provider id. */
export const id = 'local';

/** Length of a `local` wrapped KEK: nonce ‖ 32-byte ciphertext ‖ tag. */
export const LOCAL_WRAPPED_LENGTH = 12 + KEK_LENGTH + 16;

/** The master key's fingerprint id, used as `key_id` when the slot names none. */
export function localKeyFingerprint(masterKey: Uint8Array): string {
  return `local:${createHash('sha256').update('kms-envelope/local-key-id/v1').update(masterKey).digest('hex').slice(0, 16)}`;
}

/** The `local` provider; also unwraps synchronously (`unwrapSync`), which the client uses. */
export class LocalProvider implements KmsProvider {
  readonly id = id;
  readonly #masterKey: Buffer;
  readonly #keyId: string;

  constructor(masterKey: Buffer, keyId: string) {
    this.#masterKey = masterKey;
    this.#keyId = keyId;
  }

  // wrap and unwrap are plain functions returning settled promises, not `async` ones: the cipher
  // work is synchronous, and an async function's extra promise and microtask cost more than the
  // rest of the overhead over a raw AES-GCM call (see `npm run bench`).
  wrap(kek: Kek, context: WrapContext): Promise<WrappedKek> {
    try {
      const aad = bindingAadOf(id, context);
      return Promise.resolve({
        wrappedKek: sealAes256Gcm(this.#masterKey, kek.expose(), aad),
        keyId: this.#keyId,
        region: '',
      });
    } catch (err) {
      return Promise.reject(err);
    }
  }

  unwrap(wrapped: WrappedKek, context: UnwrapContext): Promise<Kek> {
    try {
      return Promise.resolve(this.unwrapSync(wrapped, context));
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /**
   * {@link unwrap} without the promise: the client calls this directly (no deadline, retries or
   * breaker for a call that is CPU work of a few microseconds).
   * @throws UnwrapFailedError for another master key, a wrong length, or bytes that do not
   * authenticate (tampered, or bound to another index, slot or context).
   */
  unwrapSync(wrapped: WrappedKek, context: UnwrapContext): Kek {
    if (wrapped.keyId !== this.#keyId) {
      throw new UnwrapFailedError(
        `envelope was wrapped under master key "${wrapped.keyId}", not "${this.#keyId}"`,
        { index: context.index, slot: context.slot, provider: id },
      );
    }
    const plaintext =
      wrapped.wrappedKek.length === LOCAL_WRAPPED_LENGTH
        ? openAes256Gcm(this.#masterKey, wrapped.wrappedKek, bindingAadOf(id, context))
        : undefined;
    if (plaintext === undefined) {
      throw new UnwrapFailedError('cannot unwrap the KEK', {
        index: context.index,
        slot: context.slot,
        provider: id,
      });
    }
    return Kek.fromBytesAndWipe(plaintext);
  }

  async close(): Promise<void> {
    this.#masterKey.fill(0);
  }
}

/** Options of {@link createLocalProvider}. */
export interface LocalProviderOptions {
  /** The 32-byte master key itself (copied), instead of a secret reference. */
  readonly masterKey: Uint8Array;
  /** `key_id` to record; defaults to the master key's fingerprint. */
  readonly keyId?: string;
}

/**
 * Creates a `local` provider from master key bytes (copied once, into a buffer of the provider's
 * own that {@link LocalProvider.close} wipes; wipe yours).
 * @throws ConfigError if the key is not 32 bytes.
 */
export function createLocalProvider(options: LocalProviderOptions): LocalProvider {
  // Decoded from the caller's bytes directly: a Buffer.from copy first would be a second copy of
  // the master key that nobody wipes.
  const key = decodeKeyMaterial(options.masterKey, KEK_LENGTH, 'local master key');
  return new LocalProvider(key, options.keyId ?? localKeyFingerprint(key));
}

/**
 * Creates the `local` provider of a slot: resolves `slot.masterKey` (a secret reference).
 * @throws ConfigError when the slot has no `master_key` or it does not resolve to 32 bytes.
 */
export async function createLocalProviderForSlot(
  slot: KmsSlot,
  environment: ProviderEnvironment,
): Promise<KmsProvider> {
  if (!slot.masterKey) {
    throw new ConfigError('slot of provider "local" needs "master_key" (env:NAME, file:/path, secret:name)', {
      slot: slot.name,
      provider: id,
    });
  }
  const secret = await resolveSecretRef(slot.masterKey, environment.secrets);
  try {
    const key = decodeKeyMaterial(secret, KEK_LENGTH, `master key of slot "${slot.name}"`);
    return new LocalProvider(key, slot.keyId || localKeyFingerprint(key));
  } finally {
    secret.fill(0);
  }
}

/** The plugin record the registry loads. */
export const plugin: ProviderPlugin = { id, create: createLocalProviderForSlot };
