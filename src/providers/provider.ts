import type { SharePolicy } from '../crypto/binding.js';
import type { Kek } from '../keys/kek.js';
import type { SecretRefOptions } from '../keys/secret-ref.js';
import type { IndexName, SlotName } from '../names.js';
import type { KmsSlot } from './slot.js';

/** What a wrap or unwrap is about; the provider binds the KEK to it (AAD / encryption context). */
export interface WrapContext {
  /** The index the KEK belongs to. */
  readonly index: IndexName;
  /** The KMS slot doing the wrap (`kms_name`). */
  readonly slot: SlotName;
  /** Extra context bound to the wrap, stored in the envelope. */
  readonly encryptionContext: Readonly<Record<string, string>>;
  /** Deadline for the KMS call; providers pass it to their SDK. */
  readonly signal?: AbortSignal;
  /**
   * The envelope's version (schema 2 envelopes). Bound with {@link creationId}: a provider passes
   * the whole context to `bindingBytes` / `bindingEncryptionContext`, which include both.
   */
  readonly version?: number;
  /**
   * The envelope's creation id (schema 2 envelopes; absent for schema 1, whose binding predates
   * it). When present the wrap is bound to it and to {@link version} as well.
   */
  readonly creationId?: Uint8Array;
  /**
   * Threshold envelopes (schema 3): the policy and the share this wrap holds. Bound too (binding
   * v3): `bindingBytes` includes it; the wrapped 32 bytes are then a Shamir share, not the KEK.
   */
  readonly policy?: SharePolicy;
}

/** The provider's output, recorded in the envelope. */
export interface WrappedKek {
  /** The wrapped KEK bytes (`wrapped_kek`); empty for `none`. */
  readonly wrappedKek: Uint8Array;
  /** The key reference that did the wrap (`key_id`), e.g. the resolved key ARN or version. */
  readonly keyId: string;
  /** Region or location (`region`), '' where the provider has none. */
  readonly region: string;
}

/** Extra input to {@link KmsProvider.unwrap}. */
export interface UnwrapContext extends WrapContext {
  /** A KEK the caller supplies (provider `none` only: it stores nothing key-derived). */
  readonly suppliedKek?: Kek;
}

/**
 * A key-management service that wraps and unwraps 32-byte KEKs. One implementation per file
 * under `providers/`; the core never imports a cloud SDK.
 *
 * A provider must: bind the wrap to `index` and `slot` (an envelope copied onto another index or
 * slot fails to unwrap); throw `UnwrapFailedError` for a wrong key or tampered bytes,
 * `AccessDeniedError`, `ProviderUnavailableError` (retryable) and the other typed errors with the
 * SDK error as `cause`; never log, return in an error, or keep the plaintext KEK.
 */
export interface KmsProvider {
  /** Provider id, as stored in `KMSBlob.provider`. */
  readonly id: string;
  /** Wraps `kek` (which the caller still owns and zeroes). */
  wrap(kek: Kek, context: WrapContext): Promise<WrappedKek>;
  /** Unwraps what {@link wrap} returned; the caller owns (and zeroes) the returned KEK. */
  unwrap(wrapped: WrappedKek, context: UnwrapContext): Promise<Kek>;
  /**
   * Optional: re-wraps `wrapped`, bound to `from`, under the provider's current key, bound to
   * `to` (the same index and slot; the next version), without the plaintext KEK leaving the KMS
   * (e.g. AWS KMS `ReEncrypt`). When a provider has it, `rotate` within the slot uses it instead
   * of unwrap + wrap. It must refuse whatever {@link unwrap} would refuse under `from` (another
   * key, another binding): the client never sees the KEK here, so it cannot check the envelope's
   * KEK check value, and a re-wrap of a forged envelope would make it trusted.
   */
  rewrap?(wrapped: WrappedKek, from: WrapContext, to: WrapContext): Promise<WrappedKek>;
  /**
   * True when anyone with the key's *public* half can make a wrap this provider unwraps (RSA key
   * wrapping, e.g. Key Vault `RSA-OAEP-256`): a store writer who can read the public key can then
   * forge an envelope with a KEK of their choosing. The client refuses to unwrap with such a
   * slot unless the slot sets `allowPublicKeyWrap: true`.
   */
  readonly publicKeyWrap?: boolean;
  /**
   * Optional, for break-glass providers whose private key is kept offline (`recipient`): unwraps
   * `wrapped` with `privateKey` (the private key file's bytes, which the caller owns and zeroes),
   * checking the binding of `context` exactly as {@link unwrap} would. A provider that has it is
   * never asked to unwrap on the request path: its wrap needs only a public key, so anyone could
   * have made it (a store writer's forgery), and {@link unwrap} refuses with
   * `SlotNotAllowedError`.
   *
   * Never called on the request path; only by `recover` (`KmsEnvelopeClient.recover`, CLI
   * `kms-envelope recover`), where an operator holds the private key and the KEK it yields is
   * checked against the envelope's `kek_check` before it is re-wrapped under working slots.
   * The caller owns (and zeroes) the returned KEK.
   */
  unwrapOffline?(wrapped: WrappedKek, context: WrapContext, privateKey: Uint8Array): Promise<Kek>;
  /** Releases clients the provider created itself. */
  close?(): Promise<void>;
}

/** What a provider factory gets besides its slot. */
export interface ProviderEnvironment {
  /** Options for resolving secret references (`env:`, `file:` ...). */
  readonly secrets: SecretRefOptions;
}

/**
 * Builds a provider for one slot. Called at most once per slot, on first use; it validates the
 * slot's fields and throws `ConfigError` naming what is missing.
 */
export type ProviderFactory = (
  slot: KmsSlot,
  environment: ProviderEnvironment,
) => KmsProvider | Promise<KmsProvider>;

/** A provider plugin: its id and factory, as exported by `kms-envelope/providers/<id>`. */
export interface ProviderPlugin {
  /** The provider id slots name in `provider:` (and envelopes record in `provider`). */
  readonly id: string;
  /** Builds the provider of one slot. */
  readonly create: ProviderFactory;
}
