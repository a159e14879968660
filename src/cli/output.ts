/**
 * Where the CLI writes: results on stdout, progress and information on stderr, errors on stderr
 * (text, or one JSON object with `--json`). A reader that closes the pipe early (`… | head -1`)
 * ends output quietly: no EPIPE stack trace, the command finishes what it started and exits with
 * its own status (0 when it succeeded), as ripgrep and other well-behaved CLIs do.
 *
 * @module
 */
import { CommanderError } from 'commander';
import { ErrorCode, KmsEnvelopeError } from '../errors.js';
import { ExitCode, exitCodeFor } from './exit-codes.js';

/** The output of one CLI run. */
export interface CliOutput {
  /** `--json`: results and errors as JSON. */
  readonly json: boolean;
  /** `--quiet`: no progress and no information on stderr (results and errors still appear). */
  readonly quiet: boolean;
  /** True once stdout's reader went away (EPIPE): nothing more is written there. */
  readonly closed: boolean;
  /** True when a progress bar may draw: stderr is a terminal, without `--quiet` or `--json`. */
  readonly progress: boolean;
  /** A line of result text on stdout. */
  print(line: string): void;
  /** A result as JSON on stdout (indented; `compact` for one object a line). */
  printJson(value: unknown, compact?: boolean): void;
  /** Progress or information on stderr, unless `--quiet` or `--json`. */
  info(line: string): void;
  /** Text for stderr as it is (errors, commander's usage messages), whatever the flags. */
  error(text: string): void;
}

/** The flags that shape output, read from the raw arguments (before `--`) so that even a usage error knows them. */
export function outputFlags(args: readonly string[]): { json: boolean; quiet: boolean } {
  const end = args.indexOf('--');
  const flags = end === -1 ? args : args.slice(0, end);
  return {
    json: flags.includes('--json'),
    quiet: flags.some((arg) => arg === '--quiet' || arg === '-q'),
  };
}

/**
 * The output of this process: installs `error` listeners on stdout and stderr so that a closed
 * pipe stops output instead of crashing with an EPIPE stack trace. Call once per process.
 */
export function processOutput(flags: { json: boolean; quiet: boolean }): CliOutput {
  let closed = false;
  let stderrClosed = false;
  process.stdout.on('error', () => {
    // EPIPE (reader gone) or a write after that: either way nobody reads stdout any more.
    closed = true;
  });
  process.stderr.on('error', () => {
    stderrClosed = true;
  });
  const write = (line: string) => {
    if (!closed) process.stdout.write(`${line}\n`);
  };
  return {
    json: flags.json,
    quiet: flags.quiet,
    get closed() {
      return closed;
    },
    get progress() {
      return process.stderr.isTTY === true && !flags.quiet && !flags.json && !stderrClosed;
    },
    print: write,
    printJson: (value, compact = false) => write(JSON.stringify(value, null, compact ? undefined : 2)),
    info: (line) => {
      if (!flags.quiet && !flags.json && !stderrClosed) process.stderr.write(`${line}\n`);
    },
    error: (text) => {
      if (!stderrClosed) process.stderr.write(text);
    },
  };
}

/**
 * An output that collects everything in memory, for running the CLI inside another process (its
 * tests): `stdout` and `stderr` hold what a terminal would have shown.
 */
export function memoryOutput(flags: { json: boolean; quiet: boolean }): CliOutput & {
  readonly stdout: string;
  readonly stderr: string;
} {
  let stdout = '';
  let stderr = '';
  return {
    json: flags.json,
    quiet: flags.quiet,
    closed: false,
    progress: false,
    get stdout() {
      return stdout;
    },
    get stderr() {
      return stderr;
    },
    print: (line) => {
      stdout += `${line}\n`;
    },
    printJson: (value, compact = false) => {
      stdout += `${JSON.stringify(value, null, compact ? undefined : 2)}\n`;
    },
    info: (line) => {
      if (!flags.quiet && !flags.json) stderr += `${line}\n`;
    },
    error: (text) => {
      stderr += text;
    },
  };
}

/** What a failed run reports: stable code, message, exit status. Never key material. */
export interface CliErrorReport {
  /** `KMS_ENVELOPE_…`: the typed error's code; usage errors are `KMS_ENVELOPE_INVALID_ARGUMENT`. */
  readonly code: string;
  /** For people; the same text as without `--json`. */
  readonly message: string;
  /** The process exit status (see {@link ExitCode}). */
  readonly exitCode: number;
}

/** The report of an error thrown by a command or by argument parsing. */
export function errorReport(err: unknown): CliErrorReport {
  if (err instanceof CommanderError) {
    return {
      code: ErrorCode.invalidArgument,
      // 'commander.help': no command given, and commander's message is its help marker.
      message:
        err.code === 'commander.help'
          ? 'a command is needed (kms-envelope --help lists them)'
          : err.message.replace(/^error: /, '').trim(),
      exitCode: ExitCode.usage,
    };
  }
  return {
    code: err instanceof KmsEnvelopeError ? err.code : ErrorCode.base,
    // Typed errors carry no key material; anything else is shown by its message only (no stack).
    message: err instanceof Error ? err.message : String(err),
    exitCode: exitCodeFor(err),
  };
}

/**
 * Writes the error on stderr: `kms-envelope: <message>`, or with `--json` one line holding the
 * JSON object `{ code, message, exitCode }` and nothing else. `alreadyShown`: commander printed
 * its own usage message (text mode only).
 */
export function writeError(report: CliErrorReport, out: CliOutput, alreadyShown = false): void {
  try {
    if (out.json) out.error(`${JSON.stringify(report)}\n`);
    else if (!alreadyShown) out.error(`kms-envelope: ${report.message}\n`);
  } catch {
    // stderr is gone too: the exit status is all that is left.
  }
}
