// The fake STS driven by the plain @aws-sdk/client-sts and @aws-sdk/credential-providers.
import { DecryptCommand, EncryptCommand, KMSClient, KMSServiceException } from '@aws-sdk/client-kms';
import {
  AssumeRoleCommand,
  type Credentials,
  ExpiredTokenException,
  GetCallerIdentityCommand,
  STSClient,
  STSServiceException,
} from '@aws-sdk/client-sts';
import { fromTemporaryCredentials } from '@aws-sdk/credential-providers';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { FAKE_AWS_ACCESS_KEY_ID, type FakeAws, startFakeAws } from '../../src/testing/fake-aws.js';

const ROLE = 'arn:aws:iam::444455556666:role/kms-envelope/byok';
const EXTERNAL_ID = 'tenant-7f3a';

let aws: FakeAws;
let sts: STSClient;

beforeAll(async () => {
  aws = await startFakeAws();
  sts = new STSClient(aws.clientConfig());
  aws.allowRole(ROLE, EXTERNAL_ID);
});

afterAll(async () => {
  sts.destroy();
  await aws.close();
});

afterEach(() => {
  vi.useRealTimers();
});

async function rejection<T extends Error>(
  promise: Promise<unknown>,
  base: abstract new (...args: never[]) => T,
): Promise<T> {
  const error = await promise.then(
    () => expect.fail('expected the call to fail'),
    (caught: unknown) => caught,
  );
  expect(error).toBeInstanceOf(base);
  return error as T;
}

function clientCredentials(credentials: Credentials) {
  return {
    accessKeyId: credentials.AccessKeyId!,
    secretAccessKey: credentials.SecretAccessKey!,
    sessionToken: credentials.SessionToken!,
  };
}

async function assume(sessionName = 'kms-envelope', durationSeconds?: number): Promise<Credentials> {
  const out = await sts.send(
    new AssumeRoleCommand({
      RoleArn: ROLE,
      RoleSessionName: sessionName,
      ExternalId: EXTERNAL_ID,
      DurationSeconds: durationSeconds,
    }),
  );
  return out.Credentials!;
}

describe('AssumeRole', () => {
  it('with the right external id: fresh ASIA credentials, an hour by default, the assumed-role user', async () => {
    const before = aws.issuedCredentials(ROLE).length;
    const out = await sts.send(
      new AssumeRoleCommand({ RoleArn: ROLE, RoleSessionName: 'first', ExternalId: EXTERNAL_ID }),
    );
    const credentials = out.Credentials!;
    expect(credentials.AccessKeyId).toMatch(/^ASIA[A-Z2-7]{16}$/);
    expect(credentials.SecretAccessKey).toHaveLength(40);
    expect(credentials.SessionToken!.length).toBeGreaterThan(40);
    expect(credentials.Expiration).toBeInstanceOf(Date);
    expect(credentials.Expiration!.getTime()).toBeGreaterThan(Date.now() + 59 * 60_000);
    expect(credentials.Expiration!.getTime()).toBeLessThanOrEqual(Date.now() + 3600_000);
    expect(out.AssumedRoleUser!.Arn).toBe('arn:aws:sts::444455556666:assumed-role/byok/first');
    expect(out.AssumedRoleUser!.AssumedRoleId).toMatch(/^AROA[A-Z2-7]{16}:first$/);
    expect(aws.issuedCredentials(ROLE)).toHaveLength(before + 1);
    expect(aws.issuedCredentials(ROLE).at(-1)).toBe(credentials.AccessKeyId);
    const second = await assume('second');
    expect(second.AccessKeyId).not.toBe(credentials.AccessKeyId);
    expect(aws.issuedCredentials('arn:aws:iam::444455556666:role/unknown')).toEqual([]);
  });

  it('a wrong or missing external id, or a role not allowed, is AccessDenied (HTTP 403, Sender)', async () => {
    const before = aws.issuedCredentials(ROLE).length;
    for (const input of [
      { RoleArn: ROLE, RoleSessionName: 's', ExternalId: 'wrong' },
      { RoleArn: ROLE, RoleSessionName: 's' },
      { RoleArn: 'arn:aws:iam::444455556666:role/other', RoleSessionName: 's', ExternalId: EXTERNAL_ID },
    ]) {
      const error = await rejection(
        sts.send(new AssumeRoleCommand({ ...input, RoleSessionName: 'denied' })),
        STSServiceException,
      );
      expect(error.name).toBe('AccessDenied');
      expect(error.$fault).toBe('client');
      expect(error.$metadata.httpStatusCode).toBe(403);
      expect(error.message).toContain(`sts:AssumeRole on resource: ${input.RoleArn}`);
      expect(error.message).toContain(`user/${FAKE_AWS_ACCESS_KEY_ID}`);
    }
    expect(aws.issuedCredentials(ROLE)).toHaveLength(before);
  });

  it('validates the session name and DurationSeconds; honours DurationSeconds', async () => {
    for (const input of [
      { RoleSessionName: 'x' },
      { RoleSessionName: 'has space' },
      { RoleSessionName: 'ok', DurationSeconds: 60 },
    ]) {
      const error = await rejection(
        sts.send(new AssumeRoleCommand({ RoleArn: ROLE, ExternalId: EXTERNAL_ID, ...input })),
        STSServiceException,
      );
      expect(error.name).toBe('ValidationError');
      expect(error.$metadata.httpStatusCode).toBe(400);
    }
    const short = await assume('short', 900);
    expect(short.Expiration!.getTime()).toBeLessThanOrEqual(Date.now() + 900_000);
    expect(short.Expiration!.getTime()).toBeGreaterThan(Date.now() + 800_000);
  });

  it('allowRole rejects what is not a role ARN', () => {
    expect(() => aws.allowRole('arn:aws:iam::444455556666:user/bob', 'x')).toThrow(/not a role ARN/);
  });
});

describe('temporary credentials at the other services', () => {
  it('a KMS call signed with them is recorded with the new access key id; GetCallerIdentity names the session', async () => {
    const credentials = await assume('recorded');
    const { keyId } = aws.createKey();
    const kms = new KMSClient(aws.clientConfig(clientCredentials(credentials)));
    try {
      await kms.send(new EncryptCommand({ KeyId: keyId, Plaintext: Buffer.alloc(32, 1) }));
      expect(aws.requests.at(-1)).toMatchObject({
        service: 'kms',
        operation: 'Encrypt',
        accessKeyId: credentials.AccessKeyId,
      });
    } finally {
      kms.destroy();
    }
    const assumed = new STSClient(aws.clientConfig(clientCredentials(credentials)));
    try {
      const identity = await assumed.send(new GetCallerIdentityCommand({}));
      expect(identity).toMatchObject({
        Account: '444455556666',
        Arn: 'arn:aws:sts::444455556666:assumed-role/byok/recorded',
      });
      expect(identity.UserId).toMatch(/:recorded$/);
    } finally {
      assumed.destroy();
    }
    const identity = await sts.send(new GetCallerIdentityCommand({}));
    expect(identity).toMatchObject({
      Account: '111122223333',
      Arn: `arn:aws:iam::111122223333:user/${FAKE_AWS_ACCESS_KEY_ID}`,
    });
  });

  it('a key restricted to the role ARN admits its sessions and refuses the static caller', async () => {
    const credentials = await assume('restricted');
    const { keyId } = aws.createKey();
    aws.restrictKey(keyId, [ROLE]);
    const asRole = new KMSClient(aws.clientConfig(clientCredentials(credentials)));
    const asUser = new KMSClient(aws.clientConfig());
    try {
      const out = await asRole.send(new EncryptCommand({ KeyId: keyId, Plaintext: Buffer.alloc(32, 2) }));
      const error = await rejection(
        asUser.send(new DecryptCommand({ CiphertextBlob: out.CiphertextBlob })),
        KMSServiceException,
      );
      expect(error.name).toBe('AccessDeniedException');
    } finally {
      asRole.destroy();
      asUser.destroy();
    }
  });

  it('a wrong or missing session token is refused; expired credentials are ExpiredTokenException', async () => {
    const credentials = await assume('token-checks');
    const { keyId } = aws.createKey();
    for (const sessionToken of ['forged', undefined]) {
      const kms = new KMSClient(aws.clientConfig({ ...clientCredentials(credentials), sessionToken }));
      try {
        const error = await rejection(
          kms.send(new EncryptCommand({ KeyId: keyId, Plaintext: Buffer.alloc(1) })),
          KMSServiceException,
        );
        expect(error.name).toBe('UnrecognizedClientException');
      } finally {
        kms.destroy();
      }
    }
    const forgedSts = new STSClient(
      aws.clientConfig({ ...clientCredentials(credentials), sessionToken: 'forged' }),
    );
    expect(
      (await rejection(forgedSts.send(new GetCallerIdentityCommand({})), STSServiceException)).name,
    ).toBe('InvalidClientTokenId');
    forgedSts.destroy();

    // Two hours later (only Date is faked: sockets and timers run as usual).
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(Date.now() + 2 * 3600_000);
    const kms = new KMSClient(aws.clientConfig(clientCredentials(credentials)));
    const assumed = new STSClient(aws.clientConfig(clientCredentials(credentials)));
    try {
      const error = await rejection(
        kms.send(new EncryptCommand({ KeyId: keyId, Plaintext: Buffer.alloc(1) })),
        KMSServiceException,
      );
      expect(error.name).toBe('ExpiredTokenException');
      expect(error.$metadata.httpStatusCode).toBe(400);
      await rejection(assumed.send(new GetCallerIdentityCommand({})), ExpiredTokenException);
    } finally {
      kms.destroy();
      assumed.destroy();
    }
  });

  it("@aws-sdk/credential-providers' fromTemporaryCredentials assumes the role at the fake and signs with the result", async () => {
    const { keyId } = aws.createKey();
    aws.restrictKey(keyId, [ROLE]);
    const before = aws.issuedCredentials(ROLE).length;
    const config = aws.clientConfig();
    const kms = new KMSClient({
      ...config,
      credentials: fromTemporaryCredentials({
        params: { RoleArn: ROLE, ExternalId: EXTERNAL_ID, RoleSessionName: 'kms-envelope-provider' },
        clientConfig: { endpoint: config.endpoint, region: config.region, maxAttempts: 1 },
        masterCredentials: { accessKeyId: FAKE_AWS_ACCESS_KEY_ID, secretAccessKey: 'dummy' },
      }),
    });
    try {
      const out = await kms.send(new EncryptCommand({ KeyId: keyId, Plaintext: Buffer.alloc(32, 3) }));
      await kms.send(new DecryptCommand({ CiphertextBlob: out.CiphertextBlob }));
      const issued = aws.issuedCredentials(ROLE);
      expect(issued).toHaveLength(before + 1); // cached for the second call
      const recent = aws.requests.slice(-3);
      expect(recent).toEqual([
        { service: 'sts', operation: 'AssumeRole', accessKeyId: FAKE_AWS_ACCESS_KEY_ID, region: 'us-east-1' },
        { service: 'kms', operation: 'Encrypt', accessKeyId: issued.at(-1), region: 'us-east-1' },
        { service: 'kms', operation: 'Decrypt', accessKeyId: issued.at(-1), region: 'us-east-1' },
      ]);
    } finally {
      kms.destroy();
    }
  });

  it('fromTemporaryCredentials with a wrong external id surfaces AccessDenied to the KMS call', async () => {
    const config = aws.clientConfig();
    const kms = new KMSClient({
      ...config,
      credentials: fromTemporaryCredentials({
        params: { RoleArn: ROLE, ExternalId: 'wrong', RoleSessionName: 'kms-envelope-provider' },
        clientConfig: { endpoint: config.endpoint, region: config.region, maxAttempts: 1 },
        masterCredentials: { accessKeyId: FAKE_AWS_ACCESS_KEY_ID, secretAccessKey: 'dummy' },
      }),
    });
    try {
      const error = await kms
        .send(new EncryptCommand({ KeyId: aws.createKey().keyId, Plaintext: Buffer.alloc(1) }))
        .then(
          () => expect.fail('expected AccessDenied'),
          (caught: unknown) => caught as Error,
        );
      expect(error.name).toBe('AccessDenied');
      expect(aws.requests.at(-1)).toMatchObject({ service: 'sts', operation: 'AssumeRole' });
    } finally {
      kms.destroy();
    }
  });

  it('a forced short lifetime makes fromTemporaryCredentials assume the role again', async () => {
    const role = 'arn:aws:iam::444455556666:role/short-lived';
    aws.allowRole(role, EXTERNAL_ID, { durationSeconds: 1 });
    const { keyId } = aws.createKey();
    const config = aws.clientConfig();
    const kms = new KMSClient({
      ...config,
      credentials: fromTemporaryCredentials({
        params: { RoleArn: role, ExternalId: EXTERNAL_ID, RoleSessionName: 'short' },
        clientConfig: { endpoint: config.endpoint, region: config.region, maxAttempts: 1 },
        masterCredentials: { accessKeyId: FAKE_AWS_ACCESS_KEY_ID, secretAccessKey: 'dummy' },
      }),
    });
    try {
      await kms.send(new EncryptCommand({ KeyId: keyId, Plaintext: Buffer.alloc(1) }));
      await kms.send(new EncryptCommand({ KeyId: keyId, Plaintext: Buffer.alloc(1) }));
      // Credentials within the SDK's refresh window are renewed before use (the SDK may assume
      // more than once a call): each call is signed with a fresh session of the role.
      const issued = aws.issuedCredentials(role);
      expect(issued.length).toBeGreaterThanOrEqual(2);
      const signers = aws.requests.filter((request) => request.operation === 'Encrypt').slice(-2);
      expect(signers[0]!.accessKeyId).not.toBe(signers[1]!.accessKeyId);
      for (const signer of signers) expect(issued).toContain(signer.accessKeyId);
    } finally {
      kms.destroy();
    }
  });
});
