/**
 * The README's `azure-kv` example runs as written, against the fake Key Vault, with the package
 * names pointing at this checkout. (Fenced as `typescript`, so the README tour test leaves it to
 * this test.)
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { expect, it } from 'vitest';

const repo = join(import.meta.dirname, '..', '..');

it('the README azure-kv example runs and prints what its comments say', () => {
  const readme = readFileSync(join(repo, 'README.md'), 'utf8');
  const start = readme.indexOf('### `azure-kv`');
  const end = readme.indexOf('\n## ', start + 1);
  const section = readme.slice(start, end === -1 ? undefined : end);
  const blocks = [...section.matchAll(/```typescript\n([\s\S]*?)```/g)].map((m) => m[1]!);
  expect(blocks).toHaveLength(1);
  const script = blocks[0]!
    .replaceAll("from 'kms-envelope/providers/azure-kv'", `from '${join(repo, 'providers/azure-kv.ts')}'`)
    .replaceAll("from 'kms-envelope/testing'", `from '${join(repo, 'src/testing/index.ts')}'`)
    .replaceAll("from 'kms-envelope'", `from '${join(repo, 'src/index.ts')}'`);
  const dir = mkdtempSync(join(tmpdir(), 'ke-readme-azure-'));
  const file = join(dir, 'example.mts');
  writeFileSync(file, script);
  const tsx = pathToFileURL(join(repo, 'node_modules/tsx/dist/loader.mjs')).href;
  const run = spawnSync(process.execPath, ['--import', tsx, file], {
    cwd: repo, // so that the example's own imports (@azure/keyvault-keys, node-forge) resolve
    encoding: 'utf8',
    timeout: 60_000,
  });
  expect(run.stderr).toBe('');
  expect(run.stdout.trim().split('\n')).toEqual(['true', 'true', 'true']);
});
