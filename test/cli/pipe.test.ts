/**
 * Output into a pipe whose reader has gone (`kms-envelope … | head -1`): the CLI ends quietly with
 * its own exit status, never with an EPIPE stack trace. Real child processes and real pipes.
 */
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { localSlotFlags, repo } from '../helpers/cli.js';
import { cli } from './in-process.js';

const bin = join(repo, 'src/cli/bin.ts');
const quote = (arg: string) => `'${arg.replace(/'/g, "'\\''")}'`;

describe('kms-envelope into a closed pipe', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ke-pipe-'));
  const env = { DEV_MASTER: randomBytes(32).toString('base64url') };
  const base = localSlotFlags(`disk:${join(dir, 'store')}`);

  it('migrate … | head -1: one token out, the command stops early, exit 0, no EPIPE on stderr', async () => {
    expect((await cli([...base, 'create', 'piped'], env)).code).toBe(0);
    expect((await cli([...base, 'dek', 'create', '--index', 'piped'], env)).code).toBe(0);
    // Far more than a pipe holds (64 KiB): writes go on after head has exited.
    const values = join(dir, 'values.txt');
    writeFileSync(values, Array.from({ length: 20_000 }, (_, i) => `value-${i}`).join('\n'));
    const command = ['node', '--import', 'tsx', bin, ...base, 'migrate', values, '--index', 'piped'];
    // The subshell reports the CLI's own status (sh has no pipefail).
    const script = `(${command.map(quote).join(' ')}; echo "status $?" >&2) | head -1`;
    const out = spawnSync('sh', ['-c', script], {
      cwd: repo,
      env: { ...process.env, ...env },
      encoding: 'utf8',
      timeout: 60_000,
    });
    expect(out.stdout).toMatch(/^\$A256GCM\$[^\n]+\n$/);
    expect(out.stderr).not.toMatch(/EPIPE|Error|\n\s+at /);
    // Stopped early: the summary counts what was converted before the reader left, not 20,000.
    expect(out.stderr).toMatch(/^migrated (\d+) values/m);
    expect(Number(/^migrated (\d+) values/m.exec(out.stderr)?.[1])).toBeLessThan(20_000);
    expect(out.stderr).toMatch(/^status 0$/m);
  }, 60_000);

  it('a reader that closes before the first write: get --json exits 0 with an empty stderr', async () => {
    expect((await cli([...base, 'create', 'early'], env)).code).toBe(0);
    const child = spawn(process.execPath, ['--import', 'tsx', bin, ...base, '--json', 'get', 'early'], {
      cwd: repo,
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout.destroy(); // our end of the pipe is closed: the child's first write gets EPIPE
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      stderr += chunk;
    });
    const code = await new Promise<number | null>((resolve) => child.once('close', resolve));
    expect(stderr).toBe('');
    expect(code).toBe(0);
  }, 60_000);
});
