import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { expect, it } from 'vitest';

const repo = join(import.meta.dirname, '../..');

it('without the optional pg package, the Postgres store fails with MissingDependencyError naming it; a supplied pool needs no pg', () => {
  const script = `
    import { PostgresStore } from './src/storage/postgres.ts';
    import { parseIndexName } from './src/names.ts';
    const index = parseIndexName('orders');
    const own = await new PostgresStore({ connectionString: 'postgres://127.0.0.1:1/keys' }).get(index).catch((e) => e);
    const queries = [];
    const pool = { query: async (q) => { queries.push(q.text); return { rowCount: 0, rows: q.text.includes('to_regclass') ? [['true']] : [] }; } };
    const supplied = await new PostgresStore({ pool }).get(index).catch((e) => e);
    console.log(JSON.stringify({ own: { name: own.name, packageName: own.packageName, message: own.message }, supplied: supplied.code, queries: queries.length }));
  `;
  const run = spawnSync(
    process.execPath,
    ['--import', 'tsx', '--import', './test/helpers/without-pg.mjs', '--input-type=module', '-e', script],
    { cwd: repo, encoding: 'utf8', timeout: 60_000 },
  );
  expect(run.status, run.stderr).toBe(0);
  const result = JSON.parse(run.stdout);
  expect(result.own).toMatchObject({ name: 'MissingDependencyError', packageName: 'pg' });
  expect(result.own.message).toMatch(/the Postgres store needs the optional package "pg": npm install pg/);
  expect(result).toMatchObject({ supplied: 'KMS_ENVELOPE_NOT_FOUND', queries: 2 });
});
