// The fake AWS server itself: routing, recording, the wire details the SDK relies on, and faults.
import {
  CreateKeyCommand,
  DescribeKeyCommand,
  EncryptCommand,
  KMSClient,
  KMSInternalException,
  KMSServiceException,
  ListKeysCommand,
} from '@aws-sdk/client-kms';
import {
  GetSecretValueCommand,
  SecretsManagerClient,
  SecretsManagerServiceException,
} from '@aws-sdk/client-secrets-manager';
import {
  AssumeRoleCommand,
  GetCallerIdentityCommand,
  STSClient,
  STSServiceException,
} from '@aws-sdk/client-sts';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { FAKE_AWS_ACCESS_KEY_ID, type FakeAws, startFakeAws } from '../../src/testing/fake-aws.js';
import * as testing from '../../src/testing/index.js';

let aws: FakeAws;
let kms: KMSClient;
let secrets: SecretsManagerClient;
let sts: STSClient;

beforeAll(async () => {
  aws = await startFakeAws();
  kms = new KMSClient(aws.clientConfig());
  secrets = new SecretsManagerClient(aws.clientConfig());
  sts = new STSClient(aws.clientConfig());
});

afterEach(() => {
  aws.throttleNext(0);
  aws.dropNext(0);
  aws.failNext(0, { status: 500, type: 'x' });
  aws.delay(0);
});

afterAll(async () => {
  for (const client of [kms, secrets, sts]) client.destroy();
  await aws.close();
});

async function rejection(
  promise: Promise<unknown>,
): Promise<Error & { $metadata?: { httpStatusCode?: number } }> {
  return promise.then(
    () => expect.fail('expected the call to fail'),
    (caught: unknown) => caught as Error,
  );
}

/** The `__type` of a JSON 1.1 error answer. */
const errorType = async (response: Response) => ((await response.json()) as { __type?: string }).__type;

const encrypt = (keyId: string) =>
  kms.send(new EncryptCommand({ KeyId: keyId, Plaintext: Buffer.alloc(32, 9) }));

it('is exported from kms-envelope/testing', () => {
  expect(testing.startFakeAws).toBe(startFakeAws);
  expect(testing.FAKE_AWS_ACCESS_KEY_ID).toBe(FAKE_AWS_ACCESS_KEY_ID);
});

describe('the server', () => {
  it('listens on 127.0.0.1 and hands out a client config with dummy credentials and one attempt', () => {
    expect(aws.endpoint).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(aws.region).toBe('us-east-1');
    expect(aws.accountId).toBe('111122223333');
    expect(aws.clientConfig()).toEqual({
      endpoint: aws.endpoint,
      region: 'us-east-1',
      credentials: { accessKeyId: FAKE_AWS_ACCESS_KEY_ID, secretAccessKey: expect.any(String) },
      maxAttempts: 1,
    });
    const own = { accessKeyId: 'AKIAOWN0000000000001', secretAccessKey: 's', sessionToken: 't' };
    expect(aws.clientConfig(own).credentials).toEqual(own);
  });

  it('records every request with its service, operation and the signing access key id', async () => {
    const { keyId } = aws.createKey();
    aws.putSecret('recorded', 'v');
    const before = aws.requests.length;
    const counts = {
      kms: aws.calls('kms'),
      secretsmanager: aws.calls('secretsmanager'),
      sts: aws.calls('sts'),
    };
    const other = new KMSClient(
      aws.clientConfig({ accessKeyId: 'AKIAOTHERCALLER00001', secretAccessKey: 'x' }),
    );
    await encrypt(keyId);
    await other.send(new DescribeKeyCommand({ KeyId: keyId }));
    other.destroy();
    await secrets.send(new GetSecretValueCommand({ SecretId: 'recorded' }));
    await sts.send(new GetCallerIdentityCommand({}));
    expect(aws.requests.slice(before)).toEqual([
      { service: 'kms', operation: 'Encrypt', accessKeyId: FAKE_AWS_ACCESS_KEY_ID, region: 'us-east-1' },
      { service: 'kms', operation: 'DescribeKey', accessKeyId: 'AKIAOTHERCALLER00001', region: 'us-east-1' },
      {
        service: 'secretsmanager',
        operation: 'GetSecretValue',
        accessKeyId: FAKE_AWS_ACCESS_KEY_ID,
        region: 'us-east-1',
      },
      {
        service: 'sts',
        operation: 'GetCallerIdentity',
        accessKeyId: FAKE_AWS_ACCESS_KEY_ID,
        region: 'us-east-1',
      },
    ]);
    expect(aws.calls('kms')).toBe(counts.kms + 2);
    expect(aws.calls('secretsmanager')).toBe(counts.secretsmanager + 1);
    expect(aws.calls('sts')).toBe(counts.sts + 1);
    expect(aws.calls()).toBe(aws.requests.length);
    // `requests` is a copy: the caller cannot rewrite the record.
    (aws.requests as unknown[]).length = 0;
    expect(aws.requests.length).toBeGreaterThan(0);
  });

  it('speaks JSON 1.1 on the wire: content type, request id, `__type` errors; unsigned and unknown requests fail', async () => {
    const post = (headers: Record<string, string>, body: string) =>
      fetch(aws.endpoint, { method: 'POST', headers, body });
    const signed = {
      'content-type': 'application/x-amz-json-1.1',
      authorization: `AWS4-HMAC-SHA256 Credential=${FAKE_AWS_ACCESS_KEY_ID}/20260101/us-east-1/kms/aws4_request, SignedHeaders=host, Signature=00`,
    };
    const ok = await post({ ...signed, 'x-amz-target': 'TrentService.ListKeys' }, '{}');
    expect(ok.status).toBe(200);
    expect(ok.headers.get('content-type')).toBe('application/x-amz-json-1.1');
    expect(ok.headers.get('x-amzn-requestid')).toMatch(/^[0-9a-f-]{36}$/);
    expect(await ok.json()).toMatchObject({ Truncated: false });

    const notFound = await post(
      { ...signed, 'x-amz-target': 'TrentService.DescribeKey' },
      '{"KeyId":"alias/nope"}',
    );
    expect(notFound.status).toBe(400);
    expect(await notFound.json()).toEqual({
      __type: 'NotFoundException',
      message: expect.stringContaining('alias/nope'),
    });

    const unsigned = await post({ 'x-amz-target': 'TrentService.ListKeys' }, '{}');
    expect(unsigned.status).toBe(400);
    expect(await errorType(unsigned)).toBe('MissingAuthenticationTokenException');
    expect(aws.requests.at(-1)).toMatchObject({
      service: 'kms',
      operation: 'ListKeys',
      accessKeyId: undefined,
    });

    const malformed = await post({ ...signed, 'x-amz-target': 'TrentService.ListKeys' }, '{not json');
    expect(await errorType(malformed)).toBe('SerializationException');
    const unknownOperation = await post({ ...signed, 'x-amz-target': 'TrentService.Sign' }, '{}');
    expect(await errorType(unknownOperation)).toBe('UnknownOperationException');
    const unknownService = await post({ ...signed, 'x-amz-target': 'DynamoDB_20120810.GetItem' }, '{}');
    expect(await errorType(unknownService)).toBe('UnknownOperationException');
    expect(aws.requests.at(-1)).toMatchObject({ service: 'unknown' });

    const stsUnknown = await post(
      { ...signed, 'content-type': 'application/x-www-form-urlencoded' },
      'Action=GetSessionToken&Version=2011-06-15',
    );
    expect(stsUnknown.status).toBe(400);
    expect(stsUnknown.headers.get('content-type')).toBe('text/xml');
    expect(await stsUnknown.text()).toMatch(
      /^<ErrorResponse xmlns="https:\/\/sts\.amazonaws\.com\/doc\/2011-06-15\/"><Error><Type>Sender<\/Type><Code>InvalidAction<\/Code>/,
    );
  });
});

describe('faults', () => {
  it('throttleNext: KMS and Secrets Manager answer ThrottlingException, STS Throttling, then recover', async () => {
    const { keyId } = aws.createKey();
    aws.putSecret('throttled', 'v');
    aws.throttleNext(2, 'kms');
    for (let i = 0; i < 2; i++) {
      const error = await rejection(encrypt(keyId));
      expect(error).toBeInstanceOf(KMSServiceException);
      expect(error.name).toBe('ThrottlingException');
      expect(error.$metadata?.httpStatusCode).toBe(400);
    }
    await expect(encrypt(keyId)).resolves.toBeDefined();

    aws.throttleNext(1, 'secretsmanager');
    await expect(encrypt(keyId)).resolves.toBeDefined(); // another service's calls do not use it up
    const smError = await rejection(secrets.send(new GetSecretValueCommand({ SecretId: 'throttled' })));
    expect(smError).toBeInstanceOf(SecretsManagerServiceException);
    expect(smError.name).toBe('ThrottlingException');

    aws.throttleNext(1); // any service
    const stsError = await rejection(sts.send(new GetCallerIdentityCommand({})));
    expect(stsError).toBeInstanceOf(STSServiceException);
    expect(stsError.name).toBe('Throttling');
    expect(stsError.$metadata?.httpStatusCode).toBe(400);
    await expect(sts.send(new GetCallerIdentityCommand({}))).resolves.toBeDefined();

    aws.throttleNext(100, 'kms');
    await rejection(encrypt(keyId));
    aws.throttleNext(0, 'kms');
    await expect(encrypt(keyId)).resolves.toBeDefined();
  });

  it('the SDK itself sees the throttling as retryable: with two attempts it retries and succeeds', async () => {
    const { keyId } = aws.createKey();
    const retrying = new KMSClient({ ...aws.clientConfig(), maxAttempts: 2 });
    try {
      aws.throttleNext(1, 'kms');
      const before = aws.calls('kms');
      const out = await retrying.send(new EncryptCommand({ KeyId: keyId, Plaintext: Buffer.alloc(1) }));
      expect(out.$metadata.attempts).toBe(2);
      expect(aws.calls('kms') - before).toBe(2);
    } finally {
      retrying.destroy();
    }
  });

  it('failNext answers the given error in the service protocol, the given number of times', async () => {
    const { keyId } = aws.createKey();
    aws.failNext(2, { status: 500, type: 'KMSInternalException', message: 'boom' }, 'kms');
    for (let i = 0; i < 2; i++) {
      const error = await rejection(encrypt(keyId));
      expect(error).toBeInstanceOf(KMSInternalException);
      expect(error.message).toBe('boom');
      expect(error.$metadata?.httpStatusCode).toBe(500);
    }
    await expect(encrypt(keyId)).resolves.toBeDefined();

    aws.failNext(1, { status: 503, type: 'ServiceUnavailable', message: 'down' }, 'sts');
    const stsError = await rejection(
      sts.send(new AssumeRoleCommand({ RoleArn: 'arn:aws:iam::111122223333:role/r', RoleSessionName: 'ss' })),
    );
    expect(stsError).toBeInstanceOf(STSServiceException);
    expect(stsError.name).toBe('ServiceUnavailable');
    expect((stsError as STSServiceException).$fault).toBe('server');
    expect(stsError.$metadata?.httpStatusCode).toBe(503);

    aws.failNext(5, { status: 400, type: 'AccessDeniedException' }, 'secretsmanager');
    aws.failNext(0, { status: 400, type: 'ignored' }, 'secretsmanager'); // clears the pending ones
    aws.putSecret('after-clear', 'v');
    await expect(secrets.send(new GetSecretValueCommand({ SecretId: 'after-clear' }))).resolves.toBeDefined();
  });

  it('dropNext resets the connection without an answer; the next call works', async () => {
    const { keyId } = aws.createKey();
    aws.dropNext(1, 'kms');
    const before = aws.calls('kms');
    const error = await rejection(encrypt(keyId));
    expect(error).not.toBeInstanceOf(KMSServiceException);
    expect(aws.calls('kms')).toBe(before + 1);
    await expect(encrypt(keyId)).resolves.toBeDefined();
  });

  it('delay holds answers; a call aborted by its signal rejects, and the fake does not carry it out', async () => {
    const keysBefore = (await kms.send(new ListKeysCommand({ Limit: 1000 }))).Keys!.length;
    aws.delay(300);
    const controller = new AbortController();
    const pending = kms.send(new CreateKeyCommand({}), { abortSignal: controller.signal });
    setTimeout(() => controller.abort(), 20);
    const error = await rejection(pending);
    expect(error.name).toBe('AbortError');
    await new Promise((resolve) => setTimeout(resolve, 500)); // past the delay
    aws.delay(0);
    expect((await kms.send(new ListKeysCommand({ Limit: 1000 }))).Keys!).toHaveLength(keysBefore);

    aws.delay(50);
    const created = await kms.send(new CreateKeyCommand({}));
    expect(created.KeyMetadata!.KeyState).toBe('Enabled');
  });

  it('close() ends calls that are held by a delay, and is idempotent', async () => {
    const other = await startFakeAws();
    const client = new KMSClient(other.clientConfig());
    try {
      other.delay(60_000);
      const pending = client.send(new ListKeysCommand({}));
      await new Promise((resolve) => setTimeout(resolve, 20));
      await other.close();
      await other.close();
      const error = await rejection(pending);
      expect(error).not.toBeInstanceOf(KMSServiceException);
      await expect(fetch(other.endpoint, { method: 'POST' })).rejects.toThrow();
    } finally {
      client.destroy();
    }
  });
});
