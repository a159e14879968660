/**
 * KEK rotation survives SIGKILL at random points: a child process rotates the KEK of an index
 * with 1,000 DEK records, and is killed 50 times. After every kill each value encrypted before
 * still decrypts, and a final run completes the rotation.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { KmsEnvelopeClient } from '../../src/client.js';
import { IndexKeyring } from '../../src/keyring/keyring.js';
import { parseIndexName } from '../../src/names.js';
import { StorageConfig } from '../../src/storage/config.js';

const worker = join(import.meta.dirname, '../helpers/rotate-worker.ts');
const repo = join(import.meta.dirname, '../..');
const DEKS = 1000;
const KILLS = 50;

it(`rotateKek of ${DEKS} DEK records killed ${KILLS} times: every value stays decryptable, and a rerun completes`, async () => {
  const root = mkdtempSync(join(tmpdir(), 'ke-rotate-'));
  const masterKey = randomBytes(32).toString('base64url');
  const store = StorageConfig.disk(root);
  const index = parseIndexName('big');
  const client = new KmsEnvelopeClient({
    store,
    kms: {
      slots: { dev: { provider: 'local', masterKey: `literal:${masterKey}` } },
      secrets: { allowLiteral: true },
    },
  });
  const keyring = await IndexKeyring.createIndex(client, 'big', { slot: 'dev' });
  const tokens: [string, string][] = [];
  for (let i = 0; i < DEKS; i++) {
    await keyring.createDek();
    tokens.push([await keyring.encryptValue(`value-${i}`), `value-${i}`]);
  }

  async function everyValueDecrypts() {
    const fresh = new IndexKeyring(client, 'big');
    for (const [token, plaintext] of tokens) expect(await fresh.decryptValue(token)).toBe(plaintext);
  }

  let rotationsCompleted = 0;
  let killedMidRotation = 0;
  for (let kill = 0; kill < KILLS; kill++) {
    const child = spawn(process.execPath, ['--import', 'tsx', worker, root, 'big', masterKey], {
      cwd: repo,
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
    const exited = new Promise<void>((resolve, reject) =>
      child.on('exit', (code, signal) =>
        signal === 'SIGKILL' ? resolve() : reject(new Error(`worker exited ${code}: ${err}`)),
      ),
    );
    await new Promise<void>((resolve) => child.stdout.once('data', () => resolve()));
    await new Promise((r) => setTimeout(r, Math.random() * 700));
    child.kill('SIGKILL');
    await exited;
    const completed = (out.match(/rotated/g) ?? []).length;
    rotationsCompleted += completed;
    // Killed mid-rotation when the rotation record is still there.
    if ((await store.getRecord(index, 'meta', 'rotation')) !== undefined) killedMidRotation++;
    await everyValueDecrypts();
  }

  // The rerun finishes whatever rotation the last kill interrupted (or does a fresh one).
  const before = await client.getEnvelope('big');
  const report = await new IndexKeyring(client, 'big').rotateKek();
  expect(report.totalDeks).toBe(DEKS);
  expect((await client.getEnvelope('big')).version).toBe(before.version + 1);
  expect(await store.getRecord(index, 'meta', 'rotation')).toBeUndefined();
  await everyValueDecrypts();
  expect(killedMidRotation).toBeGreaterThanOrEqual(KILLS / 3);
  console.log(
    `rotate-crash: ${KILLS} kills, ${killedMidRotation} mid-rotation, ${rotationsCompleted} rotations completed between kills`,
  );
  rmSync(root, { recursive: true, force: true });
}, 600_000);
