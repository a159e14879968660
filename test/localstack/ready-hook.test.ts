/**
 * Under `npm run test:localstack` only: the compose file's ready hook
 * (`localstack/ready.d/10-kms-envelope.sh`) made the alias and the 32-byte secret that the
 * README's LocalStack example slots name, and both providers work with them as configured there.
 */
import { describe, expect, it } from 'vitest';
import { KmsEnvelopeClient } from '../../src/client.js';
import { StorageConfig } from '../../src/storage/config.js';
import { REMOTE_ENDPOINT, remoteAvailable } from '../providers/aws-backend.js';

const available = await remoteAvailable();

/** Whether the endpoint is LocalStack (moto and other AWS-compatible servers run no ready hooks). */
async function isLocalStack(): Promise<boolean> {
  try {
    const response = await fetch(`${REMOTE_ENDPOINT}/_localstack/health`, {
      signal: AbortSignal.timeout(2000),
    });
    return response.ok && 'services' in ((await response.json()) as object);
  } catch {
    return false;
  }
}
const localstack = available && (await isLocalStack());
if (available && !localstack) {
  console.warn(
    `skipping the ready-hook check: ${REMOTE_ENDPOINT} is not LocalStack (its hooks are LocalStack's)`,
  );
}

describe.skipIf(!localstack)('LocalStack ready hook', () => {
  it('alias/kms-envelope-test and kms-envelope/test-master-key exist and wrap a KEK', async () => {
    const common = {
      region: process.env.AWS_REGION ?? 'us-east-1',
      endpoint: REMOTE_ENDPOINT,
      options: { credentials: { accessKeyId: 'test', secretAccessKey: 'test' } },
    };
    const client = new KmsEnvelopeClient({
      store: StorageConfig.memory(),
      kms: {
        slots: {
          kms: { provider: 'aws-kms', keyId: 'alias/kms-envelope-test', ...common },
          sm: { provider: 'aws', keyId: 'kms-envelope/test-master-key', ...common },
        },
      },
    });
    for (const slot of ['kms', 'sm']) {
      const kek = await client.createIndex(`ready-${slot}-${Date.now()}`, { slot });
      expect(kek.expose()).toHaveLength(32);
    }
    await client.close();
  });
});
