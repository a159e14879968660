/**
 * Testing your own code with `kms-envelope/testing`: a fake AWS KMS on 127.0.0.1 that the real AWS
 * SDK talks to, with faults you inject (throttling, a disabled key, another identity), so the
 * paths your service takes when the KMS misbehaves are tested without an AWS account or Docker.
 * Plain `node:assert`: the same checks fit in node:test, vitest or jest. Run:
 * `npx tsx examples/testing-with-fakes.ts`.
 */
import assert from 'node:assert/strict';
import {
  AccessDeniedError,
  IndexKeyring,
  KeyDisabledError,
  KmsEnvelopeClient,
  type KmsRegistryOptions,
  StorageConfig,
} from 'kms-envelope';
import { type FakeAws, startFakeAws } from 'kms-envelope/testing';

// --- the code under test: what your service does -------------------------------------------

/** Your service's client: an `aws-kms` slot whose endpoint and credentials come from config. */
function makeClient(kms: KmsRegistryOptions): KmsEnvelopeClient {
  // cache: false, so that every unwrap reaches the (fake) KMS in these checks.
  return new KmsEnvelopeClient({ store: StorageConfig.memory(), kms, cache: false });
}

/** Encrypts a card number for an index, creating the index on first use. */
async function sealCard(client: KmsEnvelopeClient, index: string, card: string): Promise<string> {
  const keyring = await IndexKeyring.createIndex(client, index, { slot: 'prod' });
  await keyring.createDek();
  return keyring.encryptValue(card);
}

// --- the tests -----------------------------------------------------------------------------

/** The slot configuration pointing at the fake, as your test config would. */
function slotsFor(aws: FakeAws, credentials = aws.clientConfig().credentials): KmsRegistryOptions {
  const { endpoint, region } = aws.clientConfig();
  return {
    slots: {
      prod: { provider: 'aws-kms', keyId: 'alias/cards', region, endpoint, options: { credentials } },
    },
  };
}

async function check(name: string, test: () => Promise<void>): Promise<void> {
  await test();
  console.log(`ok - ${name}`);
}

const aws = await startFakeAws();
try {
  const key = aws.createKey({ alias: 'alias/cards' });

  await check('a value round-trips through the fake KMS', async () => {
    const client = makeClient(slotsFor(aws));
    const token = await sealCard(client, 'cards', '4242 4242 4242 4242');
    assert.equal(await new IndexKeyring(client, 'cards').decryptValue(token), '4242 4242 4242 4242');
    assert.equal((await client.getEnvelope('cards')).keyId, key.arn);
    await client.close();
  });

  await check('a throttled KMS call is retried and succeeds', async () => {
    const client = makeClient(slotsFor(aws));
    await sealCard(client, 'cards', '4242');
    const before = aws.calls('kms');
    aws.throttleNext(1, 'kms');
    (await client.unwrap('cards')).zero();
    assert.equal(aws.calls('kms') - before, 2); // the throttled call, then the retry
    await client.close();
  });

  await check('a disabled key fails with KeyDisabledError, not a generic error', async () => {
    const client = makeClient(slotsFor(aws));
    await sealCard(client, 'cards', '4242');
    aws.setKeyState('alias/cards', 'Disabled');
    try {
      await assert.rejects(client.unwrap('cards'), KeyDisabledError);
    } finally {
      aws.setKeyState('alias/cards', 'Enabled');
      await client.close();
    }
  });

  await check('another identity is denied with AccessDeniedError naming the index', async () => {
    const writer = makeClient(slotsFor(aws));
    await sealCard(writer, 'cards', '4242');
    aws.restrictKey('alias/cards', [aws.clientConfig().credentials.accessKeyId]);
    const other = { accessKeyId: 'AKIAOTHERTESTKEY0002', secretAccessKey: 'other' };
    const reader = new KmsEnvelopeClient({ store: writer.store, kms: slotsFor(aws, other), cache: false });
    try {
      const err = await reader.unwrap('cards').catch((e: unknown) => e);
      assert.ok(err instanceof AccessDeniedError);
      assert.equal(err.code, 'KMS_ENVELOPE_ACCESS_DENIED');
      assert.match(err.message, /index "cards"/);
    } finally {
      aws.restrictKey('alias/cards', undefined);
      await reader.close();
      await writer.close();
    }
  });
} finally {
  await aws.close();
}
