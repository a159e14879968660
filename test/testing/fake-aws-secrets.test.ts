// The fake Secrets Manager driven by the plain @aws-sdk/client-secrets-manager.
import {
  CreateSecretCommand,
  DeleteSecretCommand,
  DescribeSecretCommand,
  GetSecretValueCommand,
  InvalidParameterException,
  InvalidRequestException,
  PutSecretValueCommand,
  ResourceExistsException,
  ResourceNotFoundException,
  RestoreSecretCommand,
  SecretsManagerClient,
  SecretsManagerServiceException,
} from '@aws-sdk/client-secrets-manager';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type FakeAws, startFakeAws } from '../../src/testing/fake-aws.js';

let aws: FakeAws;
let secrets: SecretsManagerClient;

beforeAll(async () => {
  aws = await startFakeAws();
  secrets = new SecretsManagerClient(aws.clientConfig());
});

afterAll(async () => {
  secrets.destroy();
  await aws.close();
});

async function rejection(promise: Promise<unknown>): Promise<SecretsManagerServiceException> {
  const error = await promise.then(
    () => expect.fail('expected the call to fail'),
    (caught: unknown) => caught,
  );
  expect(error).toBeInstanceOf(SecretsManagerServiceException);
  return error as SecretsManagerServiceException;
}

const ARN = /^arn:aws:secretsmanager:us-east-1:111122223333:secret:(.+)-[A-Za-z0-9]{6}$/;

describe('values', () => {
  it('binary and string secrets come back as SecretBinary / SecretString, by name and by ARN', async () => {
    const kek = Buffer.alloc(32, 0xab);
    const binary = aws.putSecret('app/kek', kek);
    expect(binary.arn).toMatch(ARN);
    expect(ARN.exec(binary.arn)![1]).toBe('app/kek');
    const text = aws.putSecret('app/password', 'hunter2');
    for (const secretId of ['app/kek', binary.arn]) {
      const out = await secrets.send(new GetSecretValueCommand({ SecretId: secretId }));
      expect(out).toMatchObject({
        ARN: binary.arn,
        Name: 'app/kek',
        VersionId: binary.versionId,
        VersionStages: ['AWSCURRENT'],
      });
      expect(Buffer.from(out.SecretBinary!)).toEqual(kek);
      expect(out.SecretString).toBeUndefined();
      expect(out.CreatedDate).toBeInstanceOf(Date);
    }
    const out = await secrets.send(new GetSecretValueCommand({ SecretId: text.arn }));
    expect(out.SecretString).toBe('hunter2');
    expect(out.SecretBinary).toBeUndefined();
    // A partial ARN (without the random suffix) also names the secret.
    const partial = await secrets.send(
      new GetSecretValueCommand({
        SecretId: 'arn:aws:secretsmanager:us-east-1:111122223333:secret:app/password',
      }),
    );
    expect(partial.ARN).toBe(text.arn);
  });

  it('the value given to putSecret is copied (changing the caller buffer does not change the secret)', async () => {
    const value = Buffer.alloc(32, 1);
    aws.putSecret('copied', value);
    value.fill(0);
    const out = await secrets.send(new GetSecretValueCommand({ SecretId: 'copied' }));
    expect(Buffer.from(out.SecretBinary!)).toEqual(Buffer.alloc(32, 1));
  });

  it('an unknown secret, version or stage is ResourceNotFoundException (HTTP 400)', async () => {
    aws.putSecret('known', 'v');
    for (const input of [
      { SecretId: 'unknown' },
      { SecretId: 'arn:aws:secretsmanager:us-east-1:111122223333:secret:unknown-abcdef' },
      { SecretId: 'arn:aws:secretsmanager:eu-west-1:111122223333:secret:known' },
      { SecretId: 'known', VersionId: '00000000-0000-0000-0000-000000000000' },
      { SecretId: 'known', VersionStage: 'AWSPREVIOUS' },
    ]) {
      const error = await rejection(secrets.send(new GetSecretValueCommand(input)));
      expect(error).toBeInstanceOf(ResourceNotFoundException);
      expect(error.$metadata.httpStatusCode).toBe(400);
    }
  });
});

describe('versions and stages', () => {
  it('each put makes a version: AWSCURRENT moves, the old current becomes AWSPREVIOUS, older ones lose their label', async () => {
    const first = aws.putSecret('rotating', 'one');
    const second = aws.putSecret('rotating', 'two');
    const third = await secrets.send(
      new PutSecretValueCommand({ SecretId: 'rotating', SecretString: 'three' }),
    );
    expect(new Set([first.versionId, second.versionId, third.VersionId]).size).toBe(3);
    expect(third.VersionId).toMatch(/^[0-9a-f-]{36}$/);
    expect(third.VersionStages).toEqual(['AWSCURRENT']);

    const value = async (input: { VersionId?: string; VersionStage?: string }) =>
      (await secrets.send(new GetSecretValueCommand({ SecretId: 'rotating', ...input }))).SecretString;
    expect(await value({})).toBe('three');
    expect(await value({ VersionStage: 'AWSCURRENT' })).toBe('three');
    expect(await value({ VersionStage: 'AWSPREVIOUS' })).toBe('two');
    // A version without a label is still readable by its id.
    expect(await value({ VersionId: first.versionId })).toBe('one');
    expect(await value({ VersionId: second.versionId, VersionStage: 'AWSPREVIOUS' })).toBe('two');
    expect(
      await rejection(
        secrets.send(
          new GetSecretValueCommand({
            SecretId: 'rotating',
            VersionId: first.versionId,
            VersionStage: 'AWSCURRENT',
          }),
        ),
      ),
    ).toBeInstanceOf(InvalidRequestException);

    // A version staged under another label leaves AWSCURRENT where it is.
    const pending = await secrets.send(
      new PutSecretValueCommand({
        SecretId: 'rotating',
        SecretString: 'four',
        VersionStages: ['AWSPENDING'],
      }),
    );
    expect(await value({})).toBe('three');
    expect(await value({ VersionStage: 'AWSPENDING' })).toBe('four');

    const described = await secrets.send(new DescribeSecretCommand({ SecretId: 'rotating' }));
    expect(described.VersionIdsToStages).toEqual({
      [second.versionId]: ['AWSPREVIOUS'],
      [third.VersionId!]: ['AWSCURRENT'],
      [pending.VersionId!]: ['AWSPENDING'],
    });
    expect(described.Name).toBe('rotating');
    expect(described.LastChangedDate).toBeInstanceOf(Date);
  });

  it('CreateSecret over the wire; ClientRequestToken makes puts idempotent; a reused token with another value fails', async () => {
    const created = await secrets.send(
      new CreateSecretCommand({ Name: 'by-sdk', SecretBinary: Buffer.from([1, 2, 3]), Description: 'd' }),
    );
    expect(created.ARN).toMatch(ARN);
    expect(created.VersionId).toBeDefined();
    expect(
      await rejection(secrets.send(new CreateSecretCommand({ Name: 'by-sdk', SecretString: 'x' }))),
    ).toBeInstanceOf(ResourceExistsException);
    const token = '11111111-2222-3333-4444-555555555555';
    const put = await secrets.send(
      new PutSecretValueCommand({ SecretId: 'by-sdk', SecretString: 'x', ClientRequestToken: token }),
    );
    expect(put.VersionId).toBe(token);
    const again = await secrets.send(
      new PutSecretValueCommand({ SecretId: 'by-sdk', SecretString: 'x', ClientRequestToken: token }),
    );
    expect(again.VersionId).toBe(token);
    expect(
      await rejection(
        secrets.send(
          new PutSecretValueCommand({ SecretId: 'by-sdk', SecretString: 'y', ClientRequestToken: token }),
        ),
      ),
    ).toBeInstanceOf(ResourceExistsException);
    expect(
      await rejection(
        secrets.send(
          new PutSecretValueCommand({
            SecretId: 'by-sdk',
            SecretString: 'y',
            SecretBinary: Buffer.from([1]),
          }),
        ),
      ),
    ).toBeInstanceOf(InvalidParameterException);
    const described = await secrets.send(new DescribeSecretCommand({ SecretId: created.ARN }));
    expect(described.Description).toBe('d');
    expect(described.VersionIdsToStages![token]).toEqual(['AWSCURRENT']);
    expect(described.VersionIdsToStages![created.VersionId!]).toEqual(['AWSPREVIOUS']);
  });

  it('a secret created without a value has no AWSCURRENT to read', async () => {
    await secrets.send(new CreateSecretCommand({ Name: 'empty' }));
    expect(await rejection(secrets.send(new GetSecretValueCommand({ SecretId: 'empty' })))).toBeInstanceOf(
      ResourceNotFoundException,
    );
  });
});

describe('deletion and access', () => {
  it('a secret scheduled for deletion (handle or DeleteSecret) is InvalidRequestException until restored', async () => {
    aws.putSecret('doomed', 'v');
    aws.deleteSecret('doomed');
    for (const call of [
      secrets.send(new GetSecretValueCommand({ SecretId: 'doomed' })),
      secrets.send(new PutSecretValueCommand({ SecretId: 'doomed', SecretString: 'w' })),
      secrets.send(new CreateSecretCommand({ Name: 'doomed', SecretString: 'w' })),
    ]) {
      const error = await rejection(call);
      expect(error).toBeInstanceOf(InvalidRequestException);
      expect(error.$metadata.httpStatusCode).toBe(400);
    }
    const described = await secrets.send(new DescribeSecretCommand({ SecretId: 'doomed' }));
    expect(described.DeletedDate).toBeInstanceOf(Date);
    expect(() => aws.putSecret('doomed', 'w')).toThrow(/marked for deletion/);
    await secrets.send(new RestoreSecretCommand({ SecretId: 'doomed' }));
    expect((await secrets.send(new GetSecretValueCommand({ SecretId: 'doomed' }))).SecretString).toBe('v');

    const deleted = await secrets.send(
      new DeleteSecretCommand({ SecretId: 'doomed', RecoveryWindowInDays: 7 }),
    );
    expect(deleted.DeletionDate!.getTime()).toBeGreaterThan(Date.now() + 6 * 86_400_000);
    expect(await rejection(secrets.send(new GetSecretValueCommand({ SecretId: 'doomed' })))).toBeInstanceOf(
      InvalidRequestException,
    );
    await secrets.send(new RestoreSecretCommand({ SecretId: 'doomed' }));
    await secrets.send(new DeleteSecretCommand({ SecretId: 'doomed', ForceDeleteWithoutRecovery: true }));
    expect(await rejection(secrets.send(new GetSecretValueCommand({ SecretId: 'doomed' })))).toBeInstanceOf(
      ResourceNotFoundException,
    );
    expect(() => aws.deleteSecret('never-was')).toThrow(/No secret/);
  });

  it('restrictSecret admits only the listed access key ids', async () => {
    aws.putSecret('guarded', 'v');
    aws.restrictSecret('guarded', ['AKIAOTHER00000000001']);
    const error = await rejection(secrets.send(new GetSecretValueCommand({ SecretId: 'guarded' })));
    expect(error.name).toBe('AccessDeniedException');
    expect(error.message).toContain('secretsmanager:GetSecretValue on resource: guarded');
    const other = new SecretsManagerClient(
      aws.clientConfig({ accessKeyId: 'AKIAOTHER00000000001', secretAccessKey: 'x' }),
    );
    try {
      expect((await other.send(new GetSecretValueCommand({ SecretId: 'guarded' }))).SecretString).toBe('v');
    } finally {
      other.destroy();
    }
    aws.restrictSecret('guarded', undefined);
    expect((await secrets.send(new GetSecretValueCommand({ SecretId: 'guarded' }))).SecretString).toBe('v');
  });
});
