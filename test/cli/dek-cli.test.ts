import { randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { encryptLegacyV2, getOrCreateUserKey, LegacyKey } from '../../src/legacy/v2.js';
import { parseIndexName } from '../../src/names.js';
import { StorageConfig } from '../../src/storage/config.js';
import { localSlotFlags } from '../helpers/cli.js';
import { cli as run } from './in-process.js';

const cli = (args: string[], input = '', env: Record<string, string> = {}) => run(args, env, input);

describe('kms-envelope DEK commands', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ke-dekcli-'));
  const env = { DEV_MASTER: randomBytes(32).toString('base64url') };
  const base = localSlotFlags(`disk:${join(dir, 'store')}`);
  const idx = ['--index', 'users'];

  it('dek create / list, encrypt / decrypt from stdin, rotate-kek (dry run, then real) keep values readable', async () => {
    expect((await cli([...base, 'create', 'users'], '', env)).code).toBe(0);
    const created = await cli([...base, 'dek', 'create', ...idx], '', env);
    expect(created.code).toBe(0);
    const dekId = /created DEK ([0-9a-f-]{36})/.exec(created.stdout)![1]!;

    const token = (await cli([...base, 'encrypt', ...idx], 'alice@example.com\n', env)).stdout.trim();
    expect(token).toMatch(new RegExp(`^\\$A256GCM\\$${dekId}\\$e30=\\$`));
    expect((await cli([...base, 'decrypt', ...idx], `${token}\n`, env)).stdout).toBe('alice@example.com\n');

    const list = JSON.parse((await cli([...base, 'dek', 'list', ...idx, '--json'], '', env)).stdout) as {
      id: string;
      active: boolean;
    }[];
    expect(list).toMatchObject([{ id: dekId, active: true }]);

    const dry = await cli([...base, 'rotate-kek', ...idx, '--dry-run'], '', env);
    expect(dry.stdout).toMatch(/dry run: would re-wrap 1 of 1 DEKs/);
    expect(dry.stdout).toContain(dekId);
    const rotated = await cli([...base, 'rotate-kek', ...idx], '', env);
    expect(rotated.stdout).toMatch(/1 DEKs re-wrapped; envelope version 2/);
    expect((await cli([...base, 'decrypt', ...idx], token, env)).stdout).toBe('alice@example.com\n');

    expect((await cli([...base, 'dek', 'deactivate', dekId, ...idx], '', env)).code).toBe(0);
    const refused = await cli([...base, 'encrypt', ...idx], 'x', env);
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toMatch(/no active DEK/);
    expect(refused.stderr).not.toContain('x\n');
  });

  it('migrate converts plaintext and v2: lines, keeps tokens, counts each kind, prints no plaintext to stderr', async () => {
    await cli([...base, 'create', 'apps'], '', env);
    await cli([...base, 'dek', 'create', '--index', 'apps'], '', env);
    const master = `${randomBytes(32).toString('base64url')}=`; // padded, as the original requires
    const store = StorageConfig.disk(join(dir, 'store'));
    const userKey = await getOrCreateUserKey(
      store,
      parseIndexName('api-keys'),
      'user-7',
      LegacyKey.fromBytes(Buffer.from(master, 'base64url')),
    );
    const existing = (await cli([...base, 'encrypt', '--index', 'apps'], 'kept', env)).stdout.trim();
    const input = [
      'plain-secret-1',
      encryptLegacyV2('legacy-secret', userKey),
      existing,
      'plain-secret-2',
    ].join('\n');
    const file = join(dir, 'values.txt');
    writeFileSync(file, `${input}\n`);
    const out = await cli([...base, 'migrate', file, '--index', 'apps', '--v2-user', 'user-7'], '', {
      ...env,
      API_KEY_MASTER_KEY: master,
    });
    expect(out.code).toBe(0);
    const lines = out.stdout.trim().split('\n');
    expect(lines).toHaveLength(4);
    expect(lines.every((l) => l.startsWith('$A256GCM$'))).toBe(true);
    expect(lines[2]).toBe(existing);
    expect(out.stderr).toMatch(
      /migrated 4 values: 2 plaintext encrypted, 1 v2: re-encrypted, 1 already wire tokens/,
    );
    expect(out.stderr).not.toMatch(/secret/);
    const back: string[] = [];
    for (const l of lines)
      back.push((await cli([...base, 'decrypt', '--index', 'apps'], l, env)).stdout.trim());
    expect(back).toEqual(['plain-secret-1', 'legacy-secret', 'kept', 'plain-secret-2']);
  });
});
