/**
 * Where the end-to-end AWS provider tests run: the wire-level fake of kms-envelope/testing
 * (default, started on 127.0.0.1 per test), or a real AWS-compatible endpoint — LocalStack or
 * moto from `docker-compose.yml` — when `npm run test:localstack` sets
 * `KMS_ENVELOPE_AWS_BACKEND=remote`; that endpoint is `AWS_ENDPOINT_URL` (default
 * http://127.0.0.1:4566). Keys and secrets are created through the SDK, fresh for every run
 * (LocalStack loses state on restart). Fault injection exists only with the fake.
 */
import { randomUUID } from 'node:crypto';
import { createConnection } from 'node:net';
import {
  CreateAliasCommand,
  CreateKeyCommand,
  DisableKeyCommand,
  EnableKeyCommand,
  KMSClient,
  ScheduleKeyDeletionCommand,
} from '@aws-sdk/client-kms';
import {
  CreateSecretCommand,
  DeleteSecretCommand,
  PutSecretValueCommand,
  RestoreSecretCommand,
  SecretsManagerClient,
} from '@aws-sdk/client-secrets-manager';
import type { KmsSlotInput } from '../../src/providers/slot.js';
import { type FakeAws, startFakeAws } from '../../src/testing/fake-aws.js';

/** True when the suite runs against LocalStack / moto instead of the fake. */
export const REMOTE = process.env.KMS_ENVELOPE_AWS_BACKEND === 'remote';
/** The remote endpoint. */
export const REMOTE_ENDPOINT = process.env.AWS_ENDPOINT_URL ?? 'http://127.0.0.1:4566';

const credentials = { accessKeyId: 'test', secretAccessKey: 'test' };

/** One AWS backend for a test. */
export interface AwsBackend {
  readonly endpoint: string;
  readonly region: string;
  readonly credentials: { readonly accessKeyId: string; readonly secretAccessKey: string };
  /** The fake, when running against it (fault injection, request log, STS roles). */
  readonly fake: FakeAws | undefined;
  /** A new symmetric key with a fresh alias. */
  createKey(): Promise<{ arn: string; alias: string }>;
  setKeyEnabled(arn: string, enabled: boolean): Promise<void>;
  scheduleDeletion(arn: string): Promise<void>;
  /** A new secret holding `value`, or a new version of it. */
  putSecret(name: string, value: Uint8Array | string): Promise<{ arn: string; versionId: string }>;
  deleteSecret(name: string): Promise<void>;
  restoreSecret(name: string): Promise<void>;
  /** A unique name for this run. */
  unique(prefix: string): string;
  close(): Promise<void>;
}

/** Whether something accepts TCP connections at `url`'s host and port. */
export function listening(url: string): Promise<boolean> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve) => {
    const socket = createConnection({ host: hostname, port: Number(port || 80) });
    socket.setTimeout(1000);
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
    socket.once('timeout', () => {
      socket.destroy();
      resolve(false);
    });
  });
}

/** Starts (fake) or connects to (remote) an AWS backend. */
export async function awsBackend(): Promise<AwsBackend> {
  const fake = REMOTE ? undefined : await startFakeAws();
  const endpoint = fake?.endpoint ?? REMOTE_ENDPOINT;
  const region = fake?.region ?? process.env.AWS_REGION ?? 'us-east-1';
  const config = { endpoint, region, credentials, maxAttempts: 1 };
  const kms = new KMSClient(config);
  const secrets = new SecretsManagerClient(config);
  const created = new Set<string>();
  return {
    endpoint,
    region,
    credentials,
    fake,
    unique: (prefix) => `${prefix}-${randomUUID().slice(0, 8)}`,
    async createKey() {
      const out = await kms.send(new CreateKeyCommand({ Description: 'kms-envelope test' }));
      const arn = out.KeyMetadata?.Arn ?? '';
      const alias = `alias/kms-envelope-test-${randomUUID().slice(0, 8)}`;
      await kms.send(new CreateAliasCommand({ AliasName: alias, TargetKeyId: out.KeyMetadata?.KeyId }));
      return { arn, alias };
    },
    async setKeyEnabled(arn, enabled) {
      await kms.send(enabled ? new EnableKeyCommand({ KeyId: arn }) : new DisableKeyCommand({ KeyId: arn }));
    },
    async scheduleDeletion(arn) {
      await kms.send(new ScheduleKeyDeletionCommand({ KeyId: arn, PendingWindowInDays: 7 }));
    },
    async putSecret(name, value) {
      const field = typeof value === 'string' ? { SecretString: value } : { SecretBinary: value };
      const out = created.has(name)
        ? await secrets.send(new PutSecretValueCommand({ SecretId: name, ...field }))
        : await secrets.send(new CreateSecretCommand({ Name: name, ...field }));
      created.add(name);
      return { arn: out.ARN ?? '', versionId: out.VersionId ?? '' };
    },
    async deleteSecret(name) {
      await secrets.send(new DeleteSecretCommand({ SecretId: name, RecoveryWindowInDays: 7 }));
    },
    async restoreSecret(name) {
      await secrets.send(new RestoreSecretCommand({ SecretId: name }));
    },
    async close() {
      kms.destroy();
      secrets.destroy();
      await fake?.close();
    },
  };
}

/**
 * For the remote suite: whether the endpoint answers. Under `CI=true` a missing endpoint is a
 * failure; otherwise the suite is skipped with a message saying how to start one.
 */
export async function remoteAvailable(): Promise<boolean> {
  if (!REMOTE) return true;
  if (await listening(REMOTE_ENDPOINT)) return true;
  const message =
    `nothing listens at ${REMOTE_ENDPOINT}: start LocalStack with \`docker compose up -d localstack\` ` +
    '(needs LOCALSTACK_AUTH_TOKEN) or moto with `docker compose up -d moto` and ' +
    'AWS_ENDPOINT_URL=http://127.0.0.1:5000, then run `npm run test:localstack` again';
  if (process.env.CI === 'true') throw new Error(message);
  console.warn(`skipping the AWS end-to-end suite: ${message}`);
  return false;
}

/** A slot of `provider` on `aws` with its endpoint, region and credentials; `extra` on top. */
export function awsSlot(
  aws: AwsBackend,
  provider: 'aws' | 'aws-kms',
  keyId: string,
  extra: Partial<KmsSlotInput> = {},
): KmsSlotInput {
  return {
    provider,
    keyId,
    region: aws.region,
    endpoint: aws.endpoint,
    ...extra,
    options: { credentials: aws.credentials, ...(extra.options ?? {}) },
  };
}
