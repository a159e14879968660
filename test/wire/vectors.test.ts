import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { DecryptFailedError, KmsEnvelopeError } from '../../src/errors.js';
import { encryptWithNonceForTesting } from '../../src/wire/algorithms.js';
import { decryptString } from '../../src/wire/fields.js';
import { formatEncryptedField, joinToken, parseEncryptedField } from '../../src/wire/format.js';
import { attempt, invalidVectors, keyContextOf, validVectors, vectorFile } from './vectors.js';

describe('gemstone_utils v0.5 vectors (test/vectors/gemstone-v0.5-wire.json)', () => {
  // The legacy row warns (tested in format.test.ts); keep the output clean here.
  beforeAll(() => {
    vi.spyOn(process, 'emitWarning').mockImplementation(() => {});
  });
  afterAll(() => {
    vi.restoreAllMocks();
  });

  it('come from the Python library, with valid and tampered rows', () => {
    expect(vectorFile.source).toMatch(/^gemstone_utils v0\.5/);
    expect(validVectors.length).toBeGreaterThanOrEqual(6);
    expect(invalidVectors.length).toBeGreaterThanOrEqual(3);
    expect(validVectors.some((v) => v.legacy_four_part)).toBe(true);
  });

  it.each(validVectors)('valid row decrypts to its plaintext: $comment ($plaintext.length chars)', (v) => {
    expect(decryptString(v.wire, keyContextOf(v))).toBe(v.plaintext);
  });

  it.each(invalidVectors)('invalid row is a DecryptFailedError: $comment', (v) => {
    const result = attempt(v.wire, keyContextOf(v));
    expect(result).toBeInstanceOf(KmsEnvelopeError);
    // Every tampered row is well formed; only the tag check can catch it.
    expect(result).toBeInstanceOf(DecryptFailedError);
    expect((result as Error).message).toContain(v.keyid);
  });

  const fivePart = validVectors.filter((v) => !v.legacy_four_part);

  it.each(fivePart)('parse then format gives the same string back ($plaintext.length chars)', (v) => {
    const field = parseEncryptedField(v.wire);
    expect(field).toMatchObject({ alg: 'A256GCM', keyId: v.keyid, params: {}, legacy: false });
    expect(field.blob).toHaveLength(12 + Buffer.byteLength(v.plaintext) + 16);
    expect(formatEncryptedField(field)).toBe(v.wire);
  });

  it.each(fivePart)(
    'encrypting under the vector nonce reproduces the token byte for byte ($plaintext.length chars)',
    (v) => {
      const ctx = keyContextOf(v);
      const nonce = parseEncryptedField(v.wire).blob.subarray(0, 12);
      // As encryptString does it (UTF-8 inside the cipher), and from bytes: the same token.
      for (const plaintext of [v.plaintext, Buffer.from(v.plaintext, 'utf8')]) {
        const blob = encryptWithNonceForTesting(v.alg, ctx.key, plaintext, nonce);
        expect(joinToken(v.alg, ctx.keyid, 'e30=', blob)).toBe(v.wire);
      }
    },
  );

  it('the legacy four-part row re-formats into the five-part form with e30= params', () => {
    const legacy = validVectors.find((v) => v.legacy_four_part)!;
    const field = parseEncryptedField(legacy.wire);
    expect(field.legacy).toBe(true);
    const [, alg, keyId, blob] = legacy.wire.split('$');
    expect(formatEncryptedField(field)).toBe(`$${alg}$${keyId}$e30=$${blob}`);
    expect(decryptString(formatEncryptedField(field), keyContextOf(legacy))).toBe(legacy.plaintext);
  });
});
