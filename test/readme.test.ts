/** The README's API tour runs as written (with the package name pointing at this checkout). */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { expect, it } from 'vitest';

const repo = join(import.meta.dirname, '..');

it('the README examples run and print what their comments say', () => {
  const readme = readFileSync(join(repo, 'README.md'), 'utf8');
  // Every TypeScript example, in order, as one script (later ones use the earlier ones' client).
  const blocks = [...readme.matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1]!);
  expect(blocks.length).toBeGreaterThanOrEqual(2);
  const block = blocks.join('\n');
  const dir = mkdtempSync(join(tmpdir(), 'ke-readme-'));
  const script = join(dir, 'tour.mts'); // ESM, for top-level await
  writeFileSync(script, block.replaceAll("from 'kms-envelope'", `from '${join(repo, 'src/index.ts')}'`));
  // --import resolves from the working folder, which is outside the checkout here.
  const tsx = pathToFileURL(join(repo, 'node_modules/tsx/dist/loader.mjs')).href;
  const run = spawnSync(process.execPath, ['--import', tsx, script], {
    cwd: dir,
    encoding: 'utf8',
    env: {
      ...process.env,
      KMS_MASTER_KEY: randomBytes(32).toString('base64'),
      KMS_BACKUP_KEY: randomBytes(32).toString('hex'),
    },
    timeout: 30_000,
  });
  expect(run.stderr).toBe('');
  expect(run.stdout.trim().split('\n')).toEqual([
    '32 2 backup 3 Kek[redacted]',
    'alice@example.com 1 eyJhYWQiOiJjdHgtdjEifQ== hello',
    '3 2 2',
  ]);
});
