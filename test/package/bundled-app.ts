/**
 * The app the bundling tests bundle (esbuild in consumer.test.ts, rollup in bundle-rollup.test.ts):
 * the core and the `local` provider, a master key from `env:`, a create, an unwrap, and a cloud
 * slot that a bundle cannot load by itself. It prints {@link BUNDLED_APP_OUTPUT} as JSON.
 */

/** The app's source (plain ESM JavaScript); `topLevelAwait`: awaits `main()` at the top level. */
export function bundledAppSource(topLevelAwait = false): string {
  return `import { randomBytes } from 'node:crypto';
import { KmsEnvelopeClient, StorageConfig } from 'kms-envelope';
async function main() {
  process.env.APP_MASTER_KEY = randomBytes(32).toString('base64');
  const client = new KmsEnvelopeClient({
    store: StorageConfig.memory(),
    kms: { slots: { dev: { provider: 'local', masterKey: 'env:APP_MASTER_KEY' } } },
  });
  const kek = await client.createIndex('orders', { slot: 'dev' });
  const again = await client.unwrap('orders');
  let cloud = '';
  const aws = new KmsEnvelopeClient({ store: StorageConfig.memory(), kms: { slots: { k: { provider: 'aws-kms', keyId: 'alias/k' } } } });
  await aws.kms.provider('k').catch((err) => { cloud = err.code; });
  console.log(JSON.stringify({ same: kek.equals(again), version: (await client.getEnvelope('orders')).version, cloud }));
  await client.close();
}
${topLevelAwait ? 'await main();' : 'main();'}
`;
}

/**
 * What the app prints: the unwrapped KEK is the created one, and in a bundle a cloud provider is
 * not next to the core, so its slot fails with a ConfigError that says how to pass it.
 */
export const BUNDLED_APP_OUTPUT = { same: true, version: 1, cloud: 'KMS_ENVELOPE_CONFIG' } as const;
