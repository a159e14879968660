/**
 * A separate process rotating the KEK of one index on a disk store, again and again, until it is
 * killed. Prints "ready" before the first rotation and "rotated" after each.
 *   rotate-worker.ts <root> <index> <master key, base64url>
 */
import { KmsEnvelopeClient } from '../../src/client.js';
import { IndexKeyring } from '../../src/keyring/keyring.js';
import { StorageConfig } from '../../src/storage/config.js';

const [root, index, masterKey] = process.argv.slice(2);
const client = new KmsEnvelopeClient({
  store: StorageConfig.disk(root!),
  kms: {
    slots: { dev: { provider: 'local', masterKey: `literal:${masterKey}` } },
    secrets: { allowLiteral: true },
  },
});
process.stdout.write('ready\n');
for (;;) {
  await new IndexKeyring(client, index!).rotateKek({ batchSize: 50 });
  process.stdout.write('rotated\n');
}
