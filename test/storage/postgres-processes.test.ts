/**
 * The Postgres store across real processes, each with its own pool: the server decides the
 * strict create and the compare-and-set, whoever sends them. One set of 16 processes serves both
 * races (starting 16 processes with tsx is most of the cost on a small machine).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseIndexName } from '../../src/names.js';
import { PostgresStore } from '../../src/storage/postgres.js';
import { type PostgresServerHandle, startPostgres } from '../../src/testing/postgres-server.js';
import { sampleBlob } from '../helpers/blobs.js';
import { hasPostgres } from '../helpers/services.js';

const workerScript = join(import.meta.dirname, '../helpers/postgres-worker.ts');
const repo = join(import.meta.dirname, '../..');

/** A worker process: send it a command, get its next output line. */
interface Worker {
  readonly child: ChildProcess;
  send(command: string): Promise<string>;
}

function startWorker(table: string, index: string, url: string): Promise<Worker> {
  const child = spawn(process.execPath, ['--import', 'tsx', workerScript, table, index], {
    cwd: repo,
    env: { ...process.env, KE_PG_URL: url },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let buffered = '';
  let stderr = '';
  const waiting: { resolve: (line: string) => void; reject: (err: Error) => void }[] = [];
  child.stdout!.on('data', (d) => {
    buffered += d;
    for (let nl = buffered.indexOf('\n'); nl >= 0; nl = buffered.indexOf('\n')) {
      const line = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
      waiting.shift()?.resolve(line);
    }
  });
  child.stderr!.on('data', (d) => {
    stderr += d;
  });
  child.on('exit', (code) => {
    for (const w of waiting.splice(0)) w.reject(new Error(`worker exited (${code}): ${stderr}`));
  });
  const next = () => new Promise<string>((resolve, reject) => waiting.push({ resolve, reject }));
  return next().then((ready) => {
    if (ready !== 'ready') throw new Error(`worker did not start: ${ready} ${stderr}`);
    return {
      child,
      send: (command) => {
        const line = next();
        child.stdin!.write(`${command}\n`);
        return line;
      },
    };
  });
}

describe.skipIf(!hasPostgres())('Postgres store across processes', () => {
  const table = 'races';
  const index = parseIndexName('shared');
  let server: PostgresServerHandle;
  let workers: Worker[] = [];
  let store: PostgresStore;

  beforeAll(async () => {
    server = await startPostgres();
    store = new PostgresStore({ connectionString: server.connectionString, table });
    await store.migrate(); // the workers find the tables there
    workers = await Promise.all(
      Array.from({ length: 16 }, () => startWorker(table, index, server.connectionString)),
    );
  }, 120_000);
  afterAll(async () => {
    await Promise.all(
      workers.map(
        (w) =>
          new Promise<void>((resolve) => {
            if (w.child.exitCode !== null) return resolve();
            w.child.once('exit', () => resolve());
            w.child.stdin!.write('exit\n');
          }),
      ),
    );
    await store?.close();
    await server?.stop();
  });

  it('16 processes racing to create one index: exactly one wins', async () => {
    const results = await Promise.all(workers.map((w, i) => w.send(`create ${i}`)));
    expect(results.filter((r) => r === 'won')).toHaveLength(1);
    expect(results.filter((r) => r === 'lost')).toHaveLength(15);
    const winner = results.indexOf('won');
    expect((await store.get(index)).keyId).toBe(`writer-${winner}`);
  });

  it('16 processes x 100 compare-and-set increments: no update lost', async () => {
    await store.push(index, sampleBlob(index)); // version 1 again, a new creation id
    const outputs = await Promise.all(workers.map((w) => w.send('cas 100')));
    const counts = outputs.map((o) => JSON.parse(o) as { ok: number; conflicts: number });
    const ok = counts.reduce((n, c) => n + c.ok, 0);
    expect(counts.reduce((n, c) => n + c.ok + c.conflicts, 0)).toBe(1600);
    expect(ok).toBeGreaterThan(0);
    expect((await store.get(index)).version).toBe(1 + ok);
  }, 120_000);
});
