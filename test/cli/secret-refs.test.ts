import { randomBytes } from 'node:crypto';
import { chmodSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ExitCode } from '../../src/cli/exit-codes.js';
import { cli } from './in-process.js';

// Keys on a command line end up in shell history, `ps` and CI logs: the CLI takes secret
// references only, and never tells anyone to put a key in argv.
describe('kms-envelope CLI and keys in argv', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ke-cli-refs-'));
  const store = `disk:${join(dir, 'store')}`;

  it('no help text suggests literal: or a key value for a key option', async () => {
    const commands = [
      [],
      ['create'],
      ['rotate'],
      ['verify'],
      ['encrypt'],
      ['decrypt'],
      ['dek', 'create'],
      ['rotate-kek'],
    ];
    for (const command of commands) {
      const help = await cli([...command, '--help']);
      expect(help.code, command.join(' ')).toBe(0);
      expect(help.stdout).not.toMatch(/literal/i);
      // commander wraps descriptions: compare on one line.
      const text = help.stdout.replace(/\s+/g, ' ');
      for (const [, option, description] of text.matchAll(
        /--(kek|new-kek|master-key) <ref> (.*?)(?= -[-\w]|$)/g,
      )) {
        expect(description, option).toMatch(/env:NAME \| file:\/abs\/path \| secret:name/);
      }
    }
  });

  it('a literal: master key or KEK given on the command line is refused without echoing it', async () => {
    const key = randomBytes(32).toString('base64url');
    const local = [
      '--store',
      store,
      '--provider',
      'local',
      '--slot',
      'dev',
      '--master-key',
      `literal:${key}`,
    ];
    const created = await cli([...local, 'create', 'orders']);
    expect(created.code).toBe(ExitCode.config);
    expect(created.stderr).toMatch(/literal: secret references are refused/);
    expect(created.stdout + created.stderr).not.toContain(key);

    const none = ['--store', store, '--provider', 'none', '--slot', 'byok'];
    const verified = await cli([...none, 'verify', 'orders', '--kek', `literal:${key}`]);
    expect(verified.code).not.toBe(0);
    expect(verified.stdout + verified.stderr).not.toContain(key);
  });

  it('a master key file that others can read is refused; chmod 600 makes it work', async () => {
    const keyFile = join(dir, 'master.key');
    writeFileSync(keyFile, randomBytes(32).toString('base64'));
    const flags = ['--store', store, '--provider', 'local', '--slot', 'dev', '--secret-dir', dir];
    chmodSync(keyFile, 0o644);
    const refused = await cli([...flags, '--master-key', `file:${keyFile}`, 'create', 'files']);
    expect(refused.code).toBe(ExitCode.config);
    expect(refused.stderr).toMatch(/readable by group or others \(mode 0644\): refused; chmod 600/);
    chmodSync(keyFile, 0o600);
    expect((await cli([...flags, '--master-key', `file:${keyFile}`, 'create', 'files'])).code).toBe(0);
  });
});
