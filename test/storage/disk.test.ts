import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseIndexName } from '../../src/names.js';
import { DiskStore, ENVELOPE_DIR, RETAINED_GENERATIONS } from '../../src/storage/disk.js';
import { sampleBlob } from '../helpers/blobs.js';
import { runStoreConformance } from './conformance.js';

function newRoot() {
  return mkdtempSync(join(tmpdir(), 'ke-disk-'));
}

runStoreConformance('disk', async () => {
  const root = newRoot();
  const store = new DiskStore(root);
  return {
    store,
    another: async () => new DiskStore(root),
    corrupt: async (index) => {
      const dir = join(root, index, ENVELOPE_DIR);
      const newest = readdirSync(dir)
        .filter((f) => f.endsWith('.kmsb'))
        .sort((a, b) => Number.parseInt(b, 10) - Number.parseInt(a, 10))[0]!;
      writeFileSync(join(dir, newest), 'not an envelope at all, just junk bytes');
    },
    cleanup: async () => rmSync(root, { recursive: true, force: true }),
  };
});

describe('disk store layout', () => {
  const idx = parseIndexName('orders');

  it('keeps the envelope beside the index keystore, files 0600 and folders 0700', async () => {
    const root = newRoot();
    const store = new DiskStore(join(root, 'nested', 'store'));
    await store.create(idx, sampleBlob(idx));
    const dir = join(root, 'nested', 'store', 'orders', ENVELOPE_DIR);
    for (const d of [
      join(root, 'nested'),
      join(root, 'nested', 'store'),
      join(root, 'nested', 'store', 'orders'),
      dir,
    ]) {
      expect(statSync(d).mode & 0o777).toBe(0o700);
    }
    const files = readdirSync(dir);
    expect(files).toEqual(['1.kmsb']);
    expect(statSync(join(dir, '1.kmsb')).mode & 0o777).toBe(0o600);
    rmSync(root, { recursive: true, force: true });
  });

  it('keeps a bounded number of old generations and no temporary files', async () => {
    const root = newRoot();
    const store = new DiskStore(root);
    await store.create(idx, sampleBlob(idx));
    for (let v = 2; v <= 60; v++)
      await store.push(idx, sampleBlob(idx, { version: v }), { expectedVersion: v - 1 });
    const files = readdirSync(join(root, 'orders', ENVELOPE_DIR));
    expect(files.length).toBeLessThanOrEqual(RETAINED_GENERATIONS);
    expect(files.some((f) => f.startsWith('.tmp-'))).toBe(false);
    expect((await store.get(idx)).version).toBe(60);
    rmSync(root, { recursive: true, force: true });
  });

  it('removes temporary files that killed writers left more than an hour ago, and only those', async () => {
    const root = newRoot();
    const store = new DiskStore(root);
    await store.create(idx, sampleBlob(idx));
    const dir = join(root, 'orders', ENVELOPE_DIR);
    writeFileSync(join(dir, '.tmp-old'), 'left by a killed writer');
    const twoHoursAgo = new Date(Date.now() - 2 * 60 * 60 * 1000);
    utimesSync(join(dir, '.tmp-old'), twoHoursAgo, twoHoursAgo);
    writeFileSync(join(dir, '.tmp-fresh'), 'a writer at work');
    writeFileSync(join(dir, '99x.kmsb'), 'not a generation name'); // ignored, never removed
    await store.push(idx, sampleBlob(idx, { version: 2 }));
    expect(readdirSync(dir).sort()).toEqual(['.tmp-fresh', '1.kmsb', '2.kmsb', '99x.kmsb']);
    expect((await store.get(idx)).version).toBe(2);
    rmSync(root, { recursive: true, force: true });
  });

  it('listing records removes temporary record files older than an hour, and only those', async () => {
    const root = newRoot();
    const store = new DiskStore(root);
    await store.putRecord(idx, 'dek', 'a', new Uint8Array([1]));
    const dir = join(root, 'orders', 'records', 'dek');
    writeFileSync(join(dir, '.tmp-old'), 'left by a killed writer');
    const twoHoursAgo = new Date(Date.now() - 2 * 60 * 60 * 1000);
    utimesSync(join(dir, '.tmp-old'), twoHoursAgo, twoHoursAgo);
    writeFileSync(join(dir, '.tmp-fresh'), 'a writer at work');
    expect([...(await store.listRecords(idx, 'dek')).keys()]).toEqual(['a']);
    expect(readdirSync(dir).sort()).toEqual(['.tmp-fresh', 'a']);
    rmSync(root, { recursive: true, force: true });
  });

  it('a delete leaves a tombstone so that a stale compare-and-set cannot resurrect the envelope', async () => {
    const root = newRoot();
    const store = new DiskStore(root);
    await store.create(idx, sampleBlob(idx));
    await store.delete(idx);
    const files = readdirSync(join(root, 'orders', ENVELOPE_DIR));
    expect(files).toContain('2.kmsb');
    // A marker text, not an empty file (an empty one is truncated or planted: malformed).
    expect(readFileSync(join(root, 'orders', ENVELOPE_DIR, '2.kmsb'), 'utf8')).toMatch(/deleted/);
    await expect(store.push(idx, sampleBlob(idx, { version: 2 }), { expectedVersion: 1 })).rejects.toThrow(
      /version conflict/,
    );
    rmSync(root, { recursive: true, force: true });
  });

  it('plain pushes from two stores on one folder always leave the latest write (stale hints only cost a retry)', async () => {
    const root = newRoot();
    const a = new DiskStore(root);
    const b = new DiskStore(root);
    for (let v = 1; v <= 40; v++) {
      const writer = v % 3 === 0 ? b : a;
      await writer.push(idx, sampleBlob(idx, { version: v }));
      expect((await a.get(idx)).version).toBe(v);
      expect((await b.get(idx)).version).toBe(v);
    }
    await b.delete(idx);
    await a.push(idx, sampleBlob(idx, { version: 99 }));
    expect((await b.get(idx)).version).toBe(99);
    rmSync(join(root, 'orders'), { recursive: true, force: true }); // folder removed behind the store's back
    await a.push(idx, sampleBlob(idx, { version: 100 }));
    expect((await b.get(idx)).version).toBe(100);
    rmSync(root, { recursive: true, force: true });
  });
});
