/**
 * `aws-kms` end to end: the real `@aws-sdk/client-kms` over HTTP against the fake (or LocalStack /
 * moto under `npm run test:localstack`), through the client and the conformance suite.
 */
import { describe, expect, it } from 'vitest';
import { KmsEnvelopeClient } from '../../src/client.js';
import {
  AccessDeniedError,
  KeyDisabledError,
  KeyNotFoundError,
  UnwrapFailedError,
} from '../../src/errors.js';
import { parseIndexName } from '../../src/names.js';
import type { KmsSlotInput } from '../../src/providers/slot.js';
import { StorageConfig } from '../../src/storage/config.js';
import { findSecret } from '../helpers/find-secret.js';
import { type AwsBackend, awsBackend, awsSlot, REMOTE, remoteAvailable } from './aws-backend.js';
import { runProviderConformance } from './conformance.js';

const available = await remoteAvailable();

const slotOf = (aws: AwsBackend, keyId: string, extra: Partial<KmsSlotInput> = {}) =>
  awsSlot(aws, 'aws-kms', keyId, extra);

if (available) {
  runProviderConformance(
    'aws-kms',
    async () => {
      const aws = await awsBackend();
      const key = await aws.createKey();
      const other = await aws.createKey();
      return {
        kms: { slots: { a: slotOf(aws, key.alias), b: slotOf(aws, key.arn) } },
        wrongKeyKms: { slots: { a: slotOf(aws, other.alias), b: slotOf(aws, other.arn) } },
        cleanup: () => aws.close(),
        ...(aws.fake
          ? {
              faults: {
                setKeyDisabled: (disabled: boolean) => aws.setKeyEnabled(key.arn, !disabled),
                throttleNext: (n: number) => aws.fake?.throttleNext(n, 'kms'),
                delay: (ms: number) => aws.fake?.delay(ms),
                calls: () => aws.fake?.calls('kms') ?? 0,
                stop: async () => aws.fake?.close(),
                denyNext: () => aws.fake?.failNext(1, { status: 400, type: 'AccessDeniedException' }, 'kms'),
                notFoundNext: () => aws.fake?.failNext(1, { status: 400, type: 'NotFoundException' }, 'kms'),
              },
            }
          : {}),
      };
    },
    { faults: !REMOTE },
  );
}

describe.skipIf(!available)('aws-kms end to end', () => {
  async function setup(extra: Partial<KmsSlotInput> = {}, keyRef: 'alias' | 'arn' = 'alias') {
    const aws = await awsBackend();
    const key = await aws.createKey();
    const client = new KmsEnvelopeClient({
      store: StorageConfig.memory(),
      kms: { slots: { prod: slotOf(aws, key[keyRef], extra) } },
      cache: false,
    });
    return { aws, key, client };
  }

  it('the envelope records the key ARN KMS answered with, not the alias', async () => {
    const { aws, key, client } = await setup();
    const kek = await client.createIndex('orders', { slot: 'prod', encryptionContext: { tenant: 't1' } });
    const blob = await client.getEnvelope('orders');
    expect(blob.keyId).toBe(key.arn);
    expect(blob.region).toBe(aws.region);
    expect((await client.unwrap('orders')).equals(kek)).toBe(true);
    await client.close();
    await aws.close();
  });

  it('a key pending deletion gives KeyDisabledError; an unknown key KeyNotFoundError', async () => {
    const { aws, key, client } = await setup();
    await client.createIndex('orders', { slot: 'prod' });
    await aws.scheduleDeletion(key.arn);
    await expect(client.unwrap('orders')).rejects.toThrow(KeyDisabledError);
    const missing = new KmsEnvelopeClient({
      store: StorageConfig.memory(),
      kms: { slots: { prod: slotOf(aws, 'alias/kms-envelope-does-not-exist') } },
    });
    await expect(missing.createIndex('orders', { slot: 'prod' })).rejects.toThrow(KeyNotFoundError);
    await client.close();
    await aws.close();
  });

  it('rotate moves an envelope to the slot’s new key with ReEncrypt; the KEK never leaves KMS', async () => {
    const aws = await awsBackend();
    const oldKey = await aws.createKey();
    const newKey = await aws.createKey();
    const store = StorageConfig.memory();
    const before = new KmsEnvelopeClient({ store, kms: { slots: { prod: slotOf(aws, oldKey.arn) } } });
    const kek = await before.createIndex('orders', { slot: 'prod' });
    await before.close();
    // The slot now names the new key; without acceptKeyIds the old envelope is refused.
    const strict = new KmsEnvelopeClient({ store, kms: { slots: { prod: slotOf(aws, newKey.arn) } } });
    await expect(strict.unwrap('orders')).rejects.toThrow(/acceptKeyIds/);
    await strict.close();
    const client = new KmsEnvelopeClient({
      store,
      kms: { slots: { prod: slotOf(aws, newKey.arn, { options: { acceptKeyIds: [oldKey.arn] } }) } },
      cache: false,
    });
    expect((await client.unwrap('orders')).equals(kek)).toBe(true);
    const seen = aws.fake?.requests.length ?? 0;
    const rotated = await client.rotate('orders');
    expect(rotated.version).toBe(2);
    expect(rotated.keyId).toBe(newKey.arn);
    if (aws.fake) {
      const ops = aws.fake.requests.slice(seen).map((r) => r.operation);
      expect(ops).toEqual(['ReEncrypt']);
    }
    // The old key may now be disabled: the envelope no longer needs it.
    await aws.setKeyEnabled(oldKey.arn, false);
    expect((await client.unwrap('orders')).equals(kek)).toBe(true);
    await client.close();
    await aws.close();
  });

  it('rotate refuses an envelope forged under a key the slot does not accept (ReEncrypt would launder it)', async () => {
    const aws = await awsBackend();
    const victimKey = await aws.createKey();
    const attackerKey = await aws.createKey();
    const store = StorageConfig.memory();
    const victim = new KmsEnvelopeClient({ store, kms: { slots: { prod: slotOf(aws, victimKey.alias) } } });
    await victim.createIndex('orders', { slot: 'prod' });
    const genuine = await victim.getEnvelope('orders');
    // Someone who can write the store wraps a KEK of their choosing under their own key, with the
    // (public) binding context of this index and slot, and records their key.
    const attacker = new KmsEnvelopeClient({
      store: StorageConfig.memory(),
      kms: { slots: { prod: slotOf(aws, attackerKey.arn) } },
    });
    const chosen = await attacker.createIndex('orders', { slot: 'prod' });
    const forged = await attacker.getEnvelope('orders');
    await store.push(
      parseIndexName('orders'),
      { ...forged, version: genuine.version },
      {
        expectedVersion: genuine.version,
      },
    );
    await expect(victim.unwrap('orders')).rejects.toThrow(UnwrapFailedError);
    await expect(victim.rotate('orders')).rejects.toThrow(/acceptKeyIds/);
    const stored = await victim.getEnvelope('orders');
    expect(stored.keyId).toBe(attackerKey.arn); // not re-encrypted under the victim's key
    expect(stored.version).toBe(genuine.version);
    chosen.zero();
    await victim.close();
    await attacker.close();
    await aws.close();
  });

  describe.skipIf(REMOTE)(
    'cross-account BYOK through STS AssumeRole (fake only: it enforces the external id)',
    () => {
      const roleArn = 'arn:aws:iam::444455556666:role/kms-envelope-byok';

      it('KMS is called with the assumed role’s temporary credentials, refreshed before they expire', async () => {
        const aws = await awsBackend();
        const fake = aws.fake!;
        fake.allowRole(roleArn, 'ext-123', { durationSeconds: 60 });
        const key = await aws.createKey();
        const client = new KmsEnvelopeClient({
          store: StorageConfig.memory(),
          kms: {
            slots: {
              byok: slotOf(aws, key.arn, {
                roleArn,
                externalId: 'ext-123',
                roleSessionName: 'orders-service',
                options: { credentials: { accessKeyId: 'base-user', secretAccessKey: 'x' } },
              }),
            },
          },
          cache: false,
        });
        const kek = await client.createIndex('orders', { slot: 'byok' });
        expect((await client.unwrap('orders')).equals(kek)).toBe(true);
        const issued = fake.issuedCredentials(roleArn);
        expect(issued.length).toBeGreaterThanOrEqual(1);
        const kmsCallers = fake.requests.filter(
          (r) => r.service === 'kms' && r.operation !== 'CreateKey' && r.operation !== 'CreateAlias',
        );
        expect(kmsCallers.length).toBeGreaterThanOrEqual(2);
        for (const call of kmsCallers) expect(issued).toContain(call.accessKeyId);
        const sts = fake.requests.filter((r) => r.service === 'sts');
        expect(sts.every((r) => r.accessKeyId === 'base-user')).toBe(true);
        // 60-second credentials are inside the SDK's refresh window: the next call assumes again.
        await client.unwrap('orders');
        expect(fake.issuedCredentials(roleArn).length).toBeGreaterThan(issued.length);
        // Only the role may use the key: the base identity is refused.
        fake.restrictKey(key.arn, fake.issuedCredentials(roleArn));
        const direct = new KmsEnvelopeClient({
          store: StorageConfig.memory(),
          kms: {
            slots: {
              byok: slotOf(aws, key.arn, {
                options: { credentials: { accessKeyId: 'base-user', secretAccessKey: 'x' } },
              }),
            },
          },
        });
        await expect(direct.createIndex('x', { slot: 'byok' })).rejects.toThrow(AccessDeniedError);
        await client.close();
        await direct.close();
        await aws.close();
      });

      it('a wrong external id is refused with AccessDeniedError naming the slot', async () => {
        const aws = await awsBackend();
        aws.fake!.allowRole(roleArn, 'ext-123');
        const key = await aws.createKey();
        const client = new KmsEnvelopeClient({
          store: StorageConfig.memory(),
          kms: { slots: { byok: slotOf(aws, key.arn, { roleArn, externalId: 'wrong' }) } },
        });
        const err = await client.createIndex('orders', { slot: 'byok' }).catch((e: unknown) => e);
        expect(err).toBeInstanceOf(AccessDeniedError);
        expect((err as Error).message).toContain('slot "byok"');
        await client.close();
        await aws.close();
      });
    },
  );
});

describe.skipIf(REMOTE)('no key bytes in AWS errors', () => {
  it('a failed Encrypt or Decrypt error (with its SDK cause, inspected deeply) never holds the KEK', async () => {
    const { inspect } = await import('node:util');
    const { Kek } = await import('../../src/keys/kek.js');
    const aws = await awsBackend();
    const key = await aws.createKey();
    const kek = Kek.generate();
    const forms = ['hex', 'base64', 'base64url'].map((enc) => kek.expose().toString(enc as BufferEncoding));
    const client = new KmsEnvelopeClient({
      store: StorageConfig.memory(),
      kms: { slots: { prod: slotOf(aws, key.arn) } },
      kmsCalls: { retries: 0 },
    });
    for (const type of ['ValidationException', 'KMSInternalException']) {
      aws.fake!.failNext(
        1,
        { status: type === 'ValidationException' ? 400 : 500, type, message: 'injected' },
        'kms',
      );
      const err = await client.createIndex(`i-${type}`, { slot: 'prod', kek }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(Error);
      const text = `${inspect(err, { depth: 30, showHidden: true })}${JSON.stringify(err)}${(err as Error).stack}`;
      for (const form of forms) expect(text).not.toContain(form);
      // And the values themselves, byte arrays included (rendered forms hide those).
      expect(findSecret(err, kek.expose())).toBeUndefined();
    }
    await client.close();
    await aws.close();
  });
});
