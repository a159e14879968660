/**
 * Runs the CLI inside the test process (no child, no tsx start-up): `main` with an output that
 * collects stdout and stderr, and a stream for stdin. The process's own exit status, EPIPE, the
 * prompt on a terminal and the packed bin are tested with real child processes.
 */
import { Readable } from 'node:stream';
import { main } from '../../src/cli/main.js';
import { memoryOutput } from '../../src/cli/output.js';

export interface InProcessRun {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * `kms-envelope <args>` in this process, with `env` added to `process.env` for the run and
 * `input` as its stdin (a pipe, not a terminal).
 */
export async function cli(
  args: readonly string[],
  env: Record<string, string> = {},
  input = '',
): Promise<InProcessRun> {
  const saved = Object.fromEntries(Object.keys(env).map((name) => [name, process.env[name]]));
  Object.assign(process.env, env);
  let out: ReturnType<typeof memoryOutput> | undefined;
  try {
    const code = await main(
      ['node', 'kms-envelope', ...args],
      (flags) => {
        out = memoryOutput(flags);
        return out;
      },
      Readable.from([Buffer.from(input)]),
    );
    return { code, stdout: out?.stdout ?? '', stderr: out?.stderr ?? '' };
  } finally {
    for (const [name, value] of Object.entries(saved)) {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
  }
}
