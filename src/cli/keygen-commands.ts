/**
 * `kms-envelope keygen recipient`: a break-glass key pair for a `recipient` slot. The private key
 * goes to a new file (0600, never overwriting one) and is wiped from memory; the public key, its
 * fingerprint and the slot to paste into the slots file are printed.
 *
 * @module
 */
import { resolve } from 'node:path';
import { type Command, Option } from 'commander';
import {
  DEFAULT_RECIPIENT_KIND,
  generateRecipientKeyPair,
  RECIPIENT_KINDS,
  type RecipientKind,
  writeRecipientKeyFile,
} from '../../providers/recipient.js';
import { type CliContext, oneSlot } from './context.js';

/** The slot (YAML) that wraps to `publicKey`, as docs/providers/recipient.md shows it. */
export function recipientSlotYaml(slot: string, publicKey: string, fingerprint: string): string {
  return [
    'slots:',
    `  ${slot}:`,
    '    provider: recipient',
    '    allow_public_key_wrap: true',
    `    key_id: ${fingerprint}`,
    '    options:',
    `      publicKey: ${publicKey}`,
  ].join('\n');
}

/** Adds `keygen recipient` to `program`. */
export function addKeygenCommands(program: Command, ctx: CliContext): void {
  const { out, globals } = ctx;
  const keygen = program.command('keygen').description('make key pairs for slots');

  keygen
    .command('recipient')
    .description(
      'a break-glass key pair for a recipient slot: the private key to a new 0600 file (keep it offline), the public key printed',
    )
    .addOption(
      new Option('--kind <kind>', 'x25519-mlkem768 (post-quantum hybrid) or x25519')
        .choices(RECIPIENT_KINDS)
        .default(DEFAULT_RECIPIENT_KIND),
    )
    .requiredOption('--out <file>', 'the private key file to create (refused if it exists)')
    .action(async (opts: { kind: RecipientKind; out: string }) => {
      const slot = oneSlot(globals(), 'keygen recipient') ?? 'recovery';
      const file = resolve(opts.out);
      const pair = await generateRecipientKeyPair(opts.kind);
      try {
        await writeRecipientKeyFile(file, pair.privateKey);
      } finally {
        pair.privateKey.fill(0);
      }
      if (out.json) {
        out.printJson({
          publicKey: pair.publicKey,
          fingerprint: pair.fingerprint,
          kind: opts.kind,
          privateKeyFile: file,
        });
        return;
      }
      // The public key alone on the first line (`… | head -1`), then what to do with it.
      out.print(pair.publicKey);
      out.print(`\nfingerprint ${pair.fingerprint}`);
      out.print(`private key written to ${file} (mode 0600): keep it offline\n`);
      out.print(
        `a slot that wraps to it, for the slots file:\n\n${recipientSlotYaml(slot, pair.publicKey, pair.fingerprint)}`,
      );
    });
}
