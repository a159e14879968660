/**
 * The README's `gcp-kms` example runs as written, against the fake Cloud KMS, with the package
 * names pointing at this checkout. (It is fenced as `typescript`, not `ts`, so the README tour
 * test, which runs every `ts` block as one script and checks its whole output, leaves it to this
 * test.)
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { expect, it } from 'vitest';

const repo = join(import.meta.dirname, '..', '..');

it('the README gcp-kms example runs and prints what its comments say', () => {
  const readme = readFileSync(join(repo, 'README.md'), 'utf8');
  const start = readme.indexOf('### `gcp-kms`');
  const section = readme.slice(start, readme.indexOf('\n### ', start + 1));
  const blocks = [...section.matchAll(/```typescript\n([\s\S]*?)```/g)].map((m) => m[1]!);
  expect(blocks).toHaveLength(1);
  const sdk = createRequire(join(repo, 'package.json')).resolve('@google-cloud/kms');
  const script = blocks[0]!
    .replaceAll("from '@google-cloud/kms'", `from '${sdk}'`)
    .replaceAll("from 'kms-envelope/providers/gcp-kms'", `from '${join(repo, 'providers/gcp-kms.ts')}'`)
    .replaceAll("from 'kms-envelope/testing'", `from '${join(repo, 'src/testing/index.ts')}'`)
    .replaceAll("from 'kms-envelope'", `from '${join(repo, 'src/index.ts')}'`);
  const file = join(mkdtempSync(join(tmpdir(), 'ke-readme-gcp-')), 'example.mts');
  writeFileSync(file, script);
  const tsx = pathToFileURL(join(repo, 'node_modules/tsx/dist/loader.mjs')).href;
  const run = spawnSync(process.execPath, ['--import', tsx, file], {
    encoding: 'utf8',
    env: { ...process.env, METADATA_SERVER_DETECTION: 'none' },
    timeout: 30_000,
  });
  expect(run.stderr).toBe('');
  expect(run.stdout.trim().split('\n')).toEqual([
    'projects/my-project/locations/europe-west1/keyRings/app/cryptoKeys/orders-kek/cryptoKeyVersions/1',
    'true',
  ]);
});
