/**
 * A separate process working on a Postgres store, for the multi-process tests:
 * `postgres-worker.ts <table> <index>`, the connection string in KE_PG_URL (never argv, which
 * other users of the machine can read). It connects, prints "ready", then runs one command per
 * stdin line and prints one line per command:
 *   create <id>   one strict create; prints "won" or "lost"
 *   cas <n>       n compare-and-set increments; prints {"ok":…,"conflicts":…}
 *   exit          closes the store and exits
 * so that one set of processes (slow to start on a small machine) serves several races.
 */
import { createInterface } from 'node:readline';
import { EnvelopeExistsError, VersionConflictError } from '../../src/errors.js';
import { parseIndexName } from '../../src/names.js';
import { PostgresStore } from '../../src/storage/postgres.js';
import { sampleBlob } from './blobs.js';

const [table, indexArg] = process.argv.slice(2);
const store = new PostgresStore({
  connectionString: process.env.KE_PG_URL!,
  table: table!,
  maxConnections: 1,
});
const index = parseIndexName(indexArg);

async function create(id: string): Promise<string> {
  try {
    await store.create(index, sampleBlob(index, { keyId: `writer-${id}` }));
    return 'won';
  } catch (err) {
    if (!(err instanceof EnvelopeExistsError)) throw err;
    return 'lost';
  }
}

async function cas(n: number): Promise<string> {
  let ok = 0;
  let conflicts = 0;
  for (let i = 0; i < n; i++) {
    const current = await store.get(index);
    try {
      await store.push(
        index,
        { ...current, version: current.version + 1 },
        { expectedVersion: current.version, expectedCreationId: current.creationId! },
      );
      ok++;
    } catch (err) {
      if (!(err instanceof VersionConflictError)) throw err;
      conflicts++;
    }
  }
  return JSON.stringify({ ok, conflicts });
}

// Open the pool (and check the tables) before the first command, so the races are the writes.
await store.getRecord(index, 'meta', 'warm-up');
process.stdout.write('ready\n');
for await (const line of createInterface({ input: process.stdin })) {
  const [command, arg = ''] = line.trim().split(' ');
  if (command === 'exit') break;
  process.stdout.write(`${command === 'create' ? await create(arg) : await cas(Number(arg))}\n`);
}
await store.close();
process.stdin.destroy();
