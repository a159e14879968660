/**
 * A separate process working on a disk store, for the multi-process tests.
 *   create <root> <index> <id>      one strict create; prints "won" or "lost"
 *   cas <root> <index> <n>          n compare-and-set increments; prints successes and conflicts
 *   loop <root> <index>             pushes forever (plain and compare-and-set, alternating)
 * It waits for "go" on stdin before starting, so that all workers start together.
 */
import { EnvelopeExistsError, VersionConflictError } from '../../src/errors.js';
import { parseIndexName } from '../../src/names.js';
import { DiskStore } from '../../src/storage/disk.js';
import { sampleBlob } from './blobs.js';

const [mode, root, indexArg, arg] = process.argv.slice(2);
const store = new DiskStore(root!);
const index = parseIndexName(indexArg);

async function waitForGo(): Promise<void> {
  if (process.env.KE_NO_WAIT) return;
  await new Promise<void>((resolve) => process.stdin.once('data', () => resolve()));
}

await waitForGo();
if (mode === 'create') {
  try {
    await store.create(index, sampleBlob(index, { keyId: `writer-${arg}` }));
    console.log('won');
  } catch (err) {
    if (!(err instanceof EnvelopeExistsError)) throw err;
    console.log('lost');
  }
} else if (mode === 'cas') {
  let ok = 0;
  let conflicts = 0;
  for (let i = 0; i < Number(arg); i++) {
    const current = await store.get(index);
    try {
      await store.push(
        index,
        { ...current, version: current.version + 1 },
        { expectedVersion: current.version },
      );
      ok++;
    } catch (err) {
      if (!(err instanceof VersionConflictError)) throw err;
      conflicts++;
    }
  }
  console.log(JSON.stringify({ ok, conflicts }));
} else if (mode === 'loop') {
  process.stdout.write('ready\n');
  for (let i = 0; ; i++) {
    const current = await store.get(index);
    // Large, varying wrapped bytes so that a torn write would show.
    const next = sampleBlob(index, {
      version: current.version + 1,
      wrappedKek: new Uint8Array(4000).fill(i & 0xff),
    });
    if (i % 2 === 0) await store.push(index, next);
    else await store.push(index, next, { expectedVersion: current.version });
  }
}
process.stdin.destroy();
