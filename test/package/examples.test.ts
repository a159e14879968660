/**
 * Every program in `examples/` runs and prints what `expected` below says. The package
 * names are pointed at the sources (as test/readme.test.ts does), so no build is needed.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, expect, it } from 'vitest';

const repo = join(import.meta.dirname, '../..');
const dir = mkdtempSync(join(tmpdir(), 'ke-examples-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** What each example prints. */
const expected: Record<string, string> = {
  'byok-aws-kms.ts': 'aws-kms true card ending 4242',
};

it('every example has its expected output here', () => {
  expect(
    readdirSync(join(repo, 'examples'))
      .filter((f) => f.endsWith('.ts'))
      .sort(),
  ).toEqual(Object.keys(expected).sort());
});

it.each(Object.entries(expected))('examples/%s runs', (file, output) => {
  const source = readFileSync(join(repo, 'examples', file), 'utf8')
    .replaceAll("from 'kms-envelope/testing'", `from '${join(repo, 'src/testing/index.ts')}'`)
    .replaceAll("from 'kms-envelope'", `from '${join(repo, 'src/index.ts')}'`);
  const script = join(dir, file.replace(/\.ts$/, '.mts'));
  writeFileSync(script, source);
  const tsx = pathToFileURL(join(repo, 'node_modules/tsx/dist/loader.mjs')).href;
  const run = spawnSync(process.execPath, ['--import', tsx, script], {
    cwd: dir,
    encoding: 'utf8',
    env: { ...process.env, NODE_NO_WARNINGS: '1' },
    timeout: 30_000,
  });
  expect(run.stderr).toBe('');
  expect(run.stdout.trim()).toBe(output);
});
