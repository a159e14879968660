/**
 * The README's TypeScript examples run as written, each block on its own (as a user pastes one),
 * with the package name pointing at this checkout; each prints what its `console.log` comment says.
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';

const repo = join(import.meta.dirname, '..');
const readme = readFileSync(join(repo, 'README.md'), 'utf8');
const blocks = [...readme.matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1]!);

/** What a block's `console.log(...); // <expected>` lines say it prints, in order. */
function expectedOutput(block: string): string[] {
  return [...block.matchAll(/^\s*console\.log\(.*\); \/\/ (.*)$/gm)].map((m) =>
    m[1]!.replace(/ \(.*\)$/, ''),
  );
}

describe('README examples', () => {
  it('has the tour blocks', () => {
    expect(blocks.length).toBeGreaterThanOrEqual(6);
  });

  it.each(blocks.map((block, i) => [i + 1, block] as const))('block %i runs on its own', (_, block) => {
    const dir = mkdtempSync(join(tmpdir(), 'ke-readme-'));
    const script = join(dir, 'block.mts'); // ESM, for top-level await
    writeFileSync(script, block.replaceAll("from 'kms-envelope'", `from '${join(repo, 'src/index.ts')}'`));
    // --import resolves from the working folder, which is outside the checkout here.
    const tsx = pathToFileURL(join(repo, 'node_modules/tsx/dist/loader.mjs')).href;
    const run = spawnSync(process.execPath, ['--import', tsx, script], {
      cwd: dir,
      encoding: 'utf8',
      // What the README's `export` line sets; nothing else from this process's environment.
      env: {
        PATH: process.env.PATH,
        KMS_MASTER_KEY: randomBytes(32).toString('base64'),
        KMS_BACKUP_KEY: randomBytes(32).toString('hex'),
      },
      timeout: 30_000,
    });
    expect(run.stderr).toBe('');
    expect(run.status).toBe(0);
    const printed = run.stdout.trim() === '' ? [] : run.stdout.trim().split('\n');
    expect(printed).toEqual(expectedOutput(block));
  });
});
