import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ExitCode } from '../../src/cli/exit-codes.js';
import { localSlotFlags } from '../helpers/cli.js';
import { cli } from './in-process.js';

describe('kms-envelope CLI', () => {
  const master = randomBytes(32);
  const dir = mkdtempSync(join(tmpdir(), 'ke-cli-'));
  const env = { DEV_MASTER: master.toString('base64url') };
  const base = localSlotFlags(`disk:${join(dir, 'store')}`);

  it('demo walks through create, get, unwrap, rotate, delete without printing a key', async () => {
    const out = await cli(['demo', '--dir', join(dir, 'demo')]);
    expect(out.stderr).toBe('');
    expect(out.code).toBe(0);
    for (const step of ['1. create', '2. get', '3. unwrap', '4. rotate', '5. delete'])
      expect(out.stdout).toContain(step);
    expect(out.stdout).toMatch(/version 1 → 2/);
    expect(out.stdout).toMatch(/same KEK after rotation: true/);
    expect(out.stdout).toMatch(/EnvelopeNotFoundError/);
    expect(out.stdout).not.toMatch(/[A-Za-z0-9_-]{43}/); // no base64url key anywhere
  });

  it('create / get / verify / rotate / delete, with exit codes per error class', async () => {
    const created = await cli([...base, 'create', 'orders', '--context', 'tenant=acme'], env);
    expect(created.code).toBe(0);
    expect(created.stdout).toMatch(/kms_name\s+dev/);
    expect(created.stdout).not.toMatch(/^kek /m);

    expect((await cli([...base, 'create', 'orders'], env)).code).toBe(ExitCode.exists);

    const got = await cli([...base, 'get', 'orders', '--json'], env);
    expect(got.code).toBe(0);
    const json = JSON.parse(got.stdout) as Record<string, unknown>;
    expect(json).toMatchObject({
      indexName: 'orders',
      kmsName: 'dev',
      provider: 'local',
      version: 1,
      encryptionContext: { tenant: 'acme' },
    });

    const verified = await cli([...base, 'verify', 'orders'], env);
    expect(verified.code).toBe(0);
    expect(verified.stdout).toMatch(/^ok: "orders" version 1/);
    expect(verified.stdout).not.toMatch(/kek /);

    const revealed = await cli([...base, 'verify', 'orders', '--reveal'], env);
    expect(revealed.stdout).toMatch(/^kek [A-Za-z0-9_-]{43}$/m);

    expect((await cli([...base, 'rotate', 'orders'], env)).stdout).toMatch(/rotated "orders" to version 2/);
    expect((await cli([...base, 'get', 'nothing-here'], env)).code).toBe(ExitCode.notFound);

    const wrong = await cli([...base, 'verify', 'orders'], {
      DEV_MASTER: randomBytes(32).toString('base64url'),
    });
    expect(wrong.code).toBe(ExitCode.unwrapFailed);
    expect(wrong.stderr).toMatch(/index "orders"/);

    expect((await cli([...base, 'delete', 'orders'], env)).code).toBe(0);
    expect((await cli([...base, 'delete', 'orders'], env)).code).toBe(0);
  });

  it('inspect decodes a blob file and rejects a corrupt one', async () => {
    await cli([...base, 'create', 'files'], env);
    const genDir = join(dir, 'store', 'files', 'kmsblob');
    const file = join(genDir, readdirSync(genDir).filter((f) => f.endsWith('.kmsb'))[0]!);
    const inspected = await cli(['inspect', file, '--json']);
    expect(inspected.code).toBe(0);
    expect(JSON.parse(inspected.stdout)).toMatchObject({ indexName: 'files', version: 1 });
    const junk = join(dir, 'junk.kmsb');
    writeFileSync(junk, randomBytes(100));
    expect((await cli(['inspect', junk])).code).toBe(ExitCode.malformed);
  });

  it('usage errors exit 2; bad index names are refused before touching the store', async () => {
    expect((await cli(['frobnicate'])).code).toBe(ExitCode.usage);
    const bad = await cli([...base, 'get', '../etc'], env);
    expect(bad.code).toBe(ExitCode.usage);
    expect(bad.stderr).toMatch(/index name/);
  });

  it('bench measures the unwrap path against the configured store and slot', async () => {
    const out = await cli([...localSlotFlags('memory:'), 'bench'], env);
    expect(out.stderr).toBe('');
    expect(out.code).toBe(0);
    expect(out.stdout).toMatch(/cached unwrap\(index\) vs uncached unwrap/);
    expect(out.stdout).toMatch(/1,000 concurrent cold unwraps: 1 provider call\(s\)/);
    expect(out.stdout).not.toMatch(/every-call unwrap/); // no store reads to compare with in memory
  });
});
