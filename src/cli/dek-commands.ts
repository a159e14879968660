/**
 * CLI commands of the DEK layer: `encrypt`, `decrypt`, `dek create|list|deactivate`,
 * `rotate-kek` and `migrate`. Values come from stdin (or a file), never from arguments, so they
 * do not end up in shell history or process listings; no key is ever printed.
 *
 * @module
 */
import { createReadStream } from 'node:fs';
import { createInterface } from 'node:readline';
import cliProgress from 'cli-progress';
import type { Command } from 'commander';
import { ConfigError } from '../errors.js';
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
import { clientFromOptions, type GlobalOptions, kekFromRef, parseContextFlags } from './context.js';

const collect = (value: string, previous: string[] = []) => [...previous, value];

/** Reads all of stdin as UTF-8, without the one trailing newline a shell adds. */
async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks)
    .toString('utf8')
    .replace(/\r?\n$/, '');
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
export function addDekCommands(program: Command, print: (line: string) => void): void {
  const globals = (): GlobalOptions => program.opts<GlobalOptions>();
  const indexOption = (cmd: Command) =>
    cmd
      .requiredOption('--index <name>', 'the index whose DEKs to use')
      .option(
        '--kek <ref>',
        'the KEK of a provider none envelope, as env:NAME | file:/abs/path | secret:name, not the key',
      );

  indexOption(program.command('encrypt'))
    .description('encrypt the value on stdin under the index’s active DEK; prints the wire token')
    .option('--context <key=value>', 'bind the value to this context (repeatable)', collect)
    .action(async (opts: IndexOptions & { context?: string[] }) => {
      const { keyring, close } = await openKeyring(globals(), opts);
      try {
        const context = opts.context ? parseContextFlags(opts.context) : undefined;
        print(await keyring.encryptValue(await readStdin(), context ? { context } : {}));
      } finally {
        await close();
      }
    });

  indexOption(program.command('decrypt'))
    .description('decrypt the wire token on stdin; prints the value')
    .option('--context <key=value>', 'the context the value is bound to (repeatable)', collect)
    .action(async (opts: IndexOptions & { context?: string[] }) => {
      const { keyring, close } = await openKeyring(globals(), opts);
      try {
        const context = opts.context ? parseContextFlags(opts.context) : undefined;
        print(await keyring.decryptValue((await readStdin()).trim(), context ? { context } : {}));
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
        print(`created DEK ${created.keyid} (${created.alg})${opts.activate ? ', active' : ''}`);
      } finally {
        await close();
      }
    });
  indexOption(dek.command('list'))
    .description('list the index’s DEKs (ids and states, never keys)')
    .option('--json', 'print as JSON')
    .action(async (opts: IndexOptions & { json?: boolean }) => {
      const { keyring, close } = await openKeyring(globals(), opts);
      try {
        const deks = await keyring.listDeks();
        if (opts.json) print(JSON.stringify(deks, null, 2));
        else
          for (const d of deks)
            print(`${d.id}  ${d.alg}  ${d.state}${d.active ? '  active' : ''}  kek-slot ${d.kekSlotId}`);
      } finally {
        await close();
      }
    });
  indexOption(dek.command('deactivate <id>'))
    .description('stop a DEK from encrypting new values (it still decrypts)')
    .action(async (id: string, opts: IndexOptions) => {
      const { keyring, close } = await openKeyring(globals(), opts);
      try {
        await keyring.deactivateDek(id);
        print(`deactivated DEK ${id}`);
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
      const bar = process.stderr.isTTY
        ? new cliProgress.SingleBar(
            { format: 'rotate-kek [{bar}] {value}/{total} DEKs', stream: process.stderr },
            cliProgress.Presets.shades_classic,
          )
        : undefined;
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
        if (report.dryRun) {
          print(
            `dry run: would re-wrap ${report.deks.length} of ${report.totalDeks} DEKs under a new KEK (envelope version ${report.version})`,
          );
          for (const id of report.deks) print(`  ${id}`);
        } else {
          print(
            `rotated the KEK of "${opts.index}": ${report.rewrapped} DEKs re-wrapped${report.alreadyDone ? `, ${report.alreadyDone} already done` : ''}${report.resumed ? ' (resumed)' : ''}; envelope version ${report.version}`,
          );
        }
      } finally {
        bar?.stop();
        newKek?.zero();
        await close();
      }
    });

  indexOption(program.command('migrate [file]'))
    .description(
      'convert newline-delimited values (file or stdin) to wire tokens: plaintext and v2: are encrypted, tokens kept',
    )
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
            input: file ? createReadStream(file) : process.stdin,
            crlfDelay: Number.POSITIVE_INFINITY,
          });
          let lines = 0;
          for await (const line of input) {
            const result = await migrateValue(line, { keyring, ...(legacyKey ? { legacyKey } : {}) });
            counts[result.kind]++;
            print(result.value);
            lines++;
            // A progress bar (on stderr) once the input turns out to be large.
            if (lines === 1000 && process.stderr.isTTY) {
              bar = new cliProgress.SingleBar(
                { format: 'migrate {value} values', stream: process.stderr },
                cliProgress.Presets.shades_classic,
              );
              bar.start(0, lines);
            }
            bar?.update(lines);
          }
          bar?.stop();
          process.stderr.write(
            `migrated ${lines} values: ${counts.plaintext} plaintext encrypted, ${counts.v2} v2: re-encrypted, ${counts.wire} already wire tokens\n`,
          );
        } finally {
          bar?.stop();
          legacyKey?.zero();
          await close();
        }
      },
    );
}
