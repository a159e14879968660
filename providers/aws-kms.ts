/**
 * Provider `aws-kms`: AWS KMS `Encrypt` / `Decrypt` of the 32-byte KEK under a symmetric KMS key,
 * with an encryption context that carries the index and slot names (`kms-envelope:index`,
 * `kms-envelope:slot`) and the envelope's own context, so an envelope copied onto another index
 * or slot fails to decrypt. The envelope records the key ARN KMS answered with (the alias or id of
 * the slot resolved), and `rotate` within a slot uses `ReEncrypt`: the plaintext KEK never
 * leaves KMS.
 *
 * Slot: `key_id` (key ARN, key id, alias name `alias/…` or alias ARN), `region`, optional
 * `endpoint`, and for cross-account BYOK `role_arn` + `external_id` (+ `role_session_name`); see
 * `aws-shared.ts` for the `options` (ready client, credentials, ...). `options.acceptKeyIds`:
 * further key ARNs or ids whose envelopes this slot still unwraps (e.g. after its alias moved to
 * a new key, until every index is rotated).
 *
 * Needs the optional package `@aws-sdk/client-kms` (and `@aws-sdk/credential-providers` with
 * `role_arn`). Permissions: `kms:Encrypt`, `kms:Decrypt`, `kms:ReEncrypt*` on the key, and
 * `kms:DescribeKey` when `key_id` is an alias.
 *
 * @module
 */
import type { KMSClient } from '@aws-sdk/client-kms';
import { ConfigError, UnwrapFailedError } from '../src/errors.js';
import type { Kek } from '../src/keys/kek.js';
import type {
  KmsProvider,
  ProviderPlugin,
  UnwrapContext,
  WrapContext,
  WrappedKek,
} from '../src/providers/provider.js';
import type { KmsSlot } from '../src/providers/slot.js';
import {
  bindingEncryptionContext,
  importOptional,
  kekFromPlaintext,
  throwIfAborted,
  whereOf,
} from '../src/providers/support.js';
import { awsClientOf, mapAwsError } from './aws-shared.js';

/** Provider id. */
export const id = 'aws-kms';

type KmsModule = typeof import('@aws-sdk/client-kms');

const KEY_ARN = /^arn:aws[a-z-]*:kms:([a-z0-9-]*):(\d*):key\/(.+)$/;
const ALIAS = /^(alias\/.+|arn:aws[a-z-]*:kms:[a-z0-9-]*:\d*:alias\/.+)$/;

/** The key id part of a key ARN (or the id itself). */
function keyIdPart(ref: string): string {
  return KEY_ARN.exec(ref)?.[3] ?? ref;
}

/** The region of a key ARN, or `fallback`. */
function regionOf(arn: string, fallback: string): string {
  return KEY_ARN.exec(arn)?.[1] || fallback;
}

/** Options of {@link createAwsKmsProvider}. */
export interface AwsKmsProviderOptions {
  /** The KMS client to use (its endpoint, credentials and retries are yours). */
  readonly client: KMSClient;
  /** The key: ARN, id, `alias/name` or alias ARN. */
  readonly keyId: string;
  /** Region recorded when a key ARN does not say (default: the client's). */
  readonly region?: string;
  /** Further key ARNs or ids whose envelopes are accepted on unwrap. */
  readonly acceptKeyIds?: readonly string[];
  /** How long an alias's resolved key ARN is trusted (default 5 minutes). */
  readonly aliasCacheMs?: number;
  /** The `@aws-sdk/client-kms` module (loaded when omitted). */
  readonly sdk?: KmsModule;
  /** Destroy the client on `close()` (default false: it is the caller's). */
  readonly ownsClient?: boolean;
}

class AwsKmsProvider implements KmsProvider {
  readonly id = id;
  readonly #client: KMSClient;
  readonly #sdk: KmsModule;
  readonly #keyId: string;
  readonly #region: string;
  readonly #accept: ReadonlySet<string>;
  readonly #aliasCacheMs: number;
  readonly #ownsClient: boolean;
  /** The slot key's ARN when `keyId` is an alias, and until when it is trusted. */
  #resolved: { arn: string; until: number } | undefined;

  constructor(options: AwsKmsProviderOptions & { sdk: KmsModule; region: string }) {
    this.#client = options.client;
    this.#sdk = options.sdk;
    this.#keyId = options.keyId;
    this.#region = options.region;
    this.#accept = new Set((options.acceptKeyIds ?? []).map(keyIdPart));
    this.#aliasCacheMs = options.aliasCacheMs ?? 5 * 60_000;
    this.#ownsClient = options.ownsClient ?? false;
  }

  async wrap(kek: Kek, context: WrapContext): Promise<WrappedKek> {
    const where = whereOf(context, id);
    throwIfAborted(context.signal, where);
    try {
      const out = await this.#client.send(
        new this.#sdk.EncryptCommand({
          KeyId: this.#keyId,
          Plaintext: kek.expose(),
          EncryptionContext: bindingEncryptionContext(context),
        }),
        { abortSignal: context.signal },
      );
      return this.#recorded(out.CiphertextBlob, out.KeyId, where);
    } catch (err) {
      throw mapAwsError(err, where, context.signal);
    }
  }

  async unwrap(wrapped: WrappedKek, context: UnwrapContext): Promise<Kek> {
    const where = whereOf(context, id);
    throwIfAborted(context.signal, where);
    try {
      await this.#checkKey(wrapped.keyId, context);
      const out = await this.#client.send(
        new this.#sdk.DecryptCommand({
          CiphertextBlob: wrapped.wrappedKek,
          KeyId: wrapped.keyId,
          EncryptionContext: bindingEncryptionContext(context),
        }),
        { abortSignal: context.signal },
      );
      return kekFromPlaintext(out.Plaintext, where);
    } catch (err) {
      throw mapAwsError(err, where, context.signal);
    }
  }

  /** `ReEncrypt` under the slot's key (which an alias may now point elsewhere), inside KMS. */
  async rewrap(wrapped: WrappedKek, context: WrapContext, to: WrapContext): Promise<WrappedKek> {
    const where = whereOf(context, id);
    throwIfAborted(context.signal, where);
    const encryptionContext = bindingEncryptionContext(context);
    const destinationContext = bindingEncryptionContext(to);
    try {
      // As for unwrap: only from a key the slot accepts. ReEncrypt never shows the KEK to us, so
      // without this check an envelope forged under a key someone else controls would come out
      // re-encrypted under the slot's own key, and trusted from then on.
      await this.#checkKey(wrapped.keyId, context);
      const out = await this.#client.send(
        new this.#sdk.ReEncryptCommand({
          CiphertextBlob: wrapped.wrappedKek,
          SourceKeyId: wrapped.keyId,
          SourceEncryptionContext: encryptionContext,
          DestinationKeyId: this.#keyId,
          DestinationEncryptionContext: destinationContext,
        }),
        { abortSignal: context.signal },
      );
      return this.#recorded(out.CiphertextBlob, out.KeyId, where);
    } catch (err) {
      throw mapAwsError(err, where, context.signal);
    }
  }

  async close(): Promise<void> {
    if (this.#ownsClient) this.#client.destroy();
  }

  #recorded(
    blob: Uint8Array | undefined,
    keyArn: string | undefined,
    where: ReturnType<typeof whereOf>,
  ): WrappedKek {
    if (blob === undefined || blob.length === 0 || !keyArn) {
      throw new UnwrapFailedError('AWS KMS answered without a ciphertext or key ARN', where);
    }
    if (ALIAS.test(this.#keyId)) this.#resolved = { arn: keyArn, until: Date.now() + this.#aliasCacheMs };
    return { wrappedKek: blob, keyId: keyArn, region: regionOf(keyArn, this.#region) };
  }

  /**
   * The envelope's recorded key must be the slot's key (or one it accepts): a slot configured
   * with another key fails here, before KMS is asked.
   */
  async #checkKey(recorded: string, context: WrapContext): Promise<void> {
    const recordedId = keyIdPart(recorded);
    if (this.#accept.has(recordedId)) return;
    let slotKey = this.#keyId;
    if (ALIAS.test(slotKey)) {
      let fresh = false;
      if (this.#resolved === undefined || this.#resolved.until < Date.now()) {
        await this.#resolveAlias(context);
        fresh = true;
      }
      // The alias may have moved since it was resolved (another process rotated onto its new
      // key): look again once before refusing.
      if (!fresh && keyIdPart(this.#resolved!.arn) !== recordedId) await this.#resolveAlias(context);
      slotKey = this.#resolved!.arn;
    }
    if (keyIdPart(slotKey) !== recordedId) {
      throw new UnwrapFailedError(
        `the envelope was wrapped under KMS key ${recorded}, but the slot uses ${this.#keyId}` +
          ' (rotate the index, or list the old key in the slot option acceptKeyIds)',
        whereOf(context, id),
      );
    }
  }

  async #resolveAlias(context: WrapContext): Promise<void> {
    const out = await this.#client.send(new this.#sdk.DescribeKeyCommand({ KeyId: this.#keyId }), {
      abortSignal: context.signal,
    });
    const arn = out.KeyMetadata?.Arn;
    if (!arn) throw new ConfigError(`AWS KMS could not resolve ${this.#keyId}`, whereOf(context, id));
    this.#resolved = { arn, until: Date.now() + this.#aliasCacheMs };
  }
}

/**
 * An `aws-kms` provider over a ready `KMSClient`.
 * @throws ConfigError without a key id.
 */
export async function createAwsKmsProvider(options: AwsKmsProviderOptions): Promise<KmsProvider> {
  if (!options.keyId) throw new ConfigError('provider "aws-kms" needs a key id', { provider: id });
  const sdk = options.sdk ?? (await loadSdk());
  const region = options.region ?? (await options.client.config.region?.()) ?? '';
  return new AwsKmsProvider({ ...options, sdk, region });
}

function loadSdk(): Promise<KmsModule> {
  return importOptional('@aws-sdk/client-kms', `provider "${id}"`, () => import('@aws-sdk/client-kms'));
}

/**
 * The `aws-kms` provider of a slot: `key_id` is required; the client comes from
 * `options.client`, `options.clientFactory` or the slot's region/endpoint/credentials/role.
 * @throws ConfigError; MissingDependencyError
 */
export async function createAwsKmsProviderForSlot(slot: KmsSlot): Promise<KmsProvider> {
  const where = { slot: slot.name, provider: id };
  if (!slot.keyId) {
    throw new ConfigError('slot of provider "aws-kms" needs "key_id" (key ARN, key id or alias/name)', where);
  }
  const sdk = await loadSdk();
  const { client, owned } = await awsClientOf(slot, id, (config) => new sdk.KMSClient(config));
  const accept = slot.options?.acceptKeyIds;
  if (accept !== undefined && (!Array.isArray(accept) || accept.some((k) => typeof k !== 'string'))) {
    throw new ConfigError('slot option "acceptKeyIds" must be a list of key ARNs or ids', where);
  }
  return createAwsKmsProvider({
    client,
    sdk,
    keyId: slot.keyId,
    ...(slot.region ? { region: slot.region } : {}),
    ...(accept ? { acceptKeyIds: accept as string[] } : {}),
    ownsClient: owned,
  });
}

/** The plugin record the registry loads. */
export const plugin: ProviderPlugin = { id, create: createAwsKmsProviderForSlot };
