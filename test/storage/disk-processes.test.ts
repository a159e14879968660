/**
 * The disk store across real processes: in one process the store's synchronous file calls run
 * one at a time, so races only show between processes.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseIndexName } from '../../src/names.js';
import { DiskStore, ENVELOPE_DIR, RECORDS_DIR } from '../../src/storage/disk.js';
import { sampleBlob } from '../helpers/blobs.js';

const worker = join(import.meta.dirname, '../helpers/disk-worker.ts');
const repo = join(import.meta.dirname, '../..');

function startWorker(
  args: string[],
  env: Record<string, string> = {},
): { child: ChildProcess; output: Promise<string> } {
  const child = spawn(process.execPath, ['--import', 'tsx', worker, ...args], {
    cwd: repo,
    env: { ...process.env, ...env },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout!.on('data', (d) => {
    out += d;
  });
  child.stderr!.on('data', (d) => {
    err += d;
  });
  const output = new Promise<string>((resolve, reject) => {
    child.on('close', (code, signal) =>
      code === 0 || signal === 'SIGKILL'
        ? resolve(out)
        : reject(new Error(`worker failed (${code}): ${err}`)),
    );
  });
  return { child, output };
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Starts all workers, waits until each has loaded, then releases them together. */
async function race(argsList: string[][]): Promise<string[]> {
  const workers = argsList.map((args) => startWorker(args));
  await new Promise((r) => setTimeout(r, 1500)); // let every process load tsx and the store
  for (const w of workers) w.child.stdin!.write('go\n');
  return Promise.all(workers.map((w) => w.output));
}

describe('disk store across processes', () => {
  const index = parseIndexName('shared');

  it('16 processes racing to create one index: exactly one wins', async () => {
    const root = mkdtempSync(join(tmpdir(), 'ke-procs-'));
    const outputs = await race(Array.from({ length: 16 }, (_, i) => ['create', root, index, String(i)]));
    const results = outputs.map((o) => o.trim());
    expect(results.filter((r) => r === 'won')).toHaveLength(1);
    expect(results.filter((r) => r === 'lost')).toHaveLength(15);
    const winner = results.indexOf('won');
    expect((await new DiskStore(root).get(index)).keyId).toBe(`writer-${winner}`);
    rmSync(root, { recursive: true, force: true });
  });

  it('16 processes x 100 compare-and-set increments: no update lost', async () => {
    const root = mkdtempSync(join(tmpdir(), 'ke-procs-'));
    await new DiskStore(root).create(index, sampleBlob(index));
    const outputs = await race(Array.from({ length: 16 }, () => ['cas', root, index, '100']));
    const counts = outputs.map((o) => JSON.parse(o) as { ok: number; conflicts: number });
    const ok = counts.reduce((n, c) => n + c.ok, 0);
    expect(counts.reduce((n, c) => n + c.ok + c.conflicts, 0)).toBe(1600);
    expect(ok).toBeGreaterThan(0);
    expect((await new DiskStore(root).get(index)).version).toBe(1 + ok);
    rmSync(root, { recursive: true, force: true });
  });

  it('a writer killed with SIGKILL 100 times never leaves a torn envelope', async () => {
    const root = mkdtempSync(join(tmpdir(), 'ke-procs-'));
    const store = new DiskStore(root);
    await store.create(index, sampleBlob(index));
    let lastVersion = 1;
    for (let kill = 0; kill < 100; kill++) {
      const { child, output } = startWorker(['loop', root, index], { KE_NO_WAIT: '1' });
      // Wait until it is pushing, then kill it at a random moment.
      await new Promise<void>((resolve) => child.stdout!.once('data', () => resolve()));
      await new Promise((r) => setTimeout(r, 2 + Math.random() * 25));
      child.kill('SIGKILL');
      await output;
      const blob = await store.get(index); // decodes whole (CRC and structure), or throws
      expect(blob.version).toBeGreaterThanOrEqual(lastVersion);
      expect(blob.wrappedKek.length === 60 || blob.wrappedKek.length === 4000).toBe(true);
      if (blob.wrappedKek.length === 4000) expect(new Set(blob.wrappedKek).size).toBe(1);
      lastVersion = blob.version;
    }
    // Still writable with compare-and-set after all that.
    await store.push(index, sampleBlob(index, { version: lastVersion + 1 }), {
      expectedVersion: lastVersion,
    });
    expect((await store.get(index)).version).toBe(lastVersion + 1);
    // The workers were writing when killed. How many writes land in 2–27 ms depends on the
    // machine's load (on a busy 2-core VM, about half a write per kill), not on correctness.
    expect(lastVersion).toBeGreaterThan(10);
    rmSync(root, { recursive: true, force: true });
  }, 180_000);

  it('temporary files of writers killed mid-write are removed by the next write to their folder', async () => {
    const root = mkdtempSync(join(tmpdir(), 'ke-procs-'));
    const store = new DiskStore(root);
    await store.create(index, sampleBlob(index));
    const folders = {
      loop: join(root, index, ENVELOPE_DIR),
      'records-loop': join(root, index, RECORDS_DIR, 'dek'),
    };
    const temps = (folder: string) => readdirSync(folder).filter((name) => name.startsWith('.tmp-'));
    for (const [mode, folder] of Object.entries(folders)) {
      // Each worker's own writes already sweep what earlier ones left, so count the kills that
      // left a temporary file behind (else nothing is tested) rather than what piles up.
      let leftBehind = 0;
      for (let kill = 0; kill < 40 && leftBehind < 4; kill++) {
        const { child, output } = startWorker([mode, root, index], { KE_NO_WAIT: '1' });
        await new Promise<void>((resolve) => child.stdout!.once('data', () => resolve()));
        await new Promise((r) => setTimeout(r, 2 + Math.random() * 25));
        child.kill('SIGKILL');
        await output; // exited and reaped: its pid is gone
        if (temps(folder).length > 0) leftBehind++;
      }
      expect(leftBehind, mode).toBeGreaterThan(0);
    }
    // A killed worker's pid may already belong to a new process (pid_max is often 32768): its
    // file is rightly kept then. Any other temporary file left after the next write is a bug.
    const stranded = (folder: string) =>
      temps(folder).filter((name) => {
        const pid = /^\.tmp-[0-9a-f]{16}-([0-9]+)-/.exec(name)?.[1];
        return pid === undefined || !isAlive(Number(pid));
      });
    await store.push(index, sampleBlob(index, { version: 1_000_000 }));
    expect(stranded(folders.loop)).toEqual([]);
    await store.putRecord(index, 'dek', 'after', new Uint8Array([1]));
    expect(stranded(folders['records-loop'])).toEqual([]);
    expect((await store.get(index)).version).toBe(1_000_000);
    rmSync(root, { recursive: true, force: true });
  }, 120_000);
});
