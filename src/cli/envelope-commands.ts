/**
 * CLI commands on one index's envelope: `create`, `get`, `rotate`, `delete`, `verify`, `recover`,
 * and `inspect` of an envelope file. They print envelope fields, never a key unless `--reveal`.
 *
 * @module
 */
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import type { KmsEnvelopeClient } from '../client.js';
import { decodeKmsBlob } from '../envelope/codec.js';
import type { KmsBlob } from '../envelope/kms-blob.js';
import { EnvelopeNotFoundError, InvalidArgumentError } from '../errors.js';
import { IndexKeyring, recordStoreOf } from '../keyring/keyring.js';
import type { Kek } from '../keys/kek.js';
import { parseIndexName } from '../names.js';
import {
  type CliContext,
  clientFromOptions,
  contextOf,
  FLAG_SLOT,
  type GlobalOptions,
  kekFromRef,
  oneSlot,
  secretFromRef,
} from './context.js';
import { blobToJson, formatBlob } from './format.js';
import { base64Arg, contextPair, indexArg, integerArg, repeatable, slotArg } from './parsers.js';

const KEK_REF_HELP =
  'the KEK of a provider none envelope, as env:NAME | file:/abs/path | secret:name, not the key';

/** Runs `body` with a client of the global options, closed afterwards. */
async function withClient<T>(
  globals: GlobalOptions,
  body: (client: KmsEnvelopeClient) => Promise<T>,
): Promise<T> {
  const client = clientFromOptions(globals);
  try {
    return await body(client);
  } finally {
    await client.close();
  }
}

/** The slots `create` wraps with: every `--slot`, in order, once each (the first is the primary). */
function createSlots(globals: GlobalOptions): string[] {
  const slots = [...new Set(globals.slot ?? [])];
  if (slots.length === 0 && globals.provider) slots.push(FLAG_SLOT);
  if (slots.length === 0) throw new InvalidArgumentError('create needs --slot (or --provider to define one)');
  return slots;
}

/** The envelope: JSON with `--json`, else the text lines after `heading`. */
function printBlob(ctx: CliContext, blob: KmsBlob, heading?: string, extra: Record<string, unknown> = {}) {
  if (ctx.out.json) ctx.out.printJson({ ...blobToJson(blob), ...extra });
  else ctx.out.print(heading === undefined ? formatBlob(blob) : `${heading}:\n${formatBlob(blob)}`);
}

/** The records an index still owns (DEKs, KEK check, rotation state), 0 on a store without records. */
async function recordCount(client: KmsEnvelopeClient, index: string): Promise<number> {
  let store: ReturnType<typeof recordStoreOf>;
  try {
    store = recordStoreOf(client);
  } catch {
    return 0; // a store that keeps no records has none to count
  }
  const name = parseIndexName(index);
  return (await store.listRecords(name, 'dek')).size + (await store.listRecords(name, 'meta')).size;
}

/** Adds the envelope commands to `program`. */
export function addEnvelopeCommands(program: Command, ctx: CliContext): void {
  const { out, globals } = ctx;

  program
    .command('create')
    .description('create the envelope of a new index: a new random KEK wrapped by each --slot')
    .argument('<index>', 'the new index', indexArg)
    .option(
      '--context <key=value>',
      'encryption context bound to the wraps (repeatable)',
      repeatable(contextPair),
    )
    .option(
      '--threshold <k>',
      'split the KEK so that any k of the --slot wraps recover it (Shamir; default: any one wrap)',
      integerArg(2, '--threshold'),
    )
    .option('--reveal', 'also print the new KEK (base64url) — handle with care')
    .action(async (index: string, opts: { context?: string[]; threshold?: number; reveal?: boolean }) => {
      const slots = createSlots(globals());
      if (opts.threshold !== undefined && opts.threshold > slots.length)
        throw new InvalidArgumentError(
          `--threshold ${opts.threshold} needs at least ${opts.threshold} --slot`,
        );
      await withClient(globals(), async (client) => {
        // Created ready for DEKs: the envelope names a KEK slot id and the KEK-check record is written.
        await IndexKeyring.createIndex(client, index, {
          slot: slots[0]!,
          ...(slots.length > 1 ? { slots } : {}),
          ...(opts.threshold !== undefined ? { threshold: opts.threshold } : {}),
          encryptionContext: contextOf(opts.context),
        });
        const kek = await client.unwrap(index);
        try {
          const blob = await client.getEnvelope(index);
          const reveal = opts.reveal ? kek.expose().toString('base64url') : undefined;
          printBlob(ctx, blob, `created envelope of "${index}"`, reveal ? { kek: reveal } : {});
          if (reveal && !out.json) out.print(`kek ${reveal}`);
        } finally {
          kek.zero();
        }
      });
    });

  program
    .command('get')
    .description("print the envelope's fields (never the key)")
    .argument('<index>', 'the index', indexArg)
    .action(async (index: string) => {
      await withClient(globals(), async (client) => printBlob(ctx, await client.getEnvelope(index)));
    });

  program
    .command('rotate')
    .description(
      're-wrap the same KEK (version + 1), under the same or another slot, adding or removing wraps',
    )
    .argument('<index>', 'the index', indexArg)
    .option('--to-slot <name>', 'wrap under this slot instead (the new primary)', slotArg)
    .option('--add-slot <name>', 'also wrap under this slot (repeatable)', repeatable(slotArg))
    .option('--remove-slot <name>', 'drop the wrap of this slot (repeatable)', repeatable(slotArg))
    .option(
      '--threshold <k>',
      'new policy: any k of the wraps recover the KEK (Shamir shares), 0 for any one wrap',
      integerArg(0, '--threshold'),
    )
    .option('--kek <ref>', KEK_REF_HELP)
    .action(
      async (
        index: string,
        opts: {
          toSlot?: string;
          addSlot?: string[];
          removeSlot?: string[];
          threshold?: number;
          kek?: string;
        },
      ) => {
        if (opts.threshold === 1)
          throw new InvalidArgumentError('--threshold is 0 (any one wrap) or at least 2');
        const kek: Kek | undefined = opts.kek ? await kekFromRef(opts.kek, globals()) : undefined;
        try {
          await withClient(globals(), async (client) => {
            const blob = await client.rotate(index, {
              ...(opts.toSlot ? { toSlot: opts.toSlot } : {}),
              ...(opts.addSlot ? { addSlot: opts.addSlot } : {}),
              ...(opts.removeSlot ? { removeSlot: opts.removeSlot } : {}),
              ...(opts.threshold !== undefined ? { threshold: opts.threshold } : {}),
              ...(kek ? { kek } : {}),
            });
            printBlob(ctx, blob, `rotated "${index}" to version ${blob.version}`);
          });
        } finally {
          kek?.zero();
        }
      },
    );

  program
    .command('delete')
    .description(
      'delete everything the index owns: its DEK records, KEK-check and other records, then its envelope (no-op when there is none; run again after an interruption). Values encrypted under its DEKs can no longer be decrypted',
    )
    .argument('<index>', 'the index', indexArg)
    .option(
      '--keep-records',
      'delete only the envelope and keep the records (to push a saved envelope back later); create refuses the index until they are gone',
    )
    .action(async (index: string, opts: { keepRecords?: boolean }) => {
      await withClient(globals(), async (client) => {
        const existed = await client.getEnvelope(index).then(
          () => true,
          (err: unknown) => {
            if (err instanceof EnvelopeNotFoundError) return false;
            throw err;
          },
        );
        const records = opts.keepRecords ? 0 : await recordCount(client, index);
        // Also without an envelope: records left by an interrupted delete or --keep-records go too.
        await client.delete(index, opts.keepRecords ? { keepRecords: true } : {});
        if (out.json) {
          out.printJson({
            index,
            deleted: existed,
            recordsDeleted: records,
            recordsKept: opts.keepRecords === true,
          });
        } else if (!existed) {
          out.print(
            records > 0
              ? `${index}: no envelope; deleted ${records} records left by an earlier delete`
              : `${index}: no envelope (nothing to delete)`,
          );
        } else {
          out.print(
            opts.keepRecords
              ? `deleted envelope of "${index}" (records kept)`
              : `deleted envelope and records of "${index}"`,
          );
        }
      });
    });

  program
    .command('verify')
    .description('unwrap the KEK with its slot and report whether it is sound')
    .argument('<index>', 'the index', indexArg)
    .option('--kek <ref>', KEK_REF_HELP)
    .option('--reveal', 'also print the unwrapped KEK (base64url) — handle with care')
    .action(async (index: string, opts: { kek?: string; reveal?: boolean }) => {
      const supplied = opts.kek ? await kekFromRef(opts.kek, globals()) : undefined;
      try {
        await withClient(globals(), async (client) => {
          const kek = await client.unwrap(index, supplied ? { kek: supplied } : {});
          try {
            const blob = await client.getEnvelope(index);
            const reveal = opts.reveal ? kek.expose().toString('base64url') : undefined;
            if (out.json) {
              out.printJson({
                index,
                ok: true,
                version: blob.version,
                kmsName: blob.kmsName,
                provider: blob.provider,
                kekCheck: blob.kekCheck !== undefined,
                ...(reveal ? { kek: reveal } : {}),
              });
              return;
            }
            const check =
              blob.kekCheck === undefined ? 'no KEK check value stored' : 'KEK check value matches';
            out.print(
              `ok: "${index}" version ${blob.version} unwraps with slot "${blob.kmsName}" (${blob.provider}); ${check}`,
            );
            if (reveal) out.print(`kek ${reveal}`);
          } finally {
            kek.zero();
          }
        });
      } finally {
        supplied?.zero();
      }
    });

  program
    .command('recover')
    .description(
      'break glass: open the recipient wrap with the offline private key, check it against the KEK check, and re-wrap the KEK under working slots (one compare-and-set)',
    )
    .argument('<index>', 'the index', indexArg)
    .requiredOption(
      '--private-key <ref>',
      'the recipient private key file, as file:/abs/path (its folder allowed by --secret-dir) | secret:name',
    )
    .option(
      '--to-slot <name>',
      're-wrap under this slot, the first as the primary (repeatable; default: every slot of the envelope)',
      repeatable(slotArg),
    )
    .option(
      '--expected-kek-check <base64>',
      'the kekCheck recorded outside the store at create time (create --json or get --json): refuse an envelope whose check differs',
      base64Arg,
    )
    .action(
      async (index: string, opts: { privateKey: string; toSlot?: string[]; expectedKekCheck?: Buffer }) => {
        // --slot names the break-glass slot here (default: the envelope's offline-only slot).
        const slot = globals().slot?.length ? oneSlot(globals(), 'recover') : undefined;
        const privateKey = await secretFromRef(opts.privateKey, globals());
        try {
          await withClient(globals(), async (client) => {
            const blob = await client.recover(index, {
              privateKey,
              ...(slot !== undefined ? { slot } : {}),
              ...(opts.toSlot ? { toSlots: opts.toSlot } : {}),
              ...(opts.expectedKekCheck ? { expectedKekCheck: opts.expectedKekCheck } : {}),
            });
            printBlob(ctx, blob, `recovered "${index}": version ${blob.version}`);
          });
        } finally {
          privateKey.fill(0);
        }
      },
    );

  program
    .command('inspect')
    .description('decode and verify a KMSBlob file')
    .argument('<file>', 'the envelope file (.kmsb)')
    .action((file: string) => {
      let bytes: Buffer;
      try {
        bytes = readFileSync(file);
      } catch (cause) {
        throw new EnvelopeNotFoundError(`cannot read ${file}`, { cause });
      }
      printBlob(ctx, decodeKmsBlob(bytes));
    });
}
