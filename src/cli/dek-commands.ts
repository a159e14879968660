/**
 * CLI commands of the DEK layer: `encrypt`, `decrypt`, `dek create|list|deactivate`,
 * `rotate-kek` and `migrate`. Values come from stdin (or a file), never from arguments, so they
 * do not end up in shell history or process listings; no key is ever printed.
 *
 * @module
 */
import { closeSync, createReadStream, fstatSync, openSync } from 'node:fs';
import { createInterface } from 'node:readline';
import cliProgress from 'cli-progress';
import type { Command } from 'commander';
import { ConfigError, InvalidArgumentError } from '../errors.js';
import { IndexKeyring, recordStoreOf } from '../keyring/keyring.js';
import type { Kek } from '../keys/kek.js';
import { type MigratedKind, migrateValue } from '../legacy/migrate.js';
import {
  getOrCreateUserKey,
  LEGACY_POOL_KEY_SALT,
  type LegacyKey,
  legacyMasterKeyFromEnv,
  legacyPoolKey,
} from '../legacy/v2.js';
import { parseIndexName } from '../names.js';
import { type CliContext, clientFromOptions, contextOf, type GlobalOptions, kekFromRef } from './context.js';
import type { CliOutput } from './output.js';
import { contextPair, dekIdArg, indexArg, repeatable } from './parsers.js';
import { readAll, readValue } from './prompt.js';

/** A progress bar on stderr when the output may draw one (a terminal, no --quiet or --json). */
function progressBar(out: CliOutput, format: string): cliProgress.SingleBar | undefined {
  return out.progress
    ? new cliProgress.SingleBar({ format, stream: process.stderr }, cliProgress.Presets.shades_classic)
    : undefined;
}

/**
 * Opens the input file of `migrate` now, so a missing or unreadable file is a clean usage error
 * before any store or KMS is touched.
 * @throws InvalidArgumentError naming the file and the reason.
 */
function openInput(file: string): number {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (cause) {
    const code = (cause as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : 'unreadable';
    throw new InvalidArgumentError(`cannot read ${file}: ${why}`, { cause });
  }
  // Linux opens a folder for reading; the first read would fail with EISDIR.
  if (fstatSync(fd).isDirectory()) {
    closeSync(fd);
    throw new InvalidArgumentError(`cannot read ${file}: a folder`);
  }
  return fd;
}

interface IndexOptions {
  index: string;
  kek?: string;
}

async function openKeyring(globals: GlobalOptions, opts: IndexOptions) {
  const client = clientFromOptions(globals);
  const kek: Kek | undefined = opts.kek ? await kekFromRef(opts.kek, globals) : undefined;
  const keyring = new IndexKeyring(client, opts.index, kek ? { kek } : {});
  return {
    keyring,
    client,
    close: async () => {
      await keyring.clearCache();
      kek?.zero();
      await client.close();
    },
  };
}

/** Adds the DEK-layer commands to `program`. */
export function addDekCommands(program: Command, ctx: CliContext): void {
  const { out, globals } = ctx;
  const indexOption = (cmd: Command) =>
    cmd
      .requiredOption('--index <name>', 'the index whose DEKs to use', indexArg)
      .option(
        '--kek <ref>',
        'the KEK of a provider none envelope, as env:NAME | file:/abs/path | secret:name, not the key',
      );

  indexOption(program.command('encrypt'))
    .description(
      'encrypt the value on stdin (asked for without echo on a terminal) under the index’s active DEK; prints the wire token',
    )
    .option('--context <key=value>', 'bind the value to this context (repeatable)', repeatable(contextPair))
    .action(async (opts: IndexOptions & { context?: string[] }) => {
      // Asked for before the store and KMS are opened: a typo costs nothing.
      // The prompt reads stdin and writes to stderr, so stdout holds only results.
      const value = await readValue('value to encrypt', { input: ctx.stdin, output: process.stderr });
      const { keyring, close } = await openKeyring(globals(), opts);
      try {
        const context = opts.context ? contextOf(opts.context) : undefined;
        const token = await keyring.encryptValue(value, context ? { context } : {});
        if (out.json) out.printJson({ index: opts.index, token });
        else out.print(token);
      } finally {
        await close();
      }
    });

  indexOption(program.command('decrypt'))
    .description('decrypt the wire token on stdin; prints the value')
    .option(
      '--context <key=value>',
      'the context the value is bound to (repeatable)',
      repeatable(contextPair),
    )
    .action(async (opts: IndexOptions & { context?: string[] }) => {
      const token = (await readAll(ctx.stdin)).trim();
      const { keyring, close } = await openKeyring(globals(), opts);
      try {
        const context = opts.context ? contextOf(opts.context) : undefined;
        const value = await keyring.decryptValue(token, context ? { context } : {});
        if (out.json) out.printJson({ index: opts.index, value });
        else out.print(value);
      } finally {
        await close();
      }
    });

  const dek = program.command('dek').description('data keys (DEKs) of an index');
  indexOption(dek.command('create'))
    .description('create a DEK wrapped under the index’s KEK and make it active')
    .option('--no-activate', 'create it without making it the active DEK')
    .action(async (opts: IndexOptions & { activate: boolean }) => {
      const { keyring, close } = await openKeyring(globals(), opts);
      try {
        const created = await keyring.createDek({ activate: opts.activate });
        if (out.json)
          out.printJson({ index: opts.index, id: created.keyid, alg: created.alg, active: opts.activate });
        else out.print(`created DEK ${created.keyid} (${created.alg})${opts.activate ? ', active' : ''}`);
      } finally {
        await close();
      }
    });
  indexOption(dek.command('list'))
    .description('list the index’s DEKs (ids and states, never keys)')
    .action(async (opts: IndexOptions) => {
      const { keyring, close } = await openKeyring(globals(), opts);
      try {
        const deks = await keyring.listDeks();
        if (out.json) out.printJson(deks);
        else
          for (const d of deks)
            out.print(`${d.id}  ${d.alg}  ${d.state}${d.active ? '  active' : ''}  kek-slot ${d.kekSlotId}`);
      } finally {
        await close();
      }
    });
  indexOption(dek.command('deactivate'))
    .description('stop a DEK from encrypting new values (it still decrypts)')
    .argument('<id>', 'the DEK id (a UUID)', dekIdArg)
    .action(async (id: string, opts: IndexOptions) => {
      const { keyring, close } = await openKeyring(globals(), opts);
      try {
        await keyring.deactivateDek(id);
        if (out.json) out.printJson({ index: opts.index, id, deactivated: true });
        else out.print(`deactivated DEK ${id}`);
      } finally {
        await close();
      }
    });

  indexOption(program.command('rotate-kek'))
    .description('new KEK for the index: re-wrap every DEK record, then push the envelope (resumable)')
    .option('--dry-run', 'list what would change, change nothing')
    .option(
      '--new-kek <ref>',
      'the new KEK for provider none, as env:NAME | file:/abs/path | secret:name, not the key',
    )
    .action(async (opts: IndexOptions & { dryRun?: boolean; newKek?: string }) => {
      const { keyring, close } = await openKeyring(globals(), opts);
      const newKek = opts.newKek ? await kekFromRef(opts.newKek, globals()) : undefined;
      const bar = progressBar(out, 'rotate-kek [{bar}] {value}/{total} DEKs');
      let started = false;
      try {
        const report = await keyring.rotateKek({
          ...(opts.dryRun ? { dryRun: true } : {}),
          ...(newKek ? { newKek } : {}),
          onProgress: (done, total) => {
            if (!bar) return;
            if (!started) bar.start(total, 0);
            started = true;
            bar.update(done);
          },
        });
        bar?.stop();
        if (out.json) out.printJson({ index: opts.index, ...report });
        else if (report.dryRun) {
          out.print(
            `dry run: would re-wrap ${report.deks.length} of ${report.totalDeks} DEKs under a new KEK (envelope version ${report.version})`,
          );
          for (const id of report.deks) out.print(`  ${id}`);
        } else {
          out.print(
            `rotated the KEK of "${opts.index}": ${report.rewrapped} DEKs re-wrapped${report.alreadyDone ? `, ${report.alreadyDone} already done` : ''}${report.resumed ? ' (resumed)' : ''}; envelope version ${report.version}`,
          );
        }
      } finally {
        bar?.stop();
        newKek?.zero();
        await close();
      }
    });

  indexOption(program.command('migrate'))
    .description(
      'convert newline-delimited values (file or stdin) to wire tokens: plaintext and v2: are encrypted, tokens kept',
    )
    .argument('[file]', 'the values, one a line (default: stdin)')
    .option('--v2-user <id>', 'v2: values are under this user’s key (needs API_KEY_MASTER_KEY)')
    .option('--v2-pool', 'v2: values are under the pool key (needs API_KEY_MASTER_KEY)')
    .option(
      '--v2-salt <salt>',
      "salt of the pool key (the original's; earlier releases defaulted to kms-envelope-v2-pool)",
      LEGACY_POOL_KEY_SALT,
    )
    .option('--v2-keys-index <name>', 'index whose records hold the per-user keys', 'api-keys')
    .action(
      async (
        file: string | undefined,
        opts: IndexOptions & { v2User?: string; v2Pool?: boolean; v2Salt: string; v2KeysIndex: string },
      ) => {
        const fd = file === undefined ? undefined : openInput(file);
        const { keyring, client, close } = await openKeyring(globals(), opts);
        let legacyKey: LegacyKey | undefined;
        const counts: Record<MigratedKind, number> = { plaintext: 0, v2: 0, wire: 0 };
        let bar: cliProgress.SingleBar | undefined;
        try {
          if (opts.v2User || opts.v2Pool) {
            const state = legacyMasterKeyFromEnv();
            if (!state.enabled) throw new ConfigError(`cannot read v2: values: ${state.reason}`);
            legacyKey = opts.v2Pool
              ? legacyPoolKey(state.key, opts.v2Salt)
              : await getOrCreateUserKey(
                  recordStoreOf(client),
                  parseIndexName(opts.v2KeysIndex),
                  opts.v2User!,
                  state.key,
                );
            state.key.zero();
          }
          const input = createInterface({
            input: fd === undefined ? ctx.stdin : createReadStream('', { fd }),
            crlfDelay: Number.POSITIVE_INFINITY,
          });
          let lines = 0;
          for await (const line of input) {
            const result = await migrateValue(line, { keyring, ...(legacyKey ? { legacyKey } : {}) });
            counts[result.kind]++;
            if (out.json) out.printJson({ kind: result.kind, value: result.value }, true);
            else out.print(result.value);
            lines++;
            // Nobody reads the tokens any more (`… | head`): stop converting.
            if (out.closed) break;
            // A progress bar (on stderr) once the input turns out to be large.
            if (lines === 1000) {
              bar = progressBar(out, 'migrate {value} values');
              bar?.start(0, lines);
            }
            bar?.update(lines);
          }
          bar?.stop();
          out.info(
            `migrated ${lines} values: ${counts.plaintext} plaintext encrypted, ${counts.v2} v2: re-encrypted, ${counts.wire} already wire tokens`,
          );
        } finally {
          bar?.stop();
          legacyKey?.zero();
          await close();
        }
      },
    );
}
