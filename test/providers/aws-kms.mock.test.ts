/**
 * `aws-kms` logic against `aws-sdk-client-mock`: what is sent, what is recorded, how every AWS
 * error maps, deadlines. The end-to-end tier (the real SDK over HTTP) is aws-kms.test.ts.
 */
import { randomBytes } from 'node:crypto';
import {
  DecryptCommand,
  DescribeKeyCommand,
  EncryptCommand,
  KMSClient,
  ReEncryptCommand,
} from '@aws-sdk/client-kms';
import { mockClient } from 'aws-sdk-client-mock';
import { describe, expect, it } from 'vitest';
import { createAwsKmsProvider } from '../../providers/aws-kms.js';
import { KmsEnvelopeClient } from '../../src/client.js';
import {
  AccessDeniedError,
  ConfigError,
  DeadlineExceededError,
  KeyDisabledError,
  KeyNotFoundError,
  KmsEnvelopeError,
  ProviderUnavailableError,
  ThrottledError,
  UnwrapFailedError,
} from '../../src/errors.js';
import { Kek } from '../../src/keys/kek.js';
import { parseIndexName, parseSlotName } from '../../src/names.js';
import { StorageConfig } from '../../src/storage/config.js';
import { awsError, recordAbortSignals } from './aws-mock.js';

const ARN = 'arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab';
const OTHER_ARN = 'arn:aws:kms:eu-west-1:111122223333:key/0000abcd-12ab-34cd-56ef-1234567890ab';
const ctx = {
  index: parseIndexName('orders'),
  slot: parseSlotName('prod-kms'),
  encryptionContext: { tenant: 't1' },
};
const sentContext = { 'kms-envelope:index': 'orders', 'kms-envelope:slot': 'prod-kms', tenant: 't1' };

function kmsClient() {
  const client = new KMSClient({
    region: 'eu-west-1',
    endpoint: 'http://127.0.0.1:9',
    credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
    maxAttempts: 1,
  });
  return { client, mock: mockClient(client) };
}

describe('aws-kms with a mocked KMS client', () => {
  it('wraps with Encrypt under the slot key and the binding context; records the answered ARN and its region', async () => {
    const { client, mock } = kmsClient();
    mock.on(EncryptCommand).resolves({ CiphertextBlob: new Uint8Array([1, 2, 3]), KeyId: ARN });
    const provider = await createAwsKmsProvider({ client, keyId: 'alias/orders' });
    const kek = Kek.generate();
    const wrapped = await provider.wrap(kek, ctx);
    expect(wrapped).toEqual({ wrappedKek: new Uint8Array([1, 2, 3]), keyId: ARN, region: 'eu-west-1' });
    const input = mock.commandCalls(EncryptCommand)[0]!.args[0].input;
    expect(input.KeyId).toBe('alias/orders');
    expect(input.EncryptionContext).toEqual(sentContext);
    expect(Buffer.from(input.Plaintext!).equals(kek.expose())).toBe(true);
  });

  it('unwraps with Decrypt naming the recorded key and the same context; the SDK plaintext is wiped', async () => {
    const { client, mock } = kmsClient();
    const plaintext = new Uint8Array(randomBytes(32));
    const expected = Kek.fromBytes(plaintext);
    mock.on(DecryptCommand).resolves({ Plaintext: plaintext, KeyId: ARN });
    const provider = await createAwsKmsProvider({ client, keyId: ARN });
    const kek = await provider.unwrap(
      { wrappedKek: new Uint8Array([9]), keyId: ARN, region: 'eu-west-1' },
      ctx,
    );
    expect(kek.equals(expected)).toBe(true);
    expect(plaintext.every((b) => b === 0)).toBe(true);
    const input = mock.commandCalls(DecryptCommand)[0]!.args[0].input;
    expect(input).toMatchObject({ KeyId: ARN, EncryptionContext: sentContext });
  });

  it('refuses, before calling KMS, an envelope recorded under another key than the slot’s', async () => {
    const { client, mock } = kmsClient();
    const provider = await createAwsKmsProvider({ client, keyId: ARN });
    await expect(
      provider.unwrap({ wrappedKek: new Uint8Array([9]), keyId: OTHER_ARN, region: '' }, ctx),
    ).rejects.toThrow(/wrapped under KMS key .*0000abcd.*acceptKeyIds/);
    expect(mock.commandCalls(DecryptCommand)).toHaveLength(0);
    // ...unless the slot accepts that key (e.g. its alias moved to a new key).
    mock.on(DecryptCommand).resolves({ Plaintext: new Uint8Array(32), KeyId: OTHER_ARN });
    const accepting = await createAwsKmsProvider({ client, keyId: ARN, acceptKeyIds: [OTHER_ARN] });
    await accepting.unwrap({ wrappedKek: new Uint8Array([9]), keyId: OTHER_ARN, region: '' }, ctx);
    // A bare key id in the slot matches the ARN recorded.
    const byId = await createAwsKmsProvider({ client, keyId: '1234abcd-12ab-34cd-56ef-1234567890ab' });
    mock.on(DecryptCommand).resolves({ Plaintext: new Uint8Array(32), KeyId: ARN });
    await byId.unwrap({ wrappedKek: new Uint8Array([9]), keyId: ARN, region: '' }, ctx);
  });

  it('an alias slot resolves its key with DescribeKey (once, then cached) to check the recorded key', async () => {
    const { client, mock } = kmsClient();
    mock.on(DescribeKeyCommand).resolves({ KeyMetadata: { KeyId: 'x', Arn: ARN } });
    mock.on(DecryptCommand).resolves({ Plaintext: new Uint8Array(32), KeyId: ARN });
    const provider = await createAwsKmsProvider({ client, keyId: 'alias/orders' });
    const wrapped = { wrappedKek: new Uint8Array([9]), keyId: ARN, region: '' };
    await provider.unwrap(wrapped, ctx);
    await provider.unwrap(wrapped, ctx);
    expect(mock.commandCalls(DescribeKeyCommand)).toHaveLength(1);
    await expect(provider.unwrap({ ...wrapped, keyId: OTHER_ARN }, ctx)).rejects.toThrow(UnwrapFailedError);
  });

  it('a plaintext that is not 32 bytes is an UnwrapFailedError, and is wiped', async () => {
    const { client, mock } = kmsClient();
    const plaintext = new Uint8Array(31).fill(7);
    mock.on(DecryptCommand).resolves({ Plaintext: plaintext, KeyId: ARN });
    const provider = await createAwsKmsProvider({ client, keyId: ARN });
    await expect(
      provider.unwrap({ wrappedKek: new Uint8Array([9]), keyId: ARN, region: '' }, ctx),
    ).rejects.toThrow(/31 bytes of plaintext/);
    expect(plaintext.every((b) => b === 0)).toBe(true);
  });

  const table: [string, Error, new (...args: never[]) => KmsEnvelopeError, boolean][] = [
    ['AccessDeniedException', awsError('AccessDeniedException', 400), AccessDeniedError, false],
    ['UnrecognizedClientException', awsError('UnrecognizedClientException', 400), AccessDeniedError, false],
    ['ExpiredTokenException', awsError('ExpiredTokenException', 400), AccessDeniedError, false],
    ['NotFoundException', awsError('NotFoundException', 400), KeyNotFoundError, false],
    ['DisabledException', awsError('DisabledException', 400), KeyDisabledError, false],
    [
      'KMSInvalidStateException (pending deletion)',
      awsError('KMSInvalidStateException', 400),
      KeyDisabledError,
      false,
    ],
    ['ThrottlingException', awsError('ThrottlingException', 400), ThrottledError, true],
    ['InvalidCiphertextException', awsError('InvalidCiphertextException', 400), UnwrapFailedError, false],
    ['IncorrectKeyException', awsError('IncorrectKeyException', 400), UnwrapFailedError, false],
    ['KMSInternalException', awsError('KMSInternalException', 500), ProviderUnavailableError, true],
    [
      'DependencyTimeoutException',
      awsError('DependencyTimeoutException', 503),
      ProviderUnavailableError,
      true,
    ],
    [
      'a refused connection',
      Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }),
      ProviderUnavailableError,
      true,
    ],
    [
      'an aborted request',
      Object.assign(new Error('Request aborted'), { name: 'AbortError' }),
      DeadlineExceededError,
      true,
    ],
    ['an unknown 400', awsError('ValidationException', 400), KmsEnvelopeError, false],
    [
      'a bug (no HTTP status, no network code): not retried',
      new TypeError('x is not a function'),
      KmsEnvelopeError,
      false,
    ],
  ];
  for (const [what, sdkError, expected, retryable] of table) {
    it(`maps ${what} to ${expected.name}, keeping the SDK error as cause`, async () => {
      const { client, mock } = kmsClient();
      mock.on(DecryptCommand).rejects(sdkError);
      const provider = await createAwsKmsProvider({ client, keyId: ARN });
      const err = await provider
        .unwrap({ wrappedKek: new Uint8Array([9]), keyId: ARN, region: '' }, ctx)
        .catch((e: unknown) => e);
      expect(err).toBeInstanceOf(expected);
      expect((err as KmsEnvelopeError).retryable).toBe(retryable);
      expect((err as Error).cause).toBe(sdkError);
      expect((err as Error).message).toContain('index "orders"');
      expect((err as Error).message).toContain('slot "prod-kms"');
      expect((err as Error).message).toContain('provider "aws-kms"');
    });
  }

  it('a throttling answer’s Retry-After reaches the retry policy', async () => {
    const { client, mock } = kmsClient();
    mock.on(DecryptCommand).rejects(
      awsError('ThrottlingException', 400, 'Rate exceeded', {
        $response: { headers: { 'retry-after': '2' } },
      }),
    );
    const provider = await createAwsKmsProvider({ client, keyId: ARN });
    const err = await provider
      .unwrap({ wrappedKek: new Uint8Array([9]), keyId: ARN, region: '' }, ctx)
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ThrottledError);
    expect((err as ThrottledError).retryAfterMs).toBe(2000);
  });

  it('an already aborted deadline fails without a call; the signal reaches the SDK', async () => {
    const { client, mock } = kmsClient();
    const provider = await createAwsKmsProvider({ client, keyId: ARN });
    const aborted = AbortSignal.abort();
    await expect(provider.wrap(Kek.generate(), { ...ctx, signal: aborted })).rejects.toThrow(
      DeadlineExceededError,
    );
    expect(mock.calls()).toHaveLength(0);
    const sent = recordAbortSignals(client as never);
    mock.on(EncryptCommand).resolves({ CiphertextBlob: new Uint8Array([1]), KeyId: ARN });
    const controller = new AbortController();
    await provider.wrap(Kek.generate(), { ...ctx, signal: controller.signal });
    expect(sent).toEqual([controller.signal]);
  });

  it('a reserved context key is refused', async () => {
    const { client } = kmsClient();
    const provider = await createAwsKmsProvider({ client, keyId: ARN });
    await expect(
      provider.wrap(Kek.generate(), { ...ctx, encryptionContext: { 'kms-envelope:index': 'other' } }),
    ).rejects.toThrow(/reserved/);
  });

  it('rotate within the slot uses ReEncrypt: no Decrypt, no Encrypt, the KEK never leaves KMS', async () => {
    const { client, mock } = kmsClient();
    mock.on(EncryptCommand).resolves({ CiphertextBlob: new Uint8Array([1, 1]), KeyId: ARN });
    mock
      .on(ReEncryptCommand)
      .resolves({ CiphertextBlob: new Uint8Array([2, 2]), KeyId: OTHER_ARN, SourceKeyId: ARN });
    const envelopes = new KmsEnvelopeClient({
      store: StorageConfig.memory(),
      kms: { slots: { 'prod-kms': { provider: 'aws-kms', keyId: 'alias/orders', options: { client } } } },
    });
    await envelopes.createIndex('orders', { slot: 'prod-kms', encryptionContext: { tenant: 't1' } });
    const rotated = await envelopes.rotate('orders');
    expect(rotated).toMatchObject({ version: 2, keyId: OTHER_ARN, wrappedKek: new Uint8Array([2, 2]) });
    expect(mock.commandCalls(DecryptCommand)).toHaveLength(0);
    expect(mock.commandCalls(EncryptCommand)).toHaveLength(1); // the create
    const input = mock.commandCalls(ReEncryptCommand)[0]!.args[0].input;
    expect(input).toMatchObject({
      SourceKeyId: ARN,
      DestinationKeyId: 'alias/orders',
      SourceEncryptionContext: sentContext,
      DestinationEncryptionContext: sentContext,
    });
    expect((await envelopes.getEnvelope('orders')).version).toBe(2);
    await envelopes.close();
  });

  it('a slot without key_id is a ConfigError naming the slot', async () => {
    const envelopes = new KmsEnvelopeClient({
      store: StorageConfig.memory(),
      kms: { slots: { s: { provider: 'aws-kms', region: 'eu-west-1' } } },
    });
    await expect(envelopes.createIndex('i', { slot: 's' })).rejects.toThrow(ConfigError);
    await expect(envelopes.createIndex('i', { slot: 's' })).rejects.toThrow(/needs "key_id".*slot "s"/);
  });
});
