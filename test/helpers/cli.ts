import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';

/** The checkout's root. */
export const repo = join(import.meta.dirname, '../..');
const bin = join(repo, 'src/cli/bin.ts');

/** Runs the CLI from source in a child process; `input` goes to its stdin. */
export function runCli(
  args: readonly string[],
  options: { env?: Record<string, string>; input?: string } = {},
) {
  const result = spawnSync(process.execPath, ['--import', 'tsx', bin, ...args], {
    cwd: repo,
    input: options.input ?? '',
    env: { ...process.env, ...options.env },
    encoding: 'utf8',
    timeout: 60_000,
  });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

/**
 * As {@link runCli}, without blocking this process: for CLI runs that talk to a server the test
 * itself runs (a fake KMS), which must keep answering meanwhile.
 */
export function runCliAsync(
  args: readonly string[],
  options: { env?: Record<string, string>; input?: string } = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', bin, ...args], {
      cwd: repo,
      env: { ...process.env, ...options.env },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      stdout += chunk;
    });
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      stderr += chunk;
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.once('error', reject);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolvePromise({ code, stdout, stderr });
    });
    child.stdin.end(options.input ?? '');
  });
}

/**
 * Global flags for a `local` slot named `dev` over `store`, its master key read from
 * `$DEV_MASTER` (see {@link devMasterEnv}).
 */
export function localSlotFlags(store: string): string[] {
  return ['--store', store, '--provider', 'local', '--slot', 'dev', '--master-key', 'env:DEV_MASTER'];
}

/** An environment holding a fresh random `DEV_MASTER` for {@link localSlotFlags}. */
export function devMasterEnv(): Record<string, string> {
  return { DEV_MASTER: randomBytes(32).toString('base64url') };
}
