/**
 * One process of the Redis race tests (test/storage/redis-processes.ts): connects, prints
 * "ready", waits for "go" on stdin, then races. Arguments: the connection as JSON ({ url }, or
 * { nodes } for a Cluster), key prefix, the index to create, the index to increment, the
 * writer's number, the number of increments.
 */
import { createInterface } from 'node:readline';
import { Cluster, Redis } from 'ioredis';
import { EnvelopeExistsError, VersionConflictError } from '../../src/errors.js';
import { parseIndexName } from '../../src/names.js';
import { RedisStore } from '../../src/storage/redis.js';
import { sampleBlob } from './blobs.js';

const [connection, keyPrefix, indexArg, counterArg, writer, increments] = process.argv.slice(2);
const spec = JSON.parse(connection!) as { url?: string; nodes?: { host: string; port: number }[] };
const client = spec.nodes ? new Cluster(spec.nodes) : new Redis(spec.url!);
const store = new RedisStore({ client, keyPrefix: keyPrefix! });
const index = parseIndexName(indexArg);
const counter = parseIndexName(counterArg);
await store.getEncoded(parseIndexName('warm-up')).catch(() => {}); // connected, script loaded
process.stdout.write('ready\n');
const lines = createInterface({ input: process.stdin });
await new Promise<void>((resolve) => lines.once('line', () => resolve()));
lines.close();

// Race 1: create one index (writer number in the key id). Race 2: compare-and-set increments of
// another, which the test created before starting the workers.
try {
  await store.create(index, sampleBlob(index, { keyId: `writer-${writer}` }));
  process.stdout.write('won\n');
} catch (err) {
  if (!(err instanceof EnvelopeExistsError)) throw err;
  process.stdout.write('lost\n');
}
let ok = 0;
let conflicts = 0;
for (let i = 0; i < Number(increments); i++) {
  const current = await store.get(counter);
  try {
    await store.push(
      counter,
      { ...current, version: current.version + 1 },
      {
        expectedVersion: current.version,
        expectedCreationId: current.creationId!,
      },
    );
    ok++;
  } catch (err) {
    if (!(err instanceof VersionConflictError)) throw err;
    conflicts++;
  }
}
process.stdout.write(`${JSON.stringify({ ok, conflicts })}\n`);
client.disconnect();
