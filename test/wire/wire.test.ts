import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it, vi } from 'vitest';
import {
  ContextBindingError,
  DecryptFailedError,
  InvalidKeyIdError,
  KmsEnvelopeError,
  MalformedTokenError,
  NonceLimitError,
  UnknownKeyError,
  UnsupportedAlgorithmError,
} from '../../src/errors.js';
import { Dek } from '../../src/keys/dek.js';
import {
  algorithm,
  decryptAlg,
  encryptAlg,
  GCM_RANDOM_NONCE_LIMIT,
  generateKeyByAlg,
  recommendedDataAlg,
  setInvocationCountForTesting,
} from '../../src/wire/algorithms.js';
import { decryptString, encryptString, type KeyContext } from '../../src/wire/fields.js';
import {
  formatEncryptedField,
  isEncryptedValue,
  parseEncryptedField,
  resetLegacyWarningForTesting,
} from '../../src/wire/format.js';
import { newKeyId, parseDekId, parseKekSlotId } from '../../src/wire/key-id.js';
import { canonicalJson, encodeParams } from '../../src/wire/params.js';

interface Vector {
  alg: string;
  keyid: string;
  key_b64url: string;
  plaintext: string;
  wire: string;
  valid: boolean;
  comment: string;
}
const file = JSON.parse(
  readFileSync(join(import.meta.dirname, '../vectors/gemstone-v0.5-wire.json'), 'utf8'),
) as {
  source: string;
  vectors: Vector[];
};

function contextOf(v: Vector): KeyContext {
  return {
    keyid: parseDekId(v.keyid),
    key: Dek.fromBytes(Buffer.from(v.key_b64url, 'base64url')),
    alg: v.alg,
  };
}

/** Decrypts and classifies: the plaintext, or the typed error's class; anything else fails. */
function attempt(token: string, ctx: KeyContext): string | KmsEnvelopeError {
  try {
    return decryptString(token, ctx);
  } catch (err) {
    if (err instanceof KmsEnvelopeError) return err;
    throw new Error(`decrypt threw ${(err as Error)?.constructor?.name}: ${(err as Error)?.message}`);
  }
}

describe('gemstone_utils v0.5 vectors (test/vectors/gemstone-v0.5-wire.json)', () => {
  it('come from the Python library', () => {
    expect(file.source).toMatch(/gemstone_utils v0\.5/);
    expect(file.vectors.length).toBeGreaterThanOrEqual(9);
  });

  it.each(file.vectors.filter((v) => v.valid))('valid: $comment ($plaintext.length chars)', (v) => {
    expect(decryptString(v.wire, contextOf(v))).toBe(v.plaintext);
  });

  it.each(file.vectors.filter((v) => !v.valid))('invalid: $comment → typed error', (v) => {
    const result = attempt(v.wire, contextOf(v));
    expect(result).toBeInstanceOf(DecryptFailedError);
  });

  it.each(file.vectors.filter((v) => v.valid && v.wire.split('$').length === 5))(
    'our encoder reproduces the token byte for byte from its nonce ($plaintext.length chars)',
    (v) => {
      const field = parseEncryptedField(v.wire);
      const nonce = field.blob.subarray(0, 12);
      const ctx = contextOf(v);
      const blob = algorithm(v.alg).encrypt(ctx.key, Buffer.from(v.plaintext, 'utf8'), undefined, nonce);
      expect(formatEncryptedField({ alg: v.alg, keyId: ctx.keyid, blob })).toBe(v.wire);
      expect(formatEncryptedField(field)).toBe(v.wire);
    },
  );
});

describe('wire format, exact bytes', () => {
  const ctx: KeyContext = { keyid: newKeyId(), key: generateKeyByAlg('A256GCM'), alg: recommendedDataAlg() };

  it('writes $A256GCM$<canonical uuid>$e30=$<urlsafe base64 with padding>', () => {
    for (const plaintext of [
      '',
      'a',
      'ab',
      'abc',
      'hello world',
      'naïve ☕',
      '\ufeffleading BOM kept',
      'x'.repeat(1000),
    ]) {
      const token = encryptString(plaintext, ctx);
      const parts = token.split('$');
      expect(parts).toHaveLength(5);
      expect(parts[0]).toBe('');
      expect(parts[1]).toBe('A256GCM');
      expect(parts[2]).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
      expect(parts[3]).toBe('e30=');
      expect(parts[4]).toMatch(/^[A-Za-z0-9_-]*={0,2}$/);
      expect(parts[4]!.length % 4).toBe(0);
      expect(Buffer.from(parts[4]!, 'base64url')).toHaveLength(12 + Buffer.byteLength(plaintext) + 16);
      expect(decryptString(token, ctx)).toBe(plaintext);
    }
  });

  it('params are sorted compact JSON with Python-style ASCII escapes', () => {
    expect(encodeParams({})).toBe('e30=');
    expect(canonicalJson({ b: 1, a: { d: 'é', c: [1, 'x'] } })).toBe(
      '{"a":{"c":[1,"x"],"d":"\\u00e9"},"b":1}',
    );
    expect(Buffer.from(encodeParams({ aad: 'ctx-v1' }), 'base64url').toString()).toBe('{"aad":"ctx-v1"}');
    expect(encodeParams({ aad: 'ctx-v1' })).toBe('eyJhYWQiOiJjdHgtdjEifQ==');
  });

  it('key ids: UUID spellings are accepted and written canonical; integers get a migration hint', () => {
    const id = '01a20849-b253-7265-8831-44e0eb8ffa6c';
    for (const spelling of [id.toUpperCase(), `{${id}}`, `urn:uuid:${id}`, id.replace(/-/g, '')]) {
      expect(parseDekId(spelling)).toBe(id);
    }
    expect(() => parseDekId('42')).toThrow(/integer key ids are no longer supported; migrate/);
    expect(() => parseDekId('not-a-uuid')).toThrow(InvalidKeyIdError);
    expect(parseKekSlotId(id)).toBe(id);
    expect(newKeyId()).not.toBe(newKeyId());
    // A token written with an upper-case id still decrypts; we write lower case.
    const token = encryptString('v', ctx).replace(ctx.keyid, ctx.keyid.toUpperCase());
    expect(decryptString(token, ctx)).toBe('v');
    expect(attempt(`$A256GCM$42$e30=$${'A'.repeat(40)}`, ctx)).toBeInstanceOf(InvalidKeyIdError);
  });

  it('the legacy four-part form is read with one deprecation warning per process', () => {
    resetLegacyWarningForTesting();
    const spy = vi.spyOn(process, 'emitWarning').mockImplementation(() => {});
    const legacy = file.vectors.find((v) => v.wire.split('$').length === 4)!;
    expect(decryptString(legacy.wire, contextOf(legacy))).toBe(legacy.plaintext);
    expect(decryptString(legacy.wire, contextOf(legacy))).toBe(legacy.plaintext);
    expect(spy).toHaveBeenCalledTimes(1);
    expect(spy.mock.calls[0]![1]).toMatchObject({
      type: 'DeprecationWarning',
      code: 'KMS_ENVELOPE_LEGACY_WIRE',
    });
    spy.mockRestore();
  });

  it('typed errors for unknown algorithms, other keys, malformed tokens', () => {
    const token = encryptString('v', ctx);
    expect(attempt(token.replace('$A256GCM$', '$A128GCM$'), ctx)).toBeInstanceOf(UnsupportedAlgorithmError);
    expect(() => generateKeyByAlg('nope')).toThrow(UnsupportedAlgorithmError);
    const other: KeyContext = { ...ctx, keyid: newKeyId() };
    const err = attempt(token, other);
    expect(err).toBeInstanceOf(UnknownKeyError);
    expect((err as UnknownKeyError).keyId).toBe(ctx.keyid);
    expect(attempt(token, { ...ctx, key: Dek.generate() })).toBeInstanceOf(DecryptFailedError);
    for (const bad of [
      '',
      '$',
      'plain text',
      '$A256GCM$',
      `${token}$x`,
      token.replace('e30=', 'e30'),
      token.slice(0, 40),
    ]) {
      expect(attempt(bad, ctx)).toBeInstanceOf(KmsEnvelopeError);
    }
    expect(attempt(token.replace('e30=', 'e30+'), ctx)).toBeInstanceOf(MalformedTokenError);
  });

  it('isEncryptedValue tells tokens from plaintext', () => {
    expect(isEncryptedValue(encryptString('v', ctx))).toBe(true);
    expect(isEncryptedValue(file.vectors[0]!.wire)).toBe(true);
    for (const v of ['', 'hello', '$', '$$$$', 'v2:abc', 42, null]) expect(isEncryptedValue(v)).toBe(false);
  });

  it('algorithm dispatch round-trips and refuses a wrong key', () => {
    const key = generateKeyByAlg('A256GCM');
    const blob = encryptAlg('A256GCM', key, Buffer.from('data'), Buffer.from('aad'));
    expect(decryptAlg('A256GCM', key, blob, Buffer.from('aad')).toString()).toBe('data');
    expect(() => decryptAlg('A256GCM', key, blob, Buffer.from('other'))).toThrow(DecryptFailedError);
  });
});

describe('context binding (opt-in AAD)', () => {
  const ctx: KeyContext = { keyid: newKeyId(), key: Dek.generate(), alg: 'A256GCM' };
  const row = { table: 'users', column: 'email', row: '42' };

  it('is visible in the token and required on read', () => {
    const token = encryptString('alice@example.com', ctx, { context: row });
    expect(token.split('$')[3]).toBe(encodeParams({ aad: 'ctx-v1' }));
    expect(decryptString(token, ctx, { context: { row: '42', column: 'email', table: 'users' } })).toBe(
      'alice@example.com',
    );
    expect(() => decryptString(token, ctx)).toThrow(ContextBindingError);
    expect(() => decryptString(token, ctx, { context: { ...row, row: '43' } })).toThrow(DecryptFailedError);
  });

  it('an unbound token refuses a context, and default tokens stay unbound', () => {
    const token = encryptString('v', ctx);
    expect(token.split('$')[3]).toBe('e30=');
    expect(() => decryptString(token, ctx, { context: row })).toThrow(ContextBindingError);
  });
});

describe('nonce limit (NIST SP 800-38D, random nonces)', () => {
  it('refuses the 2^32+1-th encryption under one key with NonceLimitError', () => {
    const ctx: KeyContext = { keyid: newKeyId(), key: Dek.generate(), alg: 'A256GCM' };
    setInvocationCountForTesting(ctx.key, GCM_RANDOM_NONCE_LIMIT - 2);
    encryptString('1', ctx);
    encryptString('2', ctx);
    expect(() => encryptString('3', ctx)).toThrow(NonceLimitError);
    // Another key is not affected.
    expect(() => encryptString('x', { ...ctx, key: Dek.generate() })).not.toThrow();
  });
});

describe('corruption never gives anything but the plaintext or a typed error', () => {
  const ours: KeyContext = { keyid: newKeyId(), key: Dek.generate(), alg: 'A256GCM' };
  const tokens: [string, KeyContext, string][] = [
    ...file.vectors
      .filter((v) => v.valid)
      .map((v): [string, KeyContext, string] => [v.wire, contextOf(v), v.plaintext]),
    ...['', 'secret', 'naïve ☕ 日本語'].map((p): [string, KeyContext, string] => [
      encryptString(p, ours),
      ours,
      p,
    ]),
  ];

  it('every truncation and every single-bit flip of every valid token', () => {
    const spy = vi.spyOn(process, 'emitWarning').mockImplementation(() => {});
    for (const [token, ctx, plaintext] of tokens) {
      const bytes = Buffer.from(token, 'utf8');
      for (let n = 0; n < bytes.length; n++) {
        const result = attempt(bytes.subarray(0, n).toString('utf8'), ctx);
        if (typeof result === 'string') expect(result).toBe(plaintext);
      }
      for (let i = 0; i < Math.min(bytes.length, 400); i++) {
        for (let bit = 0; bit < 8; bit++) {
          const flipped = Buffer.from(bytes);
          flipped[i]! ^= 1 << bit;
          const result = attempt(flipped.toString('utf8'), ctx);
          if (typeof result === 'string') expect(result).toBe(plaintext);
        }
      }
    }
    spy.mockRestore();
  });

  it('≥ 100,000 fast-check strings and mutated tokens', () => {
    const spy = vi.spyOn(process, 'emitWarning').mockImplementation(() => {});
    const [token, ctx, plaintext] = tokens[tokens.length - 1]!;
    fc.assert(
      fc.property(fc.string({ maxLength: 200 }), (s) => {
        const result = attempt(s, ctx);
        if (typeof result === 'string') expect(result).toBe(plaintext);
      }),
      { numRuns: 40_000 },
    );
    fc.assert(
      fc.property(fc.string({ maxLength: 100, unit: 'binary' }), (s) => {
        expect(typeof attempt(`$A256GCM$${ctx.keyid}$${s}`, ctx)).not.toBe('string');
      }),
      { numRuns: 20_000 },
    );
    fc.assert(
      fc.property(fc.nat(token.length), fc.string({ maxLength: 6 }), fc.nat(3), (at, insert, drop) => {
        const mutated = token.slice(0, at) + insert + token.slice(at + drop);
        const result = attempt(mutated, ctx);
        if (typeof result === 'string') expect(result).toBe(plaintext);
      }),
      { numRuns: 40_000 },
    );
    spy.mockRestore();
  });
});
