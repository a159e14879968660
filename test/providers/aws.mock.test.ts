/**
 * `aws` (Secrets Manager) logic against `aws-sdk-client-mock`: secret decoding, the recorded
 * ARN and VersionId, refusal of another secret, error mapping. End to end: aws.test.ts.
 */
import { randomBytes } from 'node:crypto';
import { GetSecretValueCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { mockClient } from 'aws-sdk-client-mock';
import { describe, expect, it } from 'vitest';
import { AWS_WRAPPED_LENGTH, createAwsSecretsProvider, parseAwsKeyId } from '../../providers/aws.js';
import {
  AccessDeniedError,
  ConfigError,
  DeadlineExceededError,
  KeyDisabledError,
  KeyNotFoundError,
  ThrottledError,
  UnwrapFailedError,
} from '../../src/errors.js';
import { Kek } from '../../src/keys/kek.js';
import { parseIndexName, parseSlotName } from '../../src/names.js';
import { awsError, recordAbortSignals } from './aws-mock.js';

const ARN = 'arn:aws:secretsmanager:eu-west-1:111122223333:secret:kek-master-AbCdEf';
const ctx = { index: parseIndexName('orders'), slot: parseSlotName('sm'), encryptionContext: {} };

function smClient() {
  const client = new SecretsManagerClient({
    region: 'eu-west-1',
    endpoint: 'http://127.0.0.1:9',
    credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
    maxAttempts: 1,
  });
  return { client, mock: mockClient(client) };
}

describe('aws (Secrets Manager) with a mocked client', () => {
  it('wraps under AWSCURRENT, records ARN#VersionId, and unwraps by that version after the secret rotates', async () => {
    const { client, mock } = smClient();
    const v1 = randomBytes(32);
    const v2 = randomBytes(32);
    // A secret with versions: AWSCURRENT moves on rotation; a VersionId reads that version.
    const versions: Record<string, Uint8Array | string> = { 'v-1': new Uint8Array(v1) };
    let current = 'v-1';
    mock.on(GetSecretValueCommand).callsFake((input: { SecretId: string; VersionId?: string }) => {
      expect(input.SecretId).toBe('kek-master');
      const versionId = input.VersionId ?? current;
      const value = versions[versionId]!;
      return {
        ARN,
        VersionId: versionId,
        ...(typeof value === 'string' ? { SecretString: value } : { SecretBinary: new Uint8Array(value) }),
      };
    });
    const provider = await createAwsSecretsProvider({ client, secretId: 'kek-master' });
    const kek = Kek.generate();
    const wrapped = await provider.wrap(kek, ctx);
    expect(wrapped.keyId).toBe(`${ARN}#v-1`);
    expect(wrapped.region).toBe('eu-west-1');
    expect(wrapped.wrappedKek).toHaveLength(AWS_WRAPPED_LENGTH);
    expect(parseAwsKeyId(wrapped.keyId)).toEqual({ arn: ARN, versionId: 'v-1' });
    // The secret rotates: AWSCURRENT is now v-2, but the envelope names v-1.
    versions['v-2'] = v2.toString('base64');
    current = 'v-2';
    expect((await provider.unwrap(wrapped, ctx)).equals(kek)).toBe(true);
    // A new wrap uses the new version.
    expect((await provider.wrap(kek, ctx)).keyId).toBe(`${ARN}#v-2`);
  });

  it('a secret that is not 32 bytes is a ConfigError that never shows the value', async () => {
    for (const value of [
      { SecretBinary: new Uint8Array(16).fill(0x41) },
      { SecretString: randomBytes(24).toString('base64') },
      { SecretString: 'a-32-character-password-0123456' + 'x' }, // 32 characters of text
      { SecretString: '' },
    ]) {
      const { client, mock } = smClient();
      mock.on(GetSecretValueCommand).resolves({ ARN, VersionId: 'v-1', ...value });
      const provider = await createAwsSecretsProvider({ client, secretId: ARN });
      const err = await provider.wrap(Kek.generate(), ctx).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ConfigError);
      expect((err as Error).message).toMatch(/exactly 32 bytes/);
      expect((err as Error).message).not.toContain('password');
      expect((err as Error).message).not.toContain('AAAA');
    }
  });

  it('accepts hex and base64url SecretStrings', async () => {
    for (const text of [randomBytes(32).toString('hex'), randomBytes(32).toString('base64url')]) {
      const { client, mock } = smClient();
      mock.on(GetSecretValueCommand).resolves({ ARN, VersionId: 'v-1', SecretString: text });
      const provider = await createAwsSecretsProvider({ client, secretId: ARN });
      const kek = Kek.generate();
      expect((await provider.unwrap(await provider.wrap(kek, ctx), ctx)).equals(kek)).toBe(true);
    }
  });

  it('refuses an envelope of another secret, a malformed key id or a wrong length before reading', async () => {
    const { client, mock } = smClient();
    const provider = await createAwsSecretsProvider({ client, secretId: 'kek-master' });
    const good = { wrappedKek: new Uint8Array(AWS_WRAPPED_LENGTH), keyId: `${ARN}#v-1`, region: '' };
    for (const bad of [
      { ...good, keyId: 'arn:aws:secretsmanager:eu-west-1:111122223333:secret:other-AbCdEf#v-1' },
      { ...good, keyId: ARN },
      { ...good, keyId: `${ARN}#` },
      { ...good, wrappedKek: new Uint8Array(AWS_WRAPPED_LENGTH - 1) },
    ]) {
      await expect(provider.unwrap(bad, ctx)).rejects.toThrow(UnwrapFailedError);
    }
    expect(mock.calls()).toHaveLength(0);
    // A slot that names the secret by a partial ARN matches the complete one.
    const partial = await createAwsSecretsProvider({
      client,
      secretId: 'arn:aws:secretsmanager:eu-west-1:111122223333:secret:kek-master',
    });
    mock.on(GetSecretValueCommand).resolves({ ARN, VersionId: 'v-1', SecretBinary: new Uint8Array(32) });
    await expect(partial.unwrap(good, ctx)).rejects.toThrow(/cannot unwrap/); // read, then GCM fails
    expect(mock.calls()).toHaveLength(1);
  });

  it('reads the slot’s own secret, never the ARN the store names: a same-named secret elsewhere is refused', async () => {
    const { client, mock } = smClient();
    const key = randomBytes(32);
    mock.on(GetSecretValueCommand).resolves({ ARN, VersionId: 'v-1', SecretBinary: new Uint8Array(key) });
    const provider = await createAwsSecretsProvider({ client, secretId: 'kek-master' });
    const good = await provider.wrap(Kek.generate(), ctx);
    // Another account's secret of the same name, as a store writer would record it.
    const foreign = 'arn:aws:secretsmanager:eu-west-1:999999999999:secret:kek-master-XyZ123';
    await expect(provider.unwrap({ ...good, keyId: `${foreign}#v-1` }, ctx)).rejects.toThrow(
      /wrapped under secret .*999999999999.*slot's secret is .*111122223333/,
    );
    const sent = mock.commandCalls(GetSecretValueCommand).map((c) => c.args[0].input.SecretId);
    expect(sent.every((id) => id === 'kek-master')).toBe(true);
  });

  it('wipes the secret when the answer lacks an ARN or VersionId', async () => {
    const { client, mock } = smClient();
    const binary = new Uint8Array(randomBytes(32));
    mock.on(GetSecretValueCommand).resolves({ VersionId: 'v-1', SecretBinary: binary });
    const provider = await createAwsSecretsProvider({ client, secretId: 'kek-master' });
    await expect(provider.wrap(Kek.generate(), ctx)).rejects.toThrow(/without an ARN/);
    expect(binary.every((b) => b === 0)).toBe(true);
  });

  it('passes the deadline signal to every Secrets Manager call; an aborted one is not made', async () => {
    const { client, mock } = smClient();
    mock.on(GetSecretValueCommand).resolves({ ARN, VersionId: 'v-1', SecretBinary: new Uint8Array(32) });
    const sent = recordAbortSignals(client as never);
    const provider = await createAwsSecretsProvider({ client, secretId: ARN });
    const controller = new AbortController();
    const wrapped = await provider.wrap(Kek.generate(), { ...ctx, signal: controller.signal });
    (await provider.unwrap(wrapped, { ...ctx, signal: controller.signal })).zero();
    expect(sent).toEqual([controller.signal, controller.signal]);
    await expect(provider.unwrap(wrapped, { ...ctx, signal: AbortSignal.abort() })).rejects.toThrow(
      DeadlineExceededError,
    );
    expect(sent).toHaveLength(2);
  });

  it('maps Secrets Manager errors', async () => {
    const cases: [Error, new (...args: never[]) => Error][] = [
      [awsError('ResourceNotFoundException'), KeyNotFoundError],
      [awsError('AccessDeniedException'), AccessDeniedError],
      [
        awsError(
          'InvalidRequestException',
          400,
          "You can't perform this operation on the secret because it was marked for deletion.",
        ),
        KeyDisabledError,
      ],
      [awsError('ThrottlingException'), ThrottledError],
      [awsError('DecryptionFailure'), AccessDeniedError],
    ];
    for (const [sdkError, expected] of cases) {
      const { client, mock } = smClient();
      mock.on(GetSecretValueCommand).rejects(sdkError);
      const provider = await createAwsSecretsProvider({ client, secretId: ARN });
      const err = await provider.wrap(Kek.generate(), ctx).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(expected);
      expect((err as Error).cause).toBe(sdkError);
    }
  });
});
