/**
 * Races across real processes for the Redis store, over one redis-server or a Cluster: 16
 * processes creating one index, then the same 16 x 100 compare-and-set increments. Called from
 * redis-cluster.test.ts (issue 13's races); one server is raced by separate connections in one
 * process by the conformance suite, which costs seconds less.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { parseIndexName } from '../../src/names.js';
import type { RedisStore } from '../../src/storage/redis.js';
import { sampleBlob } from '../helpers/blobs.js';

const worker = join(import.meta.dirname, '../helpers/redis-worker.ts');
const repo = join(import.meta.dirname, '../..');

/** How a worker connects: `{ url }` of one server or `{ nodes }` of a Cluster. */
export type RedisConnection = { url: string } | { nodes: readonly { host: string; port: number }[] };

function startWorker(args: string[]): { child: ChildProcess; ready: Promise<void>; output: Promise<string> } {
  const child = spawn(process.execPath, ['--import', 'tsx', worker, ...args], {
    cwd: repo,
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  let markReady: () => void = () => {};
  const ready = new Promise<void>((resolve) => {
    markReady = resolve;
  });
  child.stdout!.on('data', (d) => {
    out += d;
    if (out.startsWith('ready\n')) markReady();
  });
  child.stderr!.on('data', (d) => {
    err += d;
  });
  const output = new Promise<string>((resolve, reject) => {
    child.on('close', (code) =>
      code === 0
        ? resolve(out.slice('ready\n'.length))
        : reject(new Error(`worker failed (${code}): ${err}`)),
    );
  });
  output.catch(() => markReady());
  return { child, ready, output };
}

/** Starts every worker, waits until each is connected, then releases them together. */
async function race(argsList: string[][]): Promise<string[]> {
  const workers = argsList.map(startWorker);
  await Promise.all(workers.map((w) => w.ready));
  for (const w of workers) w.child.stdin!.write('go\n');
  return Promise.all(workers.map((w) => w.output));
}

/**
 * Registers the process races. `connection()` and `store(prefix)` are called when a test
 * runs (after the caller's beforeAll has started the servers).
 */
export function runRedisProcessRaces(
  connection: () => RedisConnection,
  store: (keyPrefix: string) => RedisStore,
): void {
  // One set of 16 processes runs both races (starting 16 processes costs seconds on 2 cores).
  it('16 processes: racing to create one index, exactly one wins; then 16 x 100 compare-and-set increments lose no update', async () => {
    const prefix = `procs-${Date.now()}:`;
    const index = parseIndexName('shared');
    const counter = parseIndexName('counter');
    const reader = store(prefix);
    await reader.create(counter, sampleBlob(counter));
    const conn = JSON.stringify(connection());
    const outputs = await race(
      Array.from({ length: 16 }, (_, i) => [conn, prefix, index, counter, String(i), '100']),
    );
    const results = outputs.map((o) => o.trim().split('\n'));
    const created = results.map(([first]) => first);
    expect(created.filter((r) => r === 'won')).toHaveLength(1);
    expect(created.filter((r) => r === 'lost')).toHaveLength(15);
    expect((await reader.get(index)).keyId).toBe(`writer-${created.indexOf('won')}`);
    const counts = results.map(([, second]) => JSON.parse(second!) as { ok: number; conflicts: number });
    const ok = counts.reduce((n, c) => n + c.ok, 0);
    expect(counts.reduce((n, c) => n + c.ok + c.conflicts, 0)).toBe(1600);
    expect(ok).toBeGreaterThan(0);
    expect((await reader.get(counter)).version).toBe(1 + ok);
    await reader.close();
  }, 120_000);
}
