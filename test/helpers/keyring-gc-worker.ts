/**
 * Child process of keyring-invalidation.test.ts (run with --expose-gc): makes and drops many
 * keyrings on one client and prints the heap growth once they are collected, and whether an
 * invalidation still reaches a keyring that is kept.
 */
import { randomBytes } from 'node:crypto';
import { KmsEnvelopeClient } from '../../src/client.js';
import { IndexKeyring } from '../../src/keyring/keyring.js';
import { StorageConfig } from '../../src/storage/config.js';

const gc = (globalThis as { gc?: () => void }).gc;
if (gc === undefined) throw new Error('run with --expose-gc');
const settle = async () => {
  for (let i = 0; i < 6; i++) {
    gc();
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
};
const client = new KmsEnvelopeClient({
  store: StorageConfig.memory(),
  kms: {
    slots: { dev: { provider: 'local', masterKey: `literal:${randomBytes(32).toString('base64url')}` } },
    secrets: { allowLiteral: true },
  },
});
const kept = await IndexKeyring.createIndex(client, 'orders', { slot: 'dev', retireGraceMs: 0 });
const dek = await kept.createDek();
await settle();
const before = process.memoryUsage().heapUsed;
for (let i = 0; i < 200_000; i++) new IndexKeyring(client, 'orders');
await settle();
const growth = process.memoryUsage().heapUsed - before;
client.invalidate('orders');
await new Promise((resolve) => setTimeout(resolve, 10));
// The kept keyring heard it: its DEK zeroed (grace 0), and it loads the DEK again.
const reloaded = (await kept.getDek(dek.keyid)) !== dek;
// Keyrings that opened keys and were collected: their keys are retired (zeroed after the grace)
// even with no max age, and the callers' contexts see it.
const held = [];
for (let i = 0; i < 20; i++) {
  const short = new IndexKeyring(client, 'orders', { maxAgeMs: Number.POSITIVE_INFINITY, retireGraceMs: 0 });
  held.push(await short.getDek(dek.keyid));
}
await settle();
await new Promise((resolve) => setTimeout(resolve, 50));
// (The last one made may still be reachable from the engine's own state: allow it.)
const collectedZeroed = held.filter((context) => context.key.isZeroed).length >= held.length - 1;
console.log(JSON.stringify({ growth, keptDropped: dek.key.isZeroed && reloaded, collectedZeroed }));
await client.close();
