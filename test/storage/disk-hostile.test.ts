/**
 * The disk store against a store writer: someone who can write the storage folder but not the
 * KMS. Planted files and links must each give an immediate typed, non-retryable error, never a
 * hang, an unbounded read, or a read or write outside the root.
 *
 * Reads of planted files run in a child process with a deadline: a store that waits on a FIFO
 * or reads /dev/zero would otherwise hang (or exhaust) the test runner itself.
 */
import { spawn, spawnSync } from 'node:child_process';
import {
  closeSync,
  ftruncateSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { encodeKmsBlob } from '../../src/envelope/codec.js';
import { EnvelopeExistsError, EnvelopeNotFoundError, MalformedEnvelopeError } from '../../src/errors.js';
import { parseIndexName } from '../../src/names.js';
import { DiskStore, ENVELOPE_DIR, RECORDS_DIR, temporaryFileName } from '../../src/storage/disk.js';
import { sampleBlob } from '../helpers/blobs.js';
import { findSecret } from '../helpers/find-secret.js';

const worker = join(import.meta.dirname, '../helpers/disk-worker.ts');
const repo = join(import.meta.dirname, '../..');
const index = parseIndexName('orders');
const GiB = 1024 * 1024 * 1024;

const roots: string[] = [];
function newRoot(): string {
  const root = mkdtempSync(join(tmpdir(), 'ke-hostile-'));
  roots.push(root);
  return root;
}
afterAll(() => {
  for (const root of roots) rmSync(root, { recursive: true, force: true });
});

/** What one store call did in the child: its error (if any), time taken and peak RSS. */
interface Outcome {
  readonly op: string;
  readonly ok: boolean;
  readonly error?: string;
  readonly retryable?: boolean;
  readonly detail?: string;
  readonly ms: number;
  readonly maxRssKb: number;
}

/**
 * Runs store reads in a fresh process; one outcome per op, in order. An op that has not answered
 * when the deadline passes is reported as `hung` (and the child killed).
 */
function readInChild(
  root: string,
  ops: readonly string[],
  deadlineMs = 15_000,
): Promise<(Outcome | 'hung')[]> {
  const child = spawn(process.execPath, ['--import', 'tsx', worker, 'read', root, index, ...ops], {
    cwd: repo,
    env: { ...process.env, KE_NO_WAIT: '1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => {
    out += d;
  });
  child.stderr.on('data', (d) => {
    err += d;
  });
  const timer = setTimeout(() => child.kill('SIGKILL'), deadlineMs);
  return new Promise((resolve, reject) => {
    // 'close', not 'exit': 'exit' can come before the last of the child's stdout was read, and an
    // answered op then looked hung (seen once in a full run).
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (code !== 0 && signal !== 'SIGKILL') return reject(new Error(`worker failed (${code}): ${err}`));
      const done = out
        .split('\n')
        .filter((line) => line !== '')
        .map((line) => JSON.parse(line) as Outcome);
      resolve(ops.map((_, i) => done[i] ?? 'hung'));
    });
  });
}

/** Every outcome a refusal: MalformedEnvelopeError, not retryable, fast, without a large read. */
function expectRefused(outcomes: readonly (Outcome | 'hung')[], reason: RegExp): void {
  for (const outcome of outcomes) {
    expect(outcome).not.toBe('hung');
    const o = outcome as Outcome;
    expect(o, o.op).toMatchObject({ ok: false, error: 'MalformedEnvelopeError', retryable: false });
    expect(o.detail, o.op).toMatch(reason);
    expect(o.ms, o.op).toBeLessThan(2000);
    expect(o.maxRssKb, o.op).toBeLessThan(512 * 1024); // a 1 GiB read would show
  }
}

/** A root whose index has a valid envelope (generation 1), and the envelope folder. */
async function rootWithEnvelope(): Promise<{ root: string; dir: string }> {
  const root = newRoot();
  await new DiskStore(root).create(index, sampleBlob(index));
  return { root, dir: join(root, index, ENVELOPE_DIR) };
}

/** A folder outside the root holding a valid envelope of the index as generation 1. */
function outsideEnvelopeFolder(version = 7): string {
  const outside = newRoot();
  writeFileSync(join(outside, '1.kmsb'), encodeKmsBlob(sampleBlob(index, { version })));
  return outside;
}

function sparseFile(path: string, size: number): void {
  const fd = openSync(path, 'w');
  ftruncateSync(fd, size); // a hole: nothing is written
  closeSync(fd);
}

const SYMLINK = /symbolic link/;
const NOT_REGULAR = /not a regular file/;
const TOO_LARGE = /larger than 65536 bytes/;

/** A hostile file: what it is, how to plant it at a path, and the reason its refusal gives. */
type Case = [string, (path: string) => void, RegExp];

/** What a store writer can plant as an envelope or a record file (`tooLarge`: its limit's reason). */
function planted(tooLarge: RegExp): Case[] {
  return [
    ['a FIFO', (path) => spawnSync('mkfifo', [path]), NOT_REGULAR],
    ['a symlink to /dev/zero', (path) => symlinkSync('/dev/zero', path), SYMLINK],
    ['a symlink to /etc/passwd', (path) => symlinkSync('/etc/passwd', path), SYMLINK],
    ['a dangling symlink', (path) => symlinkSync('/nonexistent/file', path), SYMLINK],
    ['a 1 GiB sparse file', (path) => sparseFile(path, GiB), tooLarge],
  ];
}

describe('disk store: planted envelope files', () => {
  const envelopeOps = ['get', 'getEncoded'];
  const cases: Case[] = [
    ...planted(TOO_LARGE),
    [
      'a symlink to a valid envelope outside the root',
      (path) => symlinkSync(join(outsideEnvelopeFolder(), '1.kmsb'), path),
      SYMLINK,
    ],
    ['a file one byte over the limit', (path) => sparseFile(path, 64 * 1024 + 1), TOO_LARGE],
    ['a folder', (path) => mkdirSync(path), NOT_REGULAR],
  ];
  if (process.getuid?.() === 0) {
    cases.push(['a character device (/dev/zero, mknod)', (path) => mknod(path, 1, 5), NOT_REGULAR]);
  }

  it.concurrent.each(cases)(
    '%s as the newest generation is refused at once by get and getEncoded',
    async (_, plant, reason) => {
      const { root, dir } = await rootWithEnvelope();
      plant(join(dir, '2.kmsb'));
      expectRefused(await readInChild(root, envelopeOps), reason);
    },
  );

  it.concurrent('a symlinked index folder is refused by get and getEncoded (it holds a valid envelope)', async () => {
    const root = newRoot();
    const outsideIndex = newRoot();
    symlinkSync(outsideEnvelopeFolder(), join(outsideIndex, ENVELOPE_DIR));
    symlinkSync(outsideIndex, join(root, index));
    expectRefused(await readInChild(root, envelopeOps), SYMLINK);
  });

  it.concurrent('a symlinked kmsblob folder is refused by get and getEncoded (it holds a valid envelope)', async () => {
    const root = newRoot();
    mkdirSync(join(root, index));
    symlinkSync(outsideEnvelopeFolder(), join(root, index, ENVELOPE_DIR));
    expectRefused(await readInChild(root, envelopeOps), SYMLINK);
  });

  it('a kmsblob that is a file is malformed, not a retryable store outage', async () => {
    const root = newRoot();
    mkdirSync(join(root, index));
    writeFileSync(join(root, index, ENVELOPE_DIR), 'x');
    const store = new DiskStore(root);
    for (const read of [store.get(index), store.getEncoded(index)]) {
      const err = await read.catch((e: unknown) => e);
      expect(err).toBeInstanceOf(MalformedEnvelopeError);
      expect((err as MalformedEnvelopeError).retryable).toBe(false);
    }
  });

  it('a unix socket as the newest generation is malformed, not a retryable store outage', async () => {
    const { root, dir } = await rootWithEnvelope();
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(join(dir, '2.kmsb'), resolve));
    try {
      const store = new DiskStore(root);
      for (const read of [store.get(index), store.getEncoded(index)]) {
        const err = await read.catch((e: unknown) => e);
        expect(err).toBeInstanceOf(MalformedEnvelopeError);
        expect((err as MalformedEnvelopeError).detail).toMatch(NOT_REGULAR);
      }
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it('a refusal names the file, never the bytes it points to', async () => {
    const { root, dir } = await rootWithEnvelope();
    const outside = sampleBlob(index, { version: 7 });
    const outsideDir = newRoot();
    writeFileSync(join(outsideDir, '1.kmsb'), encodeKmsBlob(outside));
    symlinkSync(join(outsideDir, '1.kmsb'), join(dir, '2.kmsb'));
    const err = await new DiskStore(root).get(index).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(MalformedEnvelopeError);
    expect((err as Error).message).toContain('orders/kmsblob/2.kmsb');
    expect(findSecret(err, outside.wrappedKek)).toBeUndefined();
  });
});

describe('disk store: planted record files and folders', () => {
  const recordOps = ['getRecord:dek:a', 'listRecords:dek'];
  const cases = planted(/larger than 131072 bytes/);

  it.concurrent.each(cases)(
    '%s as a record is refused at once by getRecord and listRecords',
    async (_, plant, reason) => {
      const root = newRoot();
      await new DiskStore(root).putRecord(index, 'dek', 'b', new Uint8Array([1]));
      plant(join(root, index, RECORDS_DIR, 'dek', 'a'));
      expectRefused(await readInChild(root, recordOps), reason);
    },
  );

  it.concurrent.each([
    ['records', RECORDS_DIR],
    ['records/dek', join(RECORDS_DIR, 'dek')],
  ])('a symlinked %s folder is refused by getRecord and listRecords', async (_, folder) => {
    const root = newRoot();
    const outside = newRoot();
    mkdirSync(join(outside, 'dek'));
    writeFileSync(join(outside, 'dek', 'a'), 'outside');
    writeFileSync(join(outside, 'a'), 'outside');
    mkdirSync(join(root, index, RECORDS_DIR), { recursive: true });
    if (folder === RECORDS_DIR) rmSync(join(root, index, RECORDS_DIR), { recursive: true });
    symlinkSync(folder === RECORDS_DIR ? outside : join(outside, 'dek'), join(root, index, folder));
    expectRefused(await readInChild(root, recordOps), SYMLINK);
  });

  it('a planted record is repaired by putRecord or deleteRecord, which replace the link, never its target', async () => {
    const root = newRoot();
    const store = new DiskStore(root);
    await store.putRecord(index, 'dek', 'b', new Uint8Array([1]));
    const target = join(newRoot(), 'target');
    writeFileSync(target, 'outside');
    symlinkSync(target, join(root, index, RECORDS_DIR, 'dek', 'a'));
    symlinkSync(target, join(root, index, RECORDS_DIR, 'dek', 'c'));
    await expect(store.getRecord(index, 'dek', 'a')).rejects.toThrow(MalformedEnvelopeError);
    await store.putRecord(index, 'dek', 'a', new Uint8Array([2]));
    await store.deleteRecord(index, 'dek', 'c');
    expect(await store.getRecord(index, 'dek', 'a')).toEqual(new Uint8Array([2]));
    expect([...(await store.listRecords(index, 'dek')).keys()]).toEqual(['a', 'b']);
    expect(readFileSync(target, 'utf8')).toBe('outside');
  });
});

describe('disk store: writes never follow a symlinked folder out of the root', () => {
  it('create, push, compare-and-set and delete refuse a symlinked index or kmsblob folder', async () => {
    for (const linked of ['index', 'kmsblob']) {
      const root = newRoot();
      const outside = newRoot();
      if (linked === 'index') {
        symlinkSync(outside, join(root, index));
      } else {
        mkdirSync(join(root, index));
        symlinkSync(outside, join(root, index, ENVELOPE_DIR));
      }
      const store = new DiskStore(root);
      const writes = [
        store.create(index, sampleBlob(index)),
        store.push(index, sampleBlob(index)),
        store.push(index, sampleBlob(index, { version: 2 }), { expectedVersion: 1 }),
        store.delete(index),
      ];
      if (linked === 'index') {
        writes.push(store.putRecord(index, 'dek', 'a', new Uint8Array([1])));
        writes.push(store.createRecord(index, 'meta', 'lock', new Uint8Array([1])).then(() => {}));
      }
      for (const write of writes) {
        const err = await write.catch((e: unknown) => e);
        expect(err, linked).toBeInstanceOf(MalformedEnvelopeError);
        expect((err as MalformedEnvelopeError).retryable).toBe(false);
      }
      expect(readdirSync(outside), linked).toEqual([]);
    }
  });

  it('record writes and deletes refuse a symlinked records or records/<kind> folder', async () => {
    for (const folder of [RECORDS_DIR, join(RECORDS_DIR, 'dek')]) {
      const root = newRoot();
      const outside = newRoot();
      mkdirSync(join(outside, 'dek'));
      writeFileSync(join(outside, 'dek', 'a'), 'outside');
      mkdirSync(join(root, index));
      if (folder !== RECORDS_DIR) mkdirSync(join(root, index, RECORDS_DIR));
      symlinkSync(folder === RECORDS_DIR ? outside : join(outside, 'dek'), join(root, index, folder));
      const store = new DiskStore(root);
      const writes = [
        store.putRecord(index, 'dek', 'b', new Uint8Array([1])),
        store.putRecords(index, 'dek', new Map([['b', new Uint8Array([1])]])),
        store.createRecord(index, 'dek', 'b', new Uint8Array([1])),
        store.deleteRecord(index, 'dek', 'a'), // would remove outside/dek/a through the link
      ];
      for (const write of writes) await expect(write, folder).rejects.toThrow(MalformedEnvelopeError);
      expect(readdirSync(outside), folder).toEqual(['dek']);
      expect(readdirSync(join(outside, 'dek')), folder).toEqual(['a']);
      expect(readFileSync(join(outside, 'dek', 'a'), 'utf8')).toBe('outside');
    }
  });
});

describe('disk store: empty files and tombstones', () => {
  it('an empty envelope file is MalformedEnvelopeError, not "no envelope"', async () => {
    const { root, dir } = await rootWithEnvelope();
    writeFileSync(join(dir, '2.kmsb'), '');
    const store = new DiskStore(root);
    for (const read of [store.get(index), store.getEncoded(index)]) {
      const err = await read.catch((e: unknown) => e);
      expect(err).toBeInstanceOf(MalformedEnvelopeError);
      expect((err as MalformedEnvelopeError).detail).toMatch(/empty/);
    }
    // Something is there, as with a corrupt envelope: no create over it, no compare-and-set.
    await expect(store.create(index, sampleBlob(index))).rejects.toThrow(EnvelopeExistsError);
    await expect(
      store.push(index, sampleBlob(index, { version: 2 }), { expectedVersion: 1 }),
    ).rejects.toThrow(MalformedEnvelopeError);
  });

  it('an index deleted by an older version (an empty tombstone) is confirmed deleted by delete', async () => {
    const { root, dir } = await rootWithEnvelope();
    writeFileSync(join(dir, '2.kmsb'), ''); // what delete wrote before tombstones had content
    const store = new DiskStore(root);
    await store.delete(index);
    await expect(store.get(index)).rejects.toThrow(EnvelopeNotFoundError);
    await store.create(index, sampleBlob(index, { version: 3 }));
    expect((await store.get(index)).version).toBe(3);
  });

  it("delete's tombstone reads as no envelope from another store on the same folder", async () => {
    const { root } = await rootWithEnvelope();
    await new DiskStore(root).delete(index);
    const other = new DiskStore(root);
    await expect(other.get(index)).rejects.toThrow(EnvelopeNotFoundError);
    await expect(other.getEncoded(index)).rejects.toThrow(EnvelopeNotFoundError);
    await other.delete(index); // nothing more to delete: no new generation
    expect(readdirSync(join(root, index, ENVELOPE_DIR)).sort()).toEqual(['1.kmsb', '2.kmsb']);
  });
});

describe('disk store: a dangling symlink does not leave an index stuck', () => {
  it('get is a non-retryable MalformedEnvelopeError; a plain push repairs the index', async () => {
    const { root, dir } = await rootWithEnvelope();
    symlinkSync('/nonexistent/kmsb', join(dir, '2.kmsb'));
    const store = new DiskStore(root);
    const started = performance.now();
    const err = await store.get(index).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(MalformedEnvelopeError);
    expect((err as MalformedEnvelopeError).retryable).toBe(false);
    expect(performance.now() - started).toBeLessThan(500);
    await expect(store.create(index, sampleBlob(index))).rejects.toThrow(EnvelopeExistsError);
    await store.push(index, sampleBlob(index, { version: 3 }));
    expect((await new DiskStore(root).get(index)).version).toBe(3);
  });

  it('delete removes an index whose newest generation is a dangling symlink', async () => {
    const { root, dir } = await rootWithEnvelope();
    symlinkSync('/nonexistent/kmsb', join(dir, '2.kmsb'));
    const store = new DiskStore(root);
    await store.delete(index);
    await expect(store.get(index)).rejects.toThrow(EnvelopeNotFoundError);
    await store.create(index, sampleBlob(index));
    expect((await store.get(index)).version).toBe(1);
  });
});

describe('disk store: temporary files of dead writers', () => {
  /** The pid of a process that has exited (and been reaped). */
  function deadPid(): number {
    const child = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))']);
    return Number(child.stdout.toString());
  }

  it('the next write to a folder removes temporary files whose writer is dead, and keeps live ones', async () => {
    const { root, dir } = await rootWithEnvelope();
    const store = new DiskStore(root);
    await store.putRecord(index, 'dek', 'a', new Uint8Array([1]));
    const records = join(root, index, RECORDS_DIR, 'dek');
    const live = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1e6)'], { stdio: 'ignore' });
    try {
      const dead = [temporaryFileName(deadPid()), temporaryFileName(deadPid())];
      const kept = [temporaryFileName(live.pid!), temporaryFileName(process.pid), '.tmp-0123456789abcdef'];
      for (const folder of [dir, records])
        for (const name of [...dead, ...kept]) writeFileSync(join(folder, name), 'half-written');
      await store.push(index, sampleBlob(index, { version: 2 }));
      await store.putRecord(index, 'dek', 'b', new Uint8Array([2]));
      for (const folder of [dir, records]) {
        const temps = readdirSync(folder).filter((name) => name.startsWith('.tmp-'));
        expect(temps.sort()).toEqual([...kept].sort());
      }
    } finally {
      live.kill('SIGKILL');
      await new Promise((resolve) => live.once('exit', resolve));
    }
    await store.push(index, sampleBlob(index, { version: 3 }));
    await store.createRecord(index, 'dek', 'c', new Uint8Array([3]));
    for (const folder of [dir, records]) {
      const temps = readdirSync(folder).filter((name) => name.startsWith('.tmp-'));
      expect(temps).not.toContain(expect.stringContaining(`-${live.pid}-`));
    }
    expect((await store.get(index)).version).toBe(3);
  });
});

/** mknod of a character device (needs root). */
function mknod(path: string, major: number, minor: number): void {
  const result = spawnSync('mknod', [path, 'c', String(major), String(minor)]);
  if (result.status !== 0) throw new Error(`mknod failed: ${result.stderr}`);
}
