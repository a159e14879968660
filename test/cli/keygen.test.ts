/**
 * `kms-envelope keygen recipient`: a private key file made 0600 and never over an existing file,
 * a public key that parses, a slot snippet that loads, and a wrap to that public key that opens
 * offline with the file.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  createRecipientProvider,
  parseRecipientPublicKey,
  type RecipientProvider,
  recipientPublicKeyOf,
} from '../../providers/recipient.js';
import { ExitCode } from '../../src/cli/exit-codes.js';
import { Kek } from '../../src/keys/kek.js';
import { parseIndexName, parseSlotName } from '../../src/names.js';
import { parseSlotsConfig } from '../../src/providers/slot.js';
import { cli } from './in-process.js';

const dir = mkdtempSync(join(tmpdir(), 'ke-keygen-'));

describe('kms-envelope keygen recipient', () => {
  it.each(['x25519', 'x25519-mlkem768'] as const)(
    '%s: a 0600 key file, --json fields, and a wrap to the public key opens offline with the file',
    async (kind) => {
      const file = join(dir, `${kind}.key`);
      const out = await cli(['--json', 'keygen', 'recipient', '--kind', kind, '--out', file]);
      expect(out.code, out.stderr).toBe(0);
      const made = JSON.parse(out.stdout) as Record<string, string>;
      expect(Object.keys(made).sort()).toEqual(['fingerprint', 'kind', 'privateKeyFile', 'publicKey']);
      expect(made).toMatchObject({ kind, privateKeyFile: file });
      expect(statSync(file).mode & 0o777).toBe(0o600);

      const publicKey = parseRecipientPublicKey(made.publicKey!);
      expect(publicKey).toMatchObject({ kind, fingerprint: made.fingerprint });
      const bytes = readFileSync(file);
      expect(await recipientPublicKeyOf(bytes)).toBe(made.publicKey);
      // Nothing of the private key in what was printed.
      expect(out.stdout).not.toContain(bytes.toString('utf8').split('\n')[2]);

      const provider = await createRecipientProvider({ publicKey: made.publicKey!, slot: 'recovery' });
      const context = {
        index: parseIndexName('orders'),
        slot: parseSlotName('recovery'),
        encryptionContext: { tenant: 'acme' },
      };
      const kek = Kek.fromBytes(randomBytes(32));
      const wrapped = await provider.wrap(kek, context);
      expect(wrapped.keyId).toBe(made.fingerprint);
      const opened = await (provider as RecipientProvider).unwrapOffline(wrapped, context, bytes);
      expect(opened.equals(kek)).toBe(true);
      // The request path never opens it.
      await expect(provider.unwrap(wrapped, context)).rejects.toMatchObject({
        code: 'KMS_ENVELOPE_SLOT_NOT_ALLOWED',
      });
      opened.zero();
      kek.zero();
    },
  );

  it('the default kind is the hybrid; text output: the public key first, then a slot that loads', async () => {
    const file = join(dir, 'default.key');
    const out = await cli(['--slot', 'break-glass', 'keygen', 'recipient', '--out', file]);
    expect(out.code, out.stderr).toBe(0);
    const [first] = out.stdout.split('\n');
    expect(first).toMatch(/^kmsr1-x25519-mlkem768:[A-Za-z0-9_-]+$/);
    const yaml = out.stdout.slice(out.stdout.indexOf('slots:'));
    const [slot] = parseSlotsConfig(yaml);
    expect(slot).toMatchObject({ name: 'break-glass', provider: 'recipient', options: { publicKey: first } });
    expect(slot!.keyId).toBe(parseRecipientPublicKey(first!).fingerprint);
  });

  it('refuses an existing file (exit 2) and leaves it as it was', async () => {
    const file = join(dir, 'taken.key');
    writeFileSync(file, 'not mine to overwrite\n', { mode: 0o600 });
    const out = await cli(['keygen', 'recipient', '--kind', 'x25519', '--out', file]);
    expect(out.code).toBe(ExitCode.usage);
    expect(out.stderr).toMatch(/already exists: a recipient key file is never overwritten/);
    expect(out.stdout).toBe('');
    expect(readFileSync(file, 'utf8')).toBe('not mine to overwrite\n');
    const missingDir = await cli([
      'keygen',
      'recipient',
      '--kind',
      'x25519',
      '--out',
      join(dir, 'no/such/dir.key'),
    ]);
    expect(missingDir.code).toBe(ExitCode.config);
    expect(missingDir.stderr).toMatch(/cannot create the recipient key file/);
  });
});
