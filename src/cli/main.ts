/**
 * The `kms-envelope` command line. Prints envelope fields, never a key, unless `--reveal` is
 * given explicitly. Every usage error (an unknown command or option, a missing or bad argument)
 * exits 2; other failures exit with the code of their error class (./exit-codes.ts, docs/cli.md).
 * Results go to stdout, progress and information to stderr (none with `--quiet`), errors to
 * stderr (one JSON object `{ code, message, exitCode }` with `--json`).
 *
 * @module
 */
import { Command, CommanderError, Option } from 'commander';
import type { CliContext, GlobalOptions } from './context.js';
import { addDekCommands } from './dek-commands.js';
import { addEnvelopeCommands } from './envelope-commands.js';
import { ExitCode, exitCodeFor } from './exit-codes.js';
import { addKeygenCommands } from './keygen-commands.js';
import {
  type CliOutput,
  errorReport,
  memoryOutput,
  outputFlags,
  processOutput,
  writeError,
} from './output.js';
import { redisPrefixArg, repeatable, slotArg } from './parsers.js';
import { addStoreCommands } from './store-commands.js';
import { addToolCommands, ReportedFailure } from './tool-commands.js';

/** The CLI's version (the package's). */
export const CLI_VERSION = '0.1.0';

/**
 * Builds the program. Commander errors (usage) throw a `CommanderError` instead of exiting, on
 * every subcommand; with `out.json` commander prints nothing itself. Exported for tests and for
 * the completion scripts and docs/cli.md, which are checked against this tree.
 */
export function buildProgram(
  out: CliOutput = memoryOutput({ json: false, quiet: false }),
  stdin: CliContext['stdin'] = process.stdin,
): Command {
  const program = new Command('kms-envelope');
  // Set before any subcommand is added: commander copies these settings into each of them.
  program
    .exitOverride()
    // A command's help lists the global options too (--json, --quiet, --store …).
    .configureHelp({ showGlobalOptions: true })
    .showHelpAfterError(out.json ? false : '(kms-envelope help <command> shows its usage)')
    .configureOutput({
      writeOut: (text) => out.print(text.replace(/\n$/, '')),
      // With --json, stderr holds the one error object and nothing of commander's.
      writeErr: out.json ? () => {} : (text) => out.error(text),
      outputError: out.json ? () => {} : (text, write) => write(text),
    });
  program
    .description(
      'Per-index KEKs wrapped by a KMS, in verified KMSBlob envelopes on disk, in Redis or PostgreSQL.',
    )
    .version(CLI_VERSION)
    .option(
      '--store <spec>',
      'disk:<dir> | redis://host:port | postgres://[user@]host[:port]/database | memory: (default disk:.kms-envelope/indexes, or $KMS_ENVELOPE_STORE)',
    )
    .option('--redis-prefix <prefix>', 'key prefix of a Redis store (default kms-envelope:)', redisPrefixArg)
    .option('--config <file>', 'slots config, YAML or JSON (or $KMS_ENVELOPE_CONFIG)')
    .option(
      '--slot <name>',
      'the KMS slot to use; create: repeat to wrap with several (the first is the primary); with --provider the first names the slot the flags define',
      repeatable(slotArg),
    )
    .addOption(
      new Option('--provider <id>', 'define a slot from flags with this provider').choices([
        'none',
        'local',
        'aws',
        'aws-kms',
        'gcp-kms',
        'azure-kv',
      ]),
    )
    .option('--key-id <id>', 'key reference of the slot defined by flags')
    .option('--region <region>', 'region of the slot defined by flags')
    .option('--endpoint <url>', 'endpoint of the slot defined by flags')
    .option('--master-key <ref>', 'local provider master key: env:NAME | file:/abs/path | secret:name')
    .option(
      '--role-arn <arn>',
      'AWS providers: role to assume (cross-account BYOK) for the slot defined by flags',
    )
    .option('--external-id <id>', 'AWS providers: external id required with --role-arn')
    .option(
      '--secret-dir <dir>',
      'allow file: secret references under this folder (repeatable)',
      repeatable(),
    )
    .option('--json', 'results as JSON on stdout, errors as one JSON object on stderr')
    .option('-q, --quiet', 'no progress or information on stderr (results and errors still appear)');

  const ctx: CliContext = { out, globals: () => program.opts<GlobalOptions>(), stdin };
  addEnvelopeCommands(program, ctx);
  addDekCommands(program, ctx);
  addStoreCommands(program, ctx);
  addKeygenCommands(program, ctx);
  addToolCommands(program, ctx);
  return program;
}

/**
 * Runs the CLI with `argv` (as `process.argv`); resolves to the exit code. `output` makes the
 * output of the run (default: this process's stdout and stderr); `stdin` is what `encrypt`,
 * `decrypt` and `migrate` read.
 */
export async function main(
  argv: readonly string[] = process.argv,
  output: (flags: { json: boolean; quiet: boolean }) => CliOutput = processOutput,
  stdin: CliContext['stdin'] = process.stdin,
): Promise<number> {
  const out = output(outputFlags(argv.slice(2)));
  const program = buildProgram(out, stdin);
  try {
    await program.parseAsync([...argv]);
    return ExitCode.ok;
  } catch (err) {
    if (err instanceof CommanderError && err.exitCode === 0) return ExitCode.ok; // --help, --version
    if (err instanceof ReportedFailure) {
      // The command printed its own report; with --json stderr still gets the error object.
      if (out.json) writeError(errorReport(err.error), out);
      return exitCodeFor(err.error);
    }
    const report = errorReport(err);
    // Commander has printed its own message (and the help) already, except with --json.
    writeError(report, out, err instanceof CommanderError);
    return report.exitCode;
  }
}
