/**
 * The no-echo prompt of `encrypt` on a terminal, on a fake terminal (a stream pair that says it
 * is a TTY): what is typed never reaches the output, two entries must match, Ctrl-C and Ctrl-D
 * cancel with a typed error instead of hanging, and a pipe is read as it is.
 */
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { promptSecret, readValue } from '../../src/cli/prompt.js';
import { KmsEnvelopeClient } from '../../src/client.js';
import { InvalidArgumentError, KmsEnvelopeError } from '../../src/errors.js';
import { IndexKeyring } from '../../src/keyring/keyring.js';
import { StorageConfig } from '../../src/storage/config.js';
import { localSlotFlags, repo } from '../helpers/cli.js';
import { cli } from './in-process.js';

function fakeTerminal() {
  let raw = false;
  const input = Object.assign(new PassThrough(), {
    isTTY: true,
    setRawMode(mode: boolean) {
      raw = mode;
      return input;
    },
  });
  const output = Object.assign(new PassThrough(), { isTTY: true });
  let shown = '';
  output.setEncoding('utf8').on('data', (chunk: string) => {
    shown += chunk;
  });
  /** Types `keys` once the prompt has been shown `prompts` times. */
  const typeAfter = async (prompts: number, keys: string) => {
    while ((shown.match(/: $/gm) ?? []).length < prompts) await new Promise((r) => setTimeout(r, 5));
    input.write(keys);
  };
  return { streams: { input, output }, shown: () => shown, raw: () => raw, typeAfter };
}

describe('the no-echo prompt', () => {
  it('asks twice on a terminal, returns the value, and never echoes it', async () => {
    const term = fakeTerminal();
    const value = readValue('value to encrypt', term.streams);
    await term.typeAfter(1, 'card-4242\r');
    await term.typeAfter(2, 'card-4242\r');
    expect(await value).toBe('card-4242');
    expect(term.shown()).toBe('value to encrypt: \nvalue to encrypt (again): \n');
    expect(term.raw()).toBe(false); // raw mode (no kernel echo) was turned off again
  });

  it('refuses two different entries and an empty one, without repeating them', async () => {
    const term = fakeTerminal();
    const differ = promptSecret('value', term.streams);
    await term.typeAfter(1, 'first-secret\r');
    await term.typeAfter(2, 'other-secret\r');
    const err = await differ.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InvalidArgumentError);
    expect((err as Error).message).toBe('the two entries of the value differ');
    expect(term.shown()).not.toMatch(/secret/);

    const empty = fakeTerminal();
    const none = promptSecret('value', empty.streams);
    await empty.typeAfter(1, '\r');
    await expect(none).rejects.toThrow(/must not be empty/);
  });

  it.each([
    ['Ctrl-D', '\x04'],
    ['Ctrl-C', '\x03'],
  ])('%s cancels with a typed error (no hang, no exit 0 with nothing done)', async (_name, key) => {
    const term = fakeTerminal();
    const asked = promptSecret('value', term.streams);
    await term.typeAfter(1, 'half');
    await term.typeAfter(1, key === '\x04' ? '\x15\x04' : key); // Ctrl-U clears the line, then Ctrl-D
    const err = await asked.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(KmsEnvelopeError);
    expect((err as Error).message).toBe('no value entered (the prompt was cancelled)');
  });

  it('reads a pipe (not a terminal) whole, without the trailing newline, and prompts nothing', async () => {
    const input = new PassThrough();
    const output = new PassThrough();
    let shown = '';
    output.on('data', (chunk: Buffer) => {
      shown += chunk.toString();
    });
    input.end('line one\nline two\n');
    expect(await readValue('value', { input, output })).toBe('line one\nline two');
    expect(shown).toBe('');
  });
});

// util-linux `script` runs the CLI on a real pseudo-terminal: the kernel would echo what is typed
// unless the prompt turned echo off.
const hasScript = spawnSync('script', ['--version'], { encoding: 'utf8' }).status === 0;

describe.skipIf(!hasScript)('kms-envelope encrypt on a real terminal (script(1))', () => {
  it('prompts twice on the terminal, echoes nothing typed, and prints the token', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ke-pty-'));
    const env = { DEV_MASTER: randomBytes(32).toString('base64url') };
    const base = localSlotFlags(`disk:${join(dir, 'store')}`);
    expect((await cli([...base, 'create', 'tty'], env)).code).toBe(0);
    expect((await cli([...base, 'dek', 'create', '--index', 'tty'], env)).code).toBe(0);
    const command = [
      'node',
      '--import',
      'tsx',
      join(repo, 'src/cli/bin.ts'),
      ...base,
      'encrypt',
      '--index',
      'tty',
    ]
      .map((arg) => `'${arg}'`)
      .join(' ');
    const child = spawn('script', ['-qec', command, '/dev/null'], {
      cwd: repo,
      env: { ...process.env, ...env },
    });
    let shown = '';
    let typed = 0;
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      shown += chunk;
      // Type each entry once its prompt is on the terminal.
      const prompts = (shown.match(/value to encrypt( \(again\))?: /g) ?? []).length;
      while (typed < prompts) {
        child.stdin.write('pty-secret-42\r');
        typed++;
      }
    });
    const code = await new Promise<number | null>((resolve) => child.once('close', resolve));
    expect(code).toBe(0);
    expect(shown).not.toContain('pty-secret-42');
    const token = /\$A256GCM\$[^\s]+/.exec(shown)?.[0];
    expect(token).toBeDefined();
    // The token decrypts to what was typed.
    process.env.PTY_MASTER = env.DEV_MASTER;
    const client = new KmsEnvelopeClient({
      store: StorageConfig.disk(join(dir, 'store')),
      kms: { slots: { dev: { provider: 'local', masterKey: 'env:PTY_MASTER' } } },
    });
    try {
      expect(await new IndexKeyring(client, 'tty').decryptValue(token!)).toBe('pty-secret-42');
    } finally {
      await client.close();
    }
  }, 60_000);
});
