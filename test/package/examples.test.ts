/**
 * Every program in `examples/` runs and prints what `expected` below says. The package
 * names are pointed at the sources (as test/readme.test.ts does), so no build is needed. The
 * rewritten programs run from a folder inside the repository (`.kms-envelope/`, ignored by git and
 * biome), so that the other packages they import (fastify, the AWS SDK) resolve from its
 * node_modules as they would in a user's project.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, expect, it } from 'vitest';

const repo = join(import.meta.dirname, '../..');
mkdirSync(join(repo, '.kms-envelope'), { recursive: true });
const dir = mkdtempSync(join(repo, '.kms-envelope', 'examples-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** What each example prints. */
const expected: Record<string, string> = {
  'byok-aws-kms.ts': 'aws-kms true card ending 4242',
  'fastify-service.ts': [
    'POST /indexes/customers: 201',
    'GET /indexes/customers/records/1: alice@example.com',
    'stored as a wire token: true',
    'KMS calls for 3 requests: 0',
    'unknown index: 404, index created twice: 409',
    'master key left in the environment: false',
  ].join('\n'),
  'testing-with-fakes.ts': [
    'ok - a value round-trips through the fake KMS',
    'ok - a throttled KMS call is retried and succeeds',
    'ok - a disabled key fails with KeyDisabledError, not a generic error',
    'ok - another identity is denied with AccessDeniedError naming the index',
  ].join('\n'),
};

it('every example has its expected output here', () => {
  expect(
    readdirSync(join(repo, 'examples'))
      .filter((f) => f.endsWith('.ts'))
      .sort(),
  ).toEqual(Object.keys(expected).sort());
});

it.each(Object.entries(expected))('examples/%s runs', (file, output) => {
  const source = readFileSync(join(repo, 'examples', file), 'utf8');
  // Users import the package by name only: no relative import may reach into the sources.
  expect(source).not.toMatch(/from '\.\.?\//);
  const rewritten = source
    .replaceAll("from 'kms-envelope/testing'", `from '${join(repo, 'src/testing/index.ts')}'`)
    .replaceAll("from 'kms-envelope'", `from '${join(repo, 'src/index.ts')}'`);
  const script = join(dir, file.replace(/\.ts$/, '.mts'));
  writeFileSync(script, rewritten);
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

it('every example type-checks as a user’s code would (package names mapped to the sources)', () => {
  const config = join(dir, 'tsconfig.json');
  writeFileSync(
    config,
    JSON.stringify({
      extends: join(repo, 'tsconfig.json'),
      compilerOptions: {
        noEmit: true,
        rootDir: repo,
        paths: {
          'kms-envelope': [join(repo, 'src/index.ts')],
          'kms-envelope/testing': [join(repo, 'src/testing/index.ts')],
        },
      },
      include: [join(repo, 'examples')],
    }),
  );
  const tsc = spawnSync(process.execPath, [join(repo, 'node_modules/typescript/bin/tsc'), '-p', config], {
    encoding: 'utf8',
    timeout: 120_000,
  });
  expect(tsc.stdout + tsc.stderr).toBe('');
  expect(tsc.status).toBe(0);
}, 120_000);
