/**
 * Provider `aws`: the KEK is sealed with AES-256-GCM under a 32-byte value kept in AWS Secrets
 * Manager (`SecretBinary` of 32 bytes, or a `SecretString` with 32 bytes in base64, base64url or
 * hex), bound to the index, slot and context as AAD like `local`.
 *
 * The envelope records `key_id` = `<secret ARN>#<VersionId>`: an old envelope still unwraps after
 * the secret rotates (the version it names stays readable as AWSPREVIOUS or by id), and a wrap
 * always uses AWSCURRENT. An unwrap reads the slot's own secret at the recorded version and
 * requires Secrets Manager's ARN to be the recorded one: it never reads a secret the store names
 * (which could be a same-named secret in another account). Wrapped form:
 * `nonce(12) ‖ ciphertext(32) ‖ tag(16)`.
 *
 * Slot: `key_id` (secret name or ARN), `region`, optional `endpoint`, `role_arn` + `external_id`
 * for cross-account secrets; `options` as in `aws-shared.ts`. Needs the optional package
 * `@aws-sdk/client-secrets-manager`. Permissions: `secretsmanager:GetSecretValue` on the secret
 * (and `kms:Decrypt` on the KMS key that encrypts the secret, when it is a customer managed key).
 *
 * @module
 */
import type { GetSecretValueCommandOutput, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { openAes256Gcm, sealAes256Gcm } from '../src/crypto/aes-gcm.js';
import { ConfigError, type ErrorContext, UnwrapFailedError } from '../src/errors.js';
import { KEK_LENGTH, type Kek } from '../src/keys/kek.js';
import { decodeKeyMaterial } from '../src/keys/secret-ref.js';
import type {
  KmsProvider,
  ProviderPlugin,
  UnwrapContext,
  WrapContext,
  WrappedKek,
} from '../src/providers/provider.js';
import type { KmsSlot } from '../src/providers/slot.js';
import {
  bindingBytes,
  importOptional,
  kekFromPlaintext,
  throwIfAborted,
  whereOf,
} from '../src/providers/support.js';
import { awsClientOf, mapAwsError } from './aws-shared.js';

/** Provider id. */
export const id = 'aws';

/** Length of an `aws` wrapped KEK: nonce ‖ 32-byte ciphertext ‖ tag. */
export const AWS_WRAPPED_LENGTH = 12 + KEK_LENGTH + 16;

type SecretsModule = typeof import('@aws-sdk/client-secrets-manager');

const SECRET_ARN = /^arn:aws[a-z-]*:secretsmanager:([a-z0-9-]*):(\d*):secret:(.+)-[A-Za-z0-9]{6}$/;

/** A recorded `aws` `key_id`, split. */
export interface AwsSecretKeyId {
  /** The secret's ARN. */
  arn: string;
  /** The secret version (`VersionId`) that wrapped. */
  versionId: string;
}

/** Splits a recorded `key_id` into the secret ARN and VersionId. */
export function parseAwsKeyId(keyId: string): AwsSecretKeyId | undefined {
  const hash = keyId.lastIndexOf('#');
  if (hash <= 0 || hash === keyId.length - 1) return undefined;
  return { arn: keyId.slice(0, hash), versionId: keyId.slice(hash + 1) };
}

/** Whether a secret ARN names the secret `ref` (a name or an ARN, partial or complete). */
function sameSecret(arn: string, ref: string): boolean {
  if (ref === arn) return true;
  if (ref.startsWith('arn:')) return arn.startsWith(`${ref}-`) && arn.length === ref.length + 7;
  return SECRET_ARN.exec(arn)?.[3] === ref;
}

/** Options of {@link createAwsSecretsProvider}. */
export interface AwsSecretsProviderOptions {
  /** The Secrets Manager client to use (its endpoint, credentials and retries are yours). */
  readonly client: SecretsManagerClient;
  /** The secret: name or ARN. */
  readonly secretId: string;
  /** Region recorded (default: from the secret's ARN). */
  readonly region?: string;
  /** The `@aws-sdk/client-secrets-manager` module (loaded when omitted). */
  readonly sdk?: SecretsModule;
  /** Destroy the client on `close()` (default false: it is the caller's). */
  readonly ownsClient?: boolean;
}

class AwsSecretsProvider implements KmsProvider {
  readonly id = id;
  readonly #client: SecretsManagerClient;
  readonly #sdk: SecretsModule;
  readonly #secretId: string;
  readonly #region: string | undefined;
  readonly #ownsClient: boolean;

  constructor(options: AwsSecretsProviderOptions & { sdk: SecretsModule }) {
    this.#client = options.client;
    this.#sdk = options.sdk;
    this.#secretId = options.secretId;
    this.#region = options.region;
    this.#ownsClient = options.ownsClient ?? false;
  }

  async wrap(kek: Kek, context: WrapContext): Promise<WrappedKek> {
    const where = whereOf(context, id);
    const secret = await this.#read(undefined, context, where);
    try {
      const wrappedKek = sealAes256Gcm(secret.key, kek.expose(), bindingBytes(context, id));
      return {
        wrappedKek,
        keyId: `${secret.arn}#${secret.versionId}`,
        region: this.#region ?? SECRET_ARN.exec(secret.arn)?.[1] ?? '',
      };
    } finally {
      secret.key.fill(0);
    }
  }

  async unwrap(wrapped: WrappedKek, context: UnwrapContext): Promise<Kek> {
    const where = whereOf(context, id);
    const recorded = parseAwsKeyId(wrapped.keyId);
    if (recorded === undefined) {
      throw new UnwrapFailedError('the envelope does not record a secret ARN and version', where);
    }
    if (!sameSecret(recorded.arn, this.#secretId)) {
      throw new UnwrapFailedError(
        `the envelope was wrapped under secret ${recorded.arn}, but the slot uses ${this.#secretId}`,
        where,
      );
    }
    if (wrapped.wrappedKek.length !== AWS_WRAPPED_LENGTH) {
      throw new UnwrapFailedError('cannot unwrap the KEK', where);
    }
    // Read the slot's own secret (never the ARN the store names: that could be another account's
    // secret with the same name), at the recorded version, and require it to be the recorded one.
    const secret = await this.#read(recorded.versionId, context, where);
    try {
      if (secret.arn !== recorded.arn) {
        throw new UnwrapFailedError(
          `the envelope was wrapped under secret ${recorded.arn}, but the slot's secret is ${secret.arn}`,
          where,
        );
      }
      const plaintext = openAes256Gcm(secret.key, wrapped.wrappedKek, bindingBytes(context, id));
      if (plaintext === undefined) throw new UnwrapFailedError('cannot unwrap the KEK', where);
      return kekFromPlaintext(plaintext, where);
    } finally {
      secret.key.fill(0);
    }
  }

  async close(): Promise<void> {
    if (this.#ownsClient) this.#client.destroy();
  }

  /**
   * Reads the slot's secret (AWSCURRENT, or version `versionId`) as a 32-byte key the caller
   * wipes, with the ARN and VersionId Secrets Manager answered.
   */
  async #read(
    versionId: string | undefined,
    context: WrapContext,
    where: ErrorContext,
  ): Promise<{ key: Buffer; arn: string; versionId: string }> {
    throwIfAborted(context.signal, where);
    let out: GetSecretValueCommandOutput;
    try {
      out = await this.#client.send(
        new this.#sdk.GetSecretValueCommand({
          SecretId: this.#secretId,
          ...(versionId ? { VersionId: versionId } : {}),
        }),
        { abortSignal: context.signal },
      );
    } catch (err) {
      throw mapAwsError(err, where, context.signal);
    }
    const binary = out.SecretBinary !== undefined;
    const raw = binary
      ? Buffer.from(out.SecretBinary as Uint8Array)
      : Buffer.from(out.SecretString ?? '', 'utf8');
    out.SecretBinary?.fill(0);
    if (!out.ARN || !out.VersionId) {
      raw.fill(0);
      throw new UnwrapFailedError('Secrets Manager answered without an ARN or VersionId', where);
    }
    try {
      // A SecretString is text: 32 characters of it are a password, not a key.
      if (!binary && raw.length === KEK_LENGTH) throw new Error('a 32-character SecretString');
      const key = decodeKeyMaterial(raw, KEK_LENGTH, `the value of secret ${out.ARN}`);
      return { key, arn: out.ARN, versionId: out.VersionId };
    } catch (cause) {
      throw new ConfigError(
        `secret ${out.ARN} must hold exactly ${KEK_LENGTH} bytes (SecretBinary, or base64/hex SecretString)`,
        { ...where, cause },
      );
    } finally {
      raw.fill(0);
    }
  }
}

/**
 * An `aws` provider over a ready `SecretsManagerClient`.
 * @throws ConfigError without a secret id.
 */
export async function createAwsSecretsProvider(options: AwsSecretsProviderOptions): Promise<KmsProvider> {
  if (!options.secretId) throw new ConfigError('provider "aws" needs a secret id', { provider: id });
  const sdk = options.sdk ?? (await loadSdk());
  return new AwsSecretsProvider({ ...options, sdk });
}

function loadSdk(): Promise<SecretsModule> {
  return importOptional(
    '@aws-sdk/client-secrets-manager',
    `provider "${id}"`,
    () => import('@aws-sdk/client-secrets-manager'),
  );
}

/**
 * The `aws` provider of a slot: `key_id` (secret name or ARN) is required; the client comes from
 * `options.client`, `options.clientFactory` or the slot's region/endpoint/credentials/role.
 * @throws ConfigError; MissingDependencyError
 */
export async function createAwsSecretsProviderForSlot(slot: KmsSlot): Promise<KmsProvider> {
  if (!slot.keyId) {
    throw new ConfigError('slot of provider "aws" needs "key_id" (the secret name or ARN)', {
      slot: slot.name,
      provider: id,
    });
  }
  const sdk = await loadSdk();
  const { client, owned } = await awsClientOf(slot, id, (config) => new sdk.SecretsManagerClient(config));
  return createAwsSecretsProvider({
    client,
    sdk,
    secretId: slot.keyId,
    ...(slot.region ? { region: slot.region } : {}),
    ownsClient: owned,
  });
}

/** The plugin record the registry loads. */
export const plugin: ProviderPlugin = { id, create: createAwsSecretsProviderForSlot };
