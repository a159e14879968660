/**
 * The no-echo prompt of `encrypt` on a terminal, on a fake terminal (a stream pair that says it
 * is a TTY): what is typed never reaches the output, two entries must match, Ctrl-C and Ctrl-D
 * cancel with a typed error instead of hanging, and a pipe is read as it is.
 */
import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { promptSecret, readValue } from '../../src/cli/prompt.js';
import { InvalidArgumentError, KmsEnvelopeError } from '../../src/errors.js';

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
