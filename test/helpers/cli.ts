import { spawnSync } from 'node:child_process';
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
