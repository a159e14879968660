/**
 * A separate process working on a disk store, for the multi-process tests.
 *   create <root> <index> <id>      one strict create; prints "won" or "lost"
 *   cas <root> <index> <n>          n compare-and-set increments; prints successes and conflicts
 *   loop <root> <index>             pushes forever (plain and compare-and-set, alternating)
 *   records-loop <root> <index>     writes DEK records forever (putRecord and createRecord)
 *   read <root> <index> <op>...     runs each op (get, getEncoded, getRecord:<kind>:<id>,
 *                                   listRecords:<kind>) and prints one JSON line per op: its
 *                                   outcome, how long it took and the process's peak RSS
 * It waits for "go" on stdin before starting, so that all workers start together.
 */
import { EnvelopeExistsError, type KmsEnvelopeError, VersionConflictError } from '../../src/errors.js';
import { parseIndexName } from '../../src/names.js';
import { DiskStore } from '../../src/storage/disk.js';
import type { RecordKind } from '../../src/storage/store.js';
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
} else if (mode === 'records-loop') {
  process.stdout.write('ready\n');
  for (let i = 0; ; i++) {
    const value = new Uint8Array(4000).fill(i & 0xff);
    if (i % 2 === 0) await store.putRecord(index, 'dek', `r${i % 8}`, value);
    else await store.createRecord(index, 'dek', `c${i}`, value);
  }
} else if (mode === 'read') {
  for (const op of process.argv.slice(5)) {
    const [name, kind, id] = op.split(':') as [string, RecordKind, string];
    const started = performance.now();
    let outcome: Record<string, unknown>;
    try {
      const result =
        name === 'get'
          ? await store.get(index)
          : name === 'getEncoded'
            ? await store.getEncoded(index)
            : name === 'getRecord'
              ? await store.getRecord(index, kind, id)
              : await store.listRecords(index, kind);
      outcome = { ok: true, found: result !== undefined };
    } catch (err) {
      const e = err as KmsEnvelopeError;
      outcome = { ok: false, error: e.name, code: e.code, retryable: e.retryable, detail: e.detail };
    }
    const ms = performance.now() - started;
    const maxRssKb = process.resourceUsage().maxRSS;
    process.stdout.write(`${JSON.stringify({ op, ms, maxRssKb, ...outcome })}\n`);
  }
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
