/**
 * The `kms-envelope` command line. Prints envelope fields, never a key, unless `--reveal` is
 * given explicitly. Exit codes per error class: see ./exit-codes.ts and the README.
 *
 * @module
 */
import { readFileSync } from 'node:fs';
import { Command, CommanderError, Option } from 'commander';
import { diagnoseSlot } from '../doctor.js';
import { decodeKmsBlob } from '../envelope/codec.js';
import { EnvelopeNotFoundError, InvalidArgumentError, KmsEnvelopeError } from '../errors.js';
import { IndexKeyring } from '../keyring/keyring.js';
import { clientFromOptions, type GlobalOptions, kekFromRef, parseContextFlags } from './context.js';
import { addDekCommands } from './dek-commands.js';
import { runDemo } from './demo.js';
import { ExitCode, exitCodeFor } from './exit-codes.js';
import { blobToJson, formatBlob } from './format.js';
import { addStoreCommands } from './store-commands.js';

const collect = (value: string, previous: string[] = []) => [...previous, value];

/** A failure a command has already explained on its output: exit with its code, print nothing more. */
class ReportedFailure extends Error {
  constructor(readonly error: unknown) {
    super('reported');
  }
}

function print(line: string): void {
  process.stdout.write(`${line}\n`);
}

/** Builds the program; `main` runs it. Exported for tests. */
export function buildProgram(): Command {
  const program = new Command('kms-envelope')
    .description('Per-index KEKs wrapped by a KMS, in verified KMSBlob envelopes on disk or in Redis.')
    .version('0.1.0')
    .showHelpAfterError()
    .option(
      '--store <spec>',
      'disk:<dir> | redis://host:port | postgres://[user@]host[:port]/database | memory: (default disk:.kms-envelope/indexes, or $KMS_ENVELOPE_STORE)',
    )
    .option('--config <file>', 'slots config, YAML or JSON (or $KMS_ENVELOPE_CONFIG)')
    .option('--slot <name>', 'the KMS slot to use (with --provider: the name of the slot the flags define)')
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
    .option('--secret-dir <dir>', 'allow file: secret references under this folder (repeatable)', collect);

  const globals = (): GlobalOptions => program.opts<GlobalOptions>();

  program
    .command('create <index>')
    .description('create the envelope of a new index: a new random KEK wrapped by the slot')
    .option('--context <key=value>', 'encryption context bound to the wrap (repeatable)', collect)
    .option('--json', 'print the envelope as JSON')
    .option('--reveal', 'also print the new KEK (base64url) — handle with care')
    .action(async (index: string, opts: { context?: string[]; json?: boolean; reveal?: boolean }) => {
      const client = clientFromOptions(globals());
      try {
        const slot = globals().slot ?? (globals().provider ? 'default' : undefined);
        if (slot === undefined)
          throw new KmsEnvelopeError('create needs --slot (or --provider to define one)');
        // Created ready for DEKs: the envelope names a KEK slot id and the KEK-check record is written.
        await IndexKeyring.createIndex(client, index, {
          slot,
          encryptionContext: parseContextFlags(opts.context),
        });
        const kek = await client.unwrap(index);
        try {
          const blob = await client.getEnvelope(index);
          print(
            opts.json
              ? JSON.stringify(blobToJson(blob), null, 2)
              : `created envelope of "${index}":\n${formatBlob(blob)}`,
          );
          if (opts.reveal) print(`kek ${kek.expose().toString('base64url')}`);
        } finally {
          kek.zero();
        }
      } finally {
        await client.close();
      }
    });

  program
    .command('get <index>')
    .description("print the envelope's fields (never the key)")
    .option('--json', 'print as JSON')
    .action(async (index: string, opts: { json?: boolean }) => {
      const client = clientFromOptions(globals());
      try {
        const blob = await client.getEnvelope(index);
        print(opts.json ? JSON.stringify(blobToJson(blob), null, 2) : formatBlob(blob));
      } finally {
        await client.close();
      }
    });

  program
    .command('rotate <index>')
    .description('re-wrap the same KEK (version + 1), under the same or another slot')
    .option('--to-slot <name>', 'wrap under this slot instead')
    .option(
      '--kek <ref>',
      'the KEK of a provider none envelope, as env:NAME | file:/abs/path | secret:name, not the key',
    )
    .option('--json', 'print the new envelope as JSON')
    .action(async (index: string, opts: { toSlot?: string; kek?: string; json?: boolean }) => {
      const client = clientFromOptions(globals());
      const kek = opts.kek ? await kekFromRef(opts.kek, globals()) : undefined;
      try {
        const blob = await client.rotate(index, {
          ...(opts.toSlot ? { toSlot: opts.toSlot } : {}),
          ...(kek ? { kek } : {}),
        });
        print(
          opts.json
            ? JSON.stringify(blobToJson(blob), null, 2)
            : `rotated "${index}" to version ${blob.version}:\n${formatBlob(blob)}`,
        );
      } finally {
        kek?.zero();
        await client.close();
      }
    });

  program
    .command('delete <index>')
    .description(
      'delete everything the index owns: its DEK records, KEK-check and other records, then its envelope (no-op when there is none; run again after an interruption). Values encrypted under its DEKs can no longer be decrypted',
    )
    .option(
      '--keep-records',
      'delete only the envelope and keep the records (to push a saved envelope back later); create refuses the index until they are gone',
    )
    .action(async (index: string, opts: { keepRecords?: boolean }) => {
      const client = clientFromOptions(globals());
      try {
        await client.delete(index, opts.keepRecords ? { keepRecords: true } : {});
        print(
          opts.keepRecords
            ? `deleted envelope of "${index}" (records kept)`
            : `deleted envelope and records of "${index}"`,
        );
      } finally {
        await client.close();
      }
    });

  program
    .command('verify <index>')
    .description('unwrap the KEK with its slot and report whether it is sound')
    .option(
      '--kek <ref>',
      'the KEK of a provider none envelope, as env:NAME | file:/abs/path | secret:name, not the key',
    )
    .option('--reveal', 'also print the unwrapped KEK (base64url) — handle with care')
    .action(async (index: string, opts: { kek?: string; reveal?: boolean }) => {
      const client = clientFromOptions(globals());
      const supplied = opts.kek ? await kekFromRef(opts.kek, globals()) : undefined;
      try {
        const kek = await client.unwrap(index, supplied ? { kek: supplied } : {});
        try {
          const blob = await client.getEnvelope(index);
          const check = blob.kekCheck === undefined ? 'no KEK check value stored' : 'KEK check value matches';
          print(
            `ok: "${index}" version ${blob.version} unwraps with slot "${blob.kmsName}" (${blob.provider}); ${check}`,
          );
          if (opts.reveal) print(`kek ${kek.expose().toString('base64url')}`);
        } finally {
          kek.zero();
        }
      } finally {
        supplied?.zero();
        await client.close();
      }
    });

  program
    .command('inspect <file>')
    .description('decode and verify a KMSBlob file')
    .option('--json', 'print as JSON')
    .action((file: string, opts: { json?: boolean }) => {
      let bytes: Buffer;
      try {
        bytes = readFileSync(file);
      } catch (cause) {
        throw new EnvelopeNotFoundError(`cannot read ${file}`, { cause });
      }
      const blob = decodeKmsBlob(bytes);
      print(opts.json ? JSON.stringify(blobToJson(blob), null, 2) : formatBlob(blob));
    });

  program
    .command('bench')
    .description('benchmark the unwrap path against the configured store and slot (a throwaway index)')
    .action(async () => {
      const client = clientFromOptions(globals());
      try {
        const slot = globals().slot ?? (globals().provider ? 'default' : undefined);
        if (slot === undefined)
          throw new KmsEnvelopeError('bench needs --slot (or --provider to define one)');
        const { unwrapBench } = await import('../bench/unwrap-bench.js');
        const { formatTable } = await import('../bench/harness.js');
        const result = await unwrapBench(
          { store: client.store, kms: client.kms, slot },
          { storeReads: client.store.kind !== 'memory' },
        );
        print(`kms-envelope bench — store ${client.store.description}, slot "${slot}"\n`);
        print(`${formatTable(result.rows)}\n`);
        for (const note of result.notes) print(`- ${note}`);
      } finally {
        await client.close();
      }
    });

  program
    .command('doctor [slot]')
    .description(
      'check a KMS slot: its configuration, credentials and permissions, by wrapping and unwrapping a throwaway key',
    )
    .option('--deadline <ms>', 'deadline of each KMS call in milliseconds', '10000')
    .option('--json', 'print the report as JSON')
    .action(async (slotArg: string | undefined, opts: { deadline: string; json?: boolean }) => {
      const slot = slotArg ?? globals().slot ?? (globals().provider ? 'default' : undefined);
      if (slot === undefined)
        throw new InvalidArgumentError('doctor needs a slot name (or --provider to define one)');
      const deadlineMs = Number(opts.deadline);
      if (!Number.isInteger(deadlineMs) || deadlineMs <= 0) {
        throw new InvalidArgumentError('--deadline must be a positive number of milliseconds');
      }
      const client = clientFromOptions(globals());
      try {
        const report = await diagnoseSlot(client.kms, slot, { deadlineMs });
        if (opts.json) {
          print(
            JSON.stringify(
              {
                ...report,
                checks: report.checks.map(({ error, ...check }) => ({
                  ...check,
                  ...(error ? { code: error.code } : {}),
                })),
              },
              null,
              2,
            ),
          );
        } else {
          print(`doctor: slot "${slot}"`);
          for (const check of report.checks) {
            const ms = check.ms === undefined ? '' : ` (${check.ms.toFixed(0)} ms)`;
            print(`  ${check.ok ? 'ok  ' : 'FAIL'}  ${check.name}: ${check.summary}${ms}`);
            if (check.advice) print(`        what to do: ${check.advice}`);
          }
          print(report.ok ? 'all checks passed' : 'the slot is not usable (see FAIL above)');
        }
        const failed = report.checks.find((check) => !check.ok);
        if (failed) throw new ReportedFailure(failed.error);
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
      await runDemo(opts.dir, print);
    });

  addDekCommands(program, print);
  addStoreCommands(program, print);
  return program;
}

/** Runs the CLI with `argv` (as `process.argv`); resolves to the exit code. */
export async function main(argv: readonly string[] = process.argv): Promise<number> {
  const program = buildProgram().exitOverride();
  try {
    await program.parseAsync([...argv]);
    return ExitCode.ok;
  } catch (err) {
    if (err instanceof ReportedFailure) return exitCodeFor(err.error);
    if (err instanceof CommanderError) {
      return err.exitCode === 0 ? ExitCode.ok : ExitCode.usage;
    }
    // Typed errors carry no key material; anything else is shown by its message only.
    const message = err instanceof Error ? err.message : String(err);
    process.stderr.write(`kms-envelope: ${message}\n`);
    return exitCodeFor(err);
  }
}
