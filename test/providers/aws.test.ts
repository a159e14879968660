/**
 * `aws` (Secrets Manager) end to end: the real `@aws-sdk/client-secrets-manager` over HTTP against
 * the fake (or LocalStack / moto under `npm run test:localstack`).
 */
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { parseAwsKeyId } from '../../providers/aws.js';
import { KmsEnvelopeClient } from '../../src/client.js';
import { AccessDeniedError, ConfigError, KeyDisabledError, KeyNotFoundError } from '../../src/errors.js';
import type { KmsSlotInput } from '../../src/providers/slot.js';
import { StorageConfig } from '../../src/storage/config.js';
import { type AwsBackend, awsBackend, awsSlot, REMOTE, remoteAvailable } from './aws-backend.js';
import { runProviderConformance } from './conformance.js';

const available = await remoteAvailable();

const slotOf = (aws: AwsBackend, keyId: string, extra: Partial<KmsSlotInput> = {}) =>
  awsSlot(aws, 'aws', keyId, extra);

if (available) {
  runProviderConformance(
    'aws',
    async () => {
      const aws = await awsBackend();
      const name = aws.unique('kek-master');
      const other = aws.unique('kek-other');
      const { arn } = await aws.putSecret(name, randomBytes(32));
      await aws.putSecret(other, randomBytes(32).toString('base64'));
      return {
        kms: { slots: { a: slotOf(aws, name), b: slotOf(aws, arn) } },
        wrongKeyKms: { slots: { a: slotOf(aws, other), b: slotOf(aws, other) } },
        cleanup: () => aws.close(),
        ...(aws.fake
          ? {
              faults: {
                setKeyDisabled: (disabled: boolean) =>
                  disabled ? aws.deleteSecret(name) : aws.restoreSecret(name),
                throttleNext: (n: number) => aws.fake?.throttleNext(n, 'secretsmanager'),
                delay: (ms: number) => aws.fake?.delay(ms),
                calls: () => aws.fake?.calls('secretsmanager') ?? 0,
                stop: async () => aws.fake?.close(),
                denyNext: () =>
                  aws.fake?.failNext(1, { status: 400, type: 'AccessDeniedException' }, 'secretsmanager'),
                notFoundNext: () =>
                  aws.fake?.failNext(1, { status: 400, type: 'ResourceNotFoundException' }, 'secretsmanager'),
              },
            }
          : {}),
      };
    },
    { faults: !REMOTE },
  );
}

describe.skipIf(!available)('aws (Secrets Manager) end to end', () => {
  it('an envelope records ARN#VersionId and still unwraps after the secret rotates twice', async () => {
    const aws = await awsBackend();
    const name = aws.unique('kek-master');
    const first = await aws.putSecret(name, randomBytes(32));
    const client = new KmsEnvelopeClient({
      store: StorageConfig.memory(),
      kms: { slots: { sm: slotOf(aws, name) } },
      cache: false,
    });
    const kek = await client.createIndex('orders', { slot: 'sm' });
    expect(parseAwsKeyId((await client.getEnvelope('orders')).keyId)).toEqual({
      arn: first.arn,
      versionId: first.versionId,
    });
    await aws.putSecret(name, randomBytes(32).toString('base64')); // v1 is now AWSPREVIOUS
    await aws.putSecret(name, randomBytes(32)); // v1 has no stage left, only its id
    expect((await client.unwrap('orders')).equals(kek)).toBe(true);
    // A rotation re-wraps under the current version.
    const rotated = await client.rotate('orders');
    expect(parseAwsKeyId(rotated.keyId)?.versionId).not.toBe(first.versionId);
    expect((await client.unwrap('orders')).equals(kek)).toBe(true);
    await client.close();
    await aws.close();
  });

  it('a secret of the wrong size, a missing secret and a deleted one each fail clearly', async () => {
    const aws = await awsBackend();
    const short = aws.unique('short');
    await aws.putSecret(short, randomBytes(16));
    const client = new KmsEnvelopeClient({
      store: StorageConfig.memory(),
      kms: {
        slots: {
          short: slotOf(aws, short),
          missing: slotOf(aws, aws.unique('missing')),
        },
      },
    });
    await expect(client.createIndex('a', { slot: 'short' })).rejects.toThrow(ConfigError);
    await expect(client.createIndex('b', { slot: 'missing' })).rejects.toThrow(KeyNotFoundError);
    await aws.deleteSecret(short);
    await expect(client.createIndex('c', { slot: 'short' })).rejects.toThrow(KeyDisabledError);
    await client.close();
    await aws.close();
  });

  it.skipIf(REMOTE)(
    'reads a cross-account secret through an assumed role; other identities are refused',
    async () => {
      const aws = await awsBackend();
      const fake = aws.fake!;
      const roleArn = 'arn:aws:iam::444455556666:role/secret-reader';
      fake.allowRole(roleArn, 'ext-9');
      const name = aws.unique('kek-master');
      await aws.putSecret(name, randomBytes(32));
      const client = new KmsEnvelopeClient({
        store: StorageConfig.memory(),
        kms: { slots: { sm: slotOf(aws, name, { roleArn, externalId: 'ext-9' }) } },
        cache: false,
      });
      const kek = await client.createIndex('orders', { slot: 'sm' });
      fake.restrictSecret(name, fake.issuedCredentials(roleArn));
      expect((await client.unwrap('orders')).equals(kek)).toBe(true);
      const direct = new KmsEnvelopeClient({
        store: StorageConfig.memory(),
        kms: { slots: { sm: slotOf(aws, name) } },
      });
      await expect(direct.createIndex('x', { slot: 'sm' })).rejects.toThrow(AccessDeniedError);
      await client.close();
      await direct.close();
      await aws.close();
    },
  );
});
