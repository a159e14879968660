/**
 * The CLI over multi-wrap envelopes (issue #15): rotate --add-slot / --remove-slot / --threshold,
 * get and inspect showing every wrap and the policy, and recover through a recipient slot made by
 * keygen recipient, after the primary's key is lost.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ExitCode } from '../../src/cli/exit-codes.js';
import { cli } from './in-process.js';

describe('kms-envelope with several slots', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ke-multi-'));
  const keyFile = join(dir, 'recovery.key');
  const config = join(dir, 'slots.yaml');
  const env = {
    DEV_MASTER: randomBytes(32).toString('base64url'),
    BACKUP_MASTER: randomBytes(32).toString('base64url'),
  };
  const flags = ['--store', `disk:${join(dir, 'store')}`, '--config', config, '--secret-dir', dir];
  const run = (args: string[], extra: Record<string, string> = {}) =>
    cli([...flags, ...args], { ...env, ...extra });
  const json = async (args: string[], extra: Record<string, string> = {}) => {
    const out = await run(['--json', ...args], extra);
    expect(out.code, `${args.join(' ')}: ${out.stderr}`).toBe(0);
    return JSON.parse(out.stdout) as Record<string, unknown> & { wraps?: Record<string, unknown>[] };
  };

  it('keygen recipient → a slot; rotate adds and removes wraps; get shows them; recover after the primary is lost', async () => {
    const made = JSON.parse(
      (await cli(['--json', 'keygen', 'recipient', '--kind', 'x25519', '--out', keyFile])).stdout,
    );
    writeFileSync(
      config,
      `slots:
  dev:
    provider: local
    master_key: env:DEV_MASTER
  backup:
    provider: local
    master_key: env:BACKUP_MASTER
  recovery:
    provider: recipient
    key_id: ${made.fingerprint}
    options:
      publicKey: ${made.publicKey}
`,
    );
    expect((await run(['--slot', 'dev', 'create', 'orders'])).code).toBe(0);
    const added = await json(['rotate', 'orders', '--add-slot', 'recovery', '--add-slot', 'backup']);
    expect(added).toMatchObject({ kmsName: 'dev', version: 2 });
    expect(added.wraps?.map((w) => [w.kmsName, w.provider])).toEqual([
      ['recovery', 'recipient'],
      ['backup', 'local'],
    ]);
    expect(added.wraps?.[0]).toMatchObject({ keyId: made.fingerprint });

    const text = (await run(['get', 'orders'])).stdout;
    expect(text).toMatch(/^ {2}policy\s+any one of 3 wraps$/m);
    expect(text).toMatch(
      new RegExp(
        `^  wraps\\[0\\]\\s+slot recovery, provider recipient, key_id ${made.fingerprint}, 94 bytes, sha256:`,
        'm',
      ),
    );
    expect(text).toMatch(/^ {2}wraps\[1\]\s+slot backup, provider local, key_id local:/m);
    const blobs = join(dir, 'store', 'orders', 'kmsblob');
    const file = join(
      blobs,
      readdirSync(blobs)
        .filter((f) => f.endsWith('.kmsb'))
        .sort()
        .at(-1)!,
    );
    expect((await run(['inspect', file])).stdout).toMatch(/^ {2}wraps\[0\]\s+slot recovery/m);

    const threshold = await json(['rotate', 'orders', '--threshold', '2']);
    expect(threshold).toMatchObject({ threshold: 2, version: 3 });
    expect((await run(['get', 'orders'])).stdout).toMatch(
      /^ {2}policy\s+any 2 of 3 wraps \(Shamir shares\)$/m,
    );
    const anyOne = await json(['rotate', 'orders', '--threshold', '0', '--remove-slot', 'backup']);
    expect(anyOne.threshold).toBeUndefined();
    expect(anyOne.wraps?.map((w) => w.kmsName)).toEqual(['recovery']);
    const kekCheck = anyOne.kekCheck as string;

    // The primary's master key is lost: nothing unwraps online (the recipient slot never does).
    const lost = { DEV_MASTER: randomBytes(32).toString('base64url') };
    const failed = await run(['verify', 'orders'], lost);
    expect(failed.code).toBe(ExitCode.unwrapFailed);

    // A check recorded elsewhere that differs: refused before anything is written.
    const recover = (key: string, ...more: string[]) => [
      'recover',
      'orders',
      '--private-key',
      `file:${key}`,
      ...more,
    ];
    const forged = await run(
      recover(
        keyFile,
        '--expected-kek-check',
        Buffer.alloc(Buffer.from(kekCheck, 'base64').length, 1).toString('base64'),
      ),
      lost,
    );
    expect(forged.code).toBe(ExitCode.kekMismatch);
    // Another recipient's key: refused, naming both fingerprints, never a key byte.
    const otherKey = join(dir, 'other.key');
    expect((await cli(['keygen', 'recipient', '--kind', 'x25519', '--out', otherKey])).code).toBe(0);
    const other = await run(recover(otherKey, '--to-slot', 'backup'), lost);
    expect(other.code).toBe(ExitCode.keyNotFound);
    expect(other.stderr).toContain(made.fingerprint);

    const recovered = await json(
      recover(keyFile, '--expected-kek-check', kekCheck, '--to-slot', 'backup', '--to-slot', 'recovery'),
      lost,
    );
    expect(recovered).toMatchObject({ kmsName: 'backup', version: 5, kekCheck });
    expect(recovered.wraps?.map((w) => w.kmsName)).toEqual(['recovery']);
    const verified = await json(['verify', 'orders'], lost);
    expect(verified).toMatchObject({ ok: true, kmsName: 'backup', kekCheck: true });
  });

  it('recover refuses a key file that others may read, and a missing --private-key is a usage error', async () => {
    const loose = join(dir, 'loose.key');
    writeFileSync(loose, 'whatever', { mode: 0o644 });
    const out = await run(['recover', 'orders', '--private-key', `file:${loose}`]);
    expect(out.code).toBe(ExitCode.config);
    expect(out.stderr).toMatch(/readable by group or others/);
    expect((await run(['recover', 'orders'])).code).toBe(ExitCode.usage);
    expect(
      (
        await run([
          'recover',
          'orders',
          '--private-key',
          `file:${keyFile}`,
          '--expected-kek-check',
          'not base64!',
        ])
      ).code,
    ).toBe(ExitCode.usage);
  });

  it('create --slot a --slot b --threshold k makes a multi-wrap envelope ready for DEKs', async () => {
    const created = await json([
      '--slot',
      'dev',
      '--slot',
      'backup',
      '--slot',
      'recovery',
      'create',
      'shared',
      '--threshold',
      '2',
    ]);
    expect(created).toMatchObject({ kmsName: 'dev', version: 1, threshold: 2 });
    expect(created.wraps?.map((w) => w.kmsName)).toEqual(['backup', 'recovery']);
    expect((await run(['dek', 'create', '--index', 'shared'])).code).toBe(0);
    expect(await json(['verify', 'shared'])).toMatchObject({ ok: true });
  });
});
