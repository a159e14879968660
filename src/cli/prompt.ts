/**
 * Reading a value to encrypt: from stdin when it is a pipe or a file, or, when stdin is a
 * terminal, from a prompt that does not echo (asked twice, since a typo cannot be seen). The
 * prompt goes to stderr, so stdout carries only the result.
 *
 * node:readline in terminal mode puts the terminal in raw mode (so the kernel does not echo) and
 * its own echo goes to a sink that discards it. (The `read` package, used before, left its promise
 * pending on Ctrl-D: the process then ended with status 0 and nothing encrypted.)
 *
 * @module
 */
import { createInterface } from 'node:readline';
import { Writable } from 'node:stream';
import { InvalidArgumentError, KmsEnvelopeError } from '../errors.js';

/** Streams the prompt reads from and writes to (a fake terminal in tests). */
export interface PromptStreams {
  readonly input: NodeJS.ReadableStream & { isTTY?: boolean };
  readonly output: NodeJS.WritableStream & { isTTY?: boolean };
}

/** Reads all of `input` as UTF-8, without the one trailing newline a shell adds. */
export async function readAll(input: NodeJS.ReadableStream): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of input) chunks.push(typeof chunk === 'string' ? Buffer.from(chunk) : chunk);
  return Buffer.concat(chunks)
    .toString('utf8')
    .replace(/\r?\n$/, '');
}

/**
 * One line read without echo. @throws KmsEnvelopeError when cancelled (Ctrl-C, Ctrl-D, end of input).
 */
async function askHidden(prompt: string, streams: PromptStreams, what: string): Promise<string> {
  const discard = new Writable({ write: (_chunk, _encoding, done) => done() });
  // terminal: true even when the output is not a terminal: readline then puts the input terminal
  // in raw mode, so the kernel does not echo either.
  const rl = createInterface({ input: streams.input, output: discard, terminal: true });
  // Only now, with echo off: what someone types as soon as the prompt shows is not echoed.
  streams.output.write(prompt);
  try {
    return await new Promise<string>((resolve, reject) => {
      const cancelled = () => reject(new KmsEnvelopeError(`no ${what} entered (the prompt was cancelled)`));
      rl.once('line', resolve);
      rl.once('close', cancelled);
      rl.once('SIGINT', cancelled);
    });
  } finally {
    rl.close();
    streams.output.write('\n');
  }
}

/**
 * Asks for a secret value without echoing it, twice; the two entries must match.
 * @throws InvalidArgumentError when they differ or the value is empty; KmsEnvelopeError when the
 * prompt is cancelled (Ctrl-C, end of input). Messages never contain what was typed.
 */
export async function promptSecret(what: string, streams: PromptStreams): Promise<string> {
  const ask = (prompt: string) => askHidden(prompt, streams, what);
  const first = await ask(`${what}: `);
  if (first === '') throw new InvalidArgumentError(`the ${what} must not be empty`);
  const again = await ask(`${what} (again): `);
  if (again !== first) throw new InvalidArgumentError(`the two entries of the ${what} differ`);
  return first;
}

/**
 * The value to encrypt: prompted for (no echo) when `streams.input` is a terminal, else all of it.
 * @throws as {@link promptSecret}.
 */
export async function readValue(what: string, streams: PromptStreams): Promise<string> {
  return streams.input.isTTY === true ? promptSecret(what, streams) : readAll(streams.input);
}
