/**
 * CLI commands around the library rather than one index: `doctor`, `bench`, `demo` and
 * `completion`.
 *
 * @module
 */
import type { Command } from 'commander';
import { diagnoseSlot } from '../doctor.js';
import { InvalidArgumentError } from '../errors.js';
import { completionScript, SHELLS, type Shell } from './completion.js';
import { type CliContext, clientFromOptions, oneSlot } from './context.js';
import { runDemo } from './demo.js';
import { integerArg } from './parsers.js';

/** A failure a command has already explained on its output: exit with its code, print nothing more. */
export class ReportedFailure extends Error {
  constructor(readonly error: unknown) {
    super('reported');
  }
}

/** Adds `doctor`, `bench`, `demo` and `completion` to `program`. */
export function addToolCommands(program: Command, ctx: CliContext): void {
  const { out, globals } = ctx;

  program
    .command('doctor')
    .description(
      'check a KMS slot: its configuration, credentials and permissions, by wrapping and unwrapping a throwaway key',
    )
    .argument('[slot]', 'the slot to check (default: --slot, or the slot --provider defines)')
    .option(
      '--deadline <ms>',
      'deadline of each KMS call in milliseconds',
      integerArg(1, '--deadline'),
      10_000,
    )
    .action(async (slotArg: string | undefined, opts: { deadline: number }) => {
      const slot = slotArg ?? oneSlot(globals(), 'doctor');
      if (slot === undefined)
        throw new InvalidArgumentError('doctor needs a slot name (or --provider to define one)');
      const client = clientFromOptions(globals());
      try {
        const report = await diagnoseSlot(client.kms, slot, { deadlineMs: opts.deadline });
        if (out.json) {
          out.printJson({
            ...report,
            checks: report.checks.map(({ error, ...check }) => ({
              ...check,
              ...(error ? { code: error.code } : {}),
            })),
          });
        } else {
          out.print(`doctor: slot "${slot}"`);
          for (const check of report.checks) {
            const ms = check.ms === undefined ? '' : ` (${check.ms.toFixed(0)} ms)`;
            out.print(`  ${check.ok ? 'ok  ' : 'FAIL'}  ${check.name}: ${check.summary}${ms}`);
            if (check.advice) out.print(`        what to do: ${check.advice}`);
          }
          out.print(report.ok ? 'all checks passed' : 'the slot is not usable (see FAIL above)');
        }
        const failed = report.checks.find((check) => !check.ok);
        if (failed) throw new ReportedFailure(failed.error);
      } finally {
        await client.close();
      }
    });

  program
    .command('bench')
    .description('benchmark the unwrap path against the configured store and slot (a throwaway index)')
    .action(async () => {
      const slot = oneSlot(globals(), 'bench');
      if (slot === undefined)
        throw new InvalidArgumentError('bench needs --slot (or --provider to define one)');
      const client = clientFromOptions(globals());
      try {
        const { unwrapBench } = await import('../bench/unwrap-bench.js');
        const { formatTable } = await import('../bench/harness.js');
        const result = await unwrapBench(
          { store: client.store, kms: client.kms, slot },
          { storeReads: client.store.kind !== 'memory' },
        );
        if (out.json) {
          out.printJson({ store: client.store.description, slot, rows: result.rows, notes: result.notes });
          return;
        }
        out.print(`kms-envelope bench — store ${client.store.description}, slot "${slot}"\n`);
        out.print(`${formatTable(result.rows)}\n`);
        for (const note of result.notes) out.print(`- ${note}`);
      } finally {
        await client.close();
      }
    });

  program
    .command('demo')
    .description(
      'walk through create, get, unwrap, rotate and delete on a local folder (no cloud, no server)',
    )
    .option('--dir <folder>', 'where the demo keeps its store and master key', '.kms-envelope-demo')
    .action(async (opts: { dir: string }) => {
      const lines: string[] = [];
      // With --json the walkthrough's text becomes one object: its steps, line by line.
      await runDemo(opts.dir, out.json ? (line) => lines.push(line) : out.print);
      if (out.json) out.printJson({ dir: opts.dir, ok: true, lines: lines.join('\n').split('\n') });
    });

  program
    .command('completion')
    .description(
      'print the shell completion script (source it, or save it where your shell loads completions)',
    )
    .addArgument(program.createArgument('<shell>', 'the shell to complete for').choices(SHELLS))
    .action((shell: Shell) => {
      const script = completionScript(program, shell);
      if (out.json) out.printJson({ shell, script });
      else out.print(script.trimEnd());
    });
}
