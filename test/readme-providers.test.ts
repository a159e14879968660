/**
 * The README's `vault-transit` and `recipient` examples run as written, each on its own, with the
 * package names pointing at this checkout, and print what their `console.log(...); // …` comments
 * say. (They are fenced as `js`: the README tour test runs only `ts` blocks with the main entry
 * rewritten, and the `azure-kv` README test takes every `typescript` block up to the next `##`.)
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { expect, it } from 'vitest';

const repo = join(import.meta.dirname, '..');
const readme = readFileSync(join(repo, 'README.md'), 'utf8');

/** The `js` blocks of the README section that starts with `heading`. */
function blocksOf(heading: string): string[] {
  const start = readme.indexOf(`\n${heading}\n`);
  expect(start, heading).toBeGreaterThan(-1);
  const next = readme.slice(start + heading.length + 2).search(/\n#{2,3} /);
  const section = readme.slice(start, next === -1 ? undefined : start + heading.length + 2 + next);
  return [...section.matchAll(/```js\n([\s\S]*?)```/g)].map((m) => m[1]!);
}

/** What a block's `console.log(...); // <expected>` lines say it prints, in order. */
function expectedOutput(block: string): string[] {
  return [...block.matchAll(/^\s*console\.log\(.*\); \/\/ (.*)$/gm)].map((m) =>
    m[1]!.replace(/ \(.*\)$/, ''),
  );
}

function run(block: string) {
  const script = block
    .replaceAll("from 'kms-envelope/providers/recipient'", `from '${join(repo, 'providers/recipient.ts')}'`)
    .replaceAll("from 'kms-envelope/testing'", `from '${join(repo, 'src/testing/index.ts')}'`)
    .replaceAll("from 'kms-envelope'", `from '${join(repo, 'src/index.ts')}'`);
  expect(script).not.toMatch(/from 'kms-envelope/);
  const file = join(mkdtempSync(join(tmpdir(), 'ke-readme-providers-')), 'example.mts');
  writeFileSync(file, script);
  const tsx = pathToFileURL(join(repo, 'node_modules/tsx/dist/loader.mjs')).href;
  return spawnSync(process.execPath, ['--import', tsx, file], {
    cwd: repo, // so that @noble/post-quantum resolves
    encoding: 'utf8',
    env: { PATH: process.env.PATH },
    timeout: 60_000,
  });
}

it.each(['### `vault-transit`', '### `recipient`'])(
  'the README %s example runs and prints what its comments say',
  (heading) => {
    const blocks = blocksOf(heading);
    expect(blocks).toHaveLength(1);
    const expected = expectedOutput(blocks[0]!);
    expect(expected.length).toBeGreaterThanOrEqual(3);
    const result = run(blocks[0]!);
    expect(result.stderr).toBe('');
    expect(result.status).toBe(0);
    expect(result.stdout.trim().split('\n')).toEqual(expected);
  },
);
