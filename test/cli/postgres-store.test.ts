import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ExitCode } from '../../src/cli/exit-codes.js';
import { type PostgresServerHandle, startPostgres } from '../../src/testing/postgres-server.js';
import { devMasterEnv, localSlotFlags } from '../helpers/cli.js';
import { hasPostgres } from '../helpers/services.js';
import { cli } from './in-process.js';

describe.skipIf(!hasPostgres())('kms-envelope CLI with --store postgres://', () => {
  let server: PostgresServerHandle;
  beforeAll(async () => {
    server = await startPostgres();
  });
  afterAll(async () => {
    await server?.stop();
  });

  it('create / get / rotate / delete against PostgreSQL (postgres:// and postgresql://), never printing the password', async () => {
    const env = devMasterEnv();
    const url = server.connectionString; // postgresql://postgres:<password>@127.0.0.1:<port>/postgres
    const short = url.replace(/^postgresql:/, 'postgres:');
    const runs = [
      await cli([...localSlotFlags(url), 'create', 'orders'], env),
      await cli([...localSlotFlags(short), 'get', 'orders', '--json'], env),
      await cli([...localSlotFlags(url), 'rotate', 'orders'], env),
      await cli([...localSlotFlags(short), 'verify', 'orders'], env),
    ];
    for (const run of runs) expect(run.code, run.stderr).toBe(0);
    expect(JSON.parse(runs[1]!.stdout)).toMatchObject({ indexName: 'orders', version: 1 });
    expect(runs[2]!.stdout).toMatch(/rotated "orders" to version 2/);
    expect(await server.psql('SELECT version FROM public.kms_envelopes')).toBe('2');
    expect((await cli([...localSlotFlags(url), 'delete', 'orders'], env)).code).toBe(0);
    expect(await server.psql('SELECT count(*) FROM public.kms_envelopes')).toBe('0');

    await server.shutdown();
    const down = await cli([...localSlotFlags(url), 'get', 'orders'], env);
    await server.start();
    expect(down.code).toBe(ExitCode.unavailable);
    expect(down.stderr).toMatch(/PostgreSQL is unavailable/);
    for (const run of [...runs, down]) expect(run.stdout + run.stderr).not.toContain(server.password);
  });
});
