import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { KmsEnvelopeError } from '../../src/errors.js';
import { Dek } from '../../src/keys/dek.js';
import { decryptString, type FieldOptions, type KeyContext } from '../../src/wire/fields.js';
import { parseDekId } from '../../src/wire/key-id.js';

/** One row of test/vectors/gemstone-v0.5-wire.json. */
export interface WireVector {
  readonly alg: string;
  readonly keyid: string;
  readonly key_b64url: string;
  readonly plaintext: string | null;
  readonly wire: string;
  readonly valid: boolean;
  readonly legacy_four_part?: boolean;
  readonly comment: string;
}

/** The vector file, read as another implementation would read it. */
export const vectorFile = JSON.parse(
  readFileSync(join(import.meta.dirname, '../vectors/gemstone-v0.5-wire.json'), 'utf8'),
) as { readonly source: string; readonly vectors: readonly WireVector[] };

export const validVectors = vectorFile.vectors.filter(
  (v): v is WireVector & { plaintext: string } => v.valid && typeof v.plaintext === 'string',
);
export const invalidVectors = vectorFile.vectors.filter((v) => !v.valid);

export function keyContextOf(v: WireVector): KeyContext {
  return {
    keyid: parseDekId(v.keyid),
    key: Dek.fromBytes(Buffer.from(v.key_b64url, 'base64url')),
    alg: v.alg,
  };
}

/**
 * Decrypts and classifies: the plaintext, or the typed error. Anything else (an untyped throw)
 * fails the test that called it.
 */
export function attempt(token: string, ctx: KeyContext, options?: FieldOptions): string | KmsEnvelopeError {
  try {
    return decryptString(token, ctx, options);
  } catch (err) {
    if (err instanceof KmsEnvelopeError) return err;
    throw new Error(
      `decryptString threw an untyped ${(err as Error)?.constructor?.name}: ${(err as Error)?.message}`,
    );
  }
}
