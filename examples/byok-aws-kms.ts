/**
 * Bring your own key on AWS KMS: each index's KEK is wrapped by a KMS key you own (here, the
 * local AWS fake from `kms-envelope/testing`, so the example needs no AWS account), then a value
 * is encrypted under the index's DEK and read back. Run: `npx tsx examples/byok-aws-kms.ts`.
 */
import { IndexKeyring, KmsEnvelopeClient, StorageConfig } from 'kms-envelope';
import { startFakeAws } from 'kms-envelope/testing';

const aws = await startFakeAws();
try {
  // In production: your key's alias or ARN, your region, and credentials from the environment.
  aws.createKey({ alias: 'alias/search-kek' });
  const { endpoint, region, credentials } = aws.clientConfig();
  const client = new KmsEnvelopeClient({
    store: StorageConfig.memory(),
    kms: {
      slots: {
        prod: { provider: 'aws-kms', keyId: 'alias/search-kek', region, endpoint, options: { credentials } },
      },
    },
  });
  const keyring = await IndexKeyring.createIndex(client, 'orders', { slot: 'prod' });
  await keyring.createDek(); // the first DEK becomes the active one
  const token = await keyring.encryptValue('card ending 4242');
  const blob = await client.getEnvelope('orders');
  console.log(blob.provider, blob.keyId.startsWith('arn:aws:kms:'), await keyring.decryptValue(token));
  await client.close();
} finally {
  await aws.close();
}
