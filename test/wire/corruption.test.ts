/**
 * Any corruption of a token gives either exactly the original plaintext or a typed
 * KmsEnvelopeError: never another plaintext, never an untyped throw, never a hang.
 */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { KmsEnvelopeError, UnsupportedAlgorithmError } from '../../src/errors.js';
import { Dek } from '../../src/keys/dek.js';
import {
  decodeBase64UrlPadded,
  encodeBase64UrlPadded,
  isCanonicalBase64UrlPadded,
} from '../../src/wire/base64.js';
import { decryptString, encryptString, type KeyContext } from '../../src/wire/fields.js';
import { formatEncryptedField, isEncryptedValue, parseEncryptedField } from '../../src/wire/format.js';
import { newKeyId } from '../../src/wire/key-id.js';
import { attempt, keyContextOf, validVectors } from './vectors.js';

const ours: KeyContext = { keyid: newKeyId(), key: Dek.generate(), alg: 'A256GCM' };
const bound = { table: 'users', row: '7' };

interface Case {
  readonly name: string;
  readonly token: string;
  readonly ctx: KeyContext;
  readonly plaintext: string;
  readonly context?: typeof bound;
}

const cases: Case[] = [
  ...validVectors.map((v) => ({
    name: `vector ${v.comment} (${v.plaintext.length})`,
    token: v.wire,
    ctx: keyContextOf(v),
    plaintext: v.plaintext,
  })),
  ...['', 'secret', 'naïve ☕ 日本語 😀'].map((p) => ({
    name: `ours ${JSON.stringify(p)}`,
    token: encryptString(p, ours),
    ctx: ours,
    plaintext: p,
  })),
  {
    name: 'ours, bound',
    token: encryptString('bound secret', ours, { context: bound }),
    ctx: ours,
    plaintext: 'bound secret',
    context: bound,
  },
];

/** The result must be the original plaintext or a typed error; returns which. */
function check(c: Case, token: string): 'plaintext' | 'error' {
  const result = attempt(token, c.ctx, c.context === undefined ? undefined : { context: c.context });
  if (typeof result === 'string') {
    expect(result).toBe(c.plaintext);
    return 'plaintext';
  }
  expect(result).toBeInstanceOf(KmsEnvelopeError);
  return 'error';
}

// Legacy tokens warn once; keep the output clean.
beforeAll(() => {
  vi.spyOn(process, 'emitWarning').mockImplementation(() => {});
});
afterAll(() => {
  vi.restoreAllMocks();
});

describe('every truncation and every single-bit flip', () => {
  it.each(cases)('$name', (c) => {
    const bytes = Buffer.from(c.token, 'utf8');
    for (let n = 0; n < bytes.length; n++) {
      expect(check(c, bytes.subarray(0, n).toString('utf8')), `truncated to ${n}`).toBe('error');
    }
    let decrypted = 0;
    for (let i = 0; i < bytes.length; i++) {
      for (let bit = 0; bit < 8; bit++) {
        const flipped = Buffer.from(bytes);
        flipped[i]! ^= 1 << bit;
        if (check(c, flipped.toString('utf8')) === 'plaintext') decrypted++;
      }
    }
    // Only case flips of hex digits in the key id (`a` ↔ `A`) keep a token readable: the id is
    // read case-insensitively and names the same key. Everything else is caught.
    const keyIdHexLetters = (c.token.split('$')[2]!.match(/[a-f]/g) ?? []).length;
    expect(decrypted).toBe(keyIdHexLetters);
  });
});

describe('fast-check: ≥ 100,000 generated and mutated inputs', () => {
  const c = cases[cases.length - 2]!; // ours, non-ASCII plaintext
  const cb = cases[cases.length - 1]!; // ours, bound
  const segments = c.token.split('$');

  it('arbitrary strings (30,000) and full-Unicode strings (20,000) are typed errors', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 300 }), (s) => {
        expect(check(c, s)).toBe('error');
      }),
      { numRuns: 30_000 },
    );
    fc.assert(
      fc.property(fc.string({ maxLength: 120, unit: 'binary' }), (s) => {
        expect(check(c, s)).toBe('error');
        expect(check(c, `$A256GCM$${c.ctx.keyid}$${s}`)).toBe('error');
      }),
      { numRuns: 20_000 },
    );
  });

  it('mutated tokens (30,000): inserts, deletes, replacements, anywhere', () => {
    const mutation = fc.record({
      at: fc.nat(c.token.length),
      drop: fc.nat(4),
      insert: fc.oneof(
        fc.string({ maxLength: 4 }),
        fc.constantFrom('$', '=', '-', '_', '+', '/', 'A', 'e30='),
      ),
      which: fc.constantFrom(c, cb),
    });
    fc.assert(
      fc.property(mutation, ({ at, drop, insert, which }) => {
        const t = which.token;
        const p = Math.min(at, t.length);
        const mutated = t.slice(0, p) + insert + t.slice(p + drop);
        const outcome = check(which, mutated);
        if (outcome === 'plaintext' && mutated !== t) {
          // Only an equivalent key id spelling may survive: same segments otherwise.
          const [, a, , params, blob] = mutated.split('$');
          const [, a0, , params0, blob0] = t.split('$');
          expect([a, params, blob]).toEqual([a0, params0, blob0]);
        }
      }),
      { numRuns: 30_000 },
    );
  });

  it('tokens built from random segments (20,000) are typed errors, and an accepted one re-formats to itself', () => {
    const b64 = (max: number) => fc.uint8Array({ maxLength: max }).map((b) => encodeBase64UrlPadded(b));
    const segment = fc.oneof(
      b64(60),
      fc.string({ maxLength: 12 }),
      fc.constantFrom(
        'e30=',
        'e31=',
        'e30',
        '',
        segments[2]!,
        segments[2]!.toUpperCase(),
        `{${segments[2]}}`,
        '42',
      ),
      fc.json({ maxDepth: 1 }).map((j) => encodeBase64UrlPadded(Buffer.from(j))),
    );
    const token = fc
      .tuple(fc.constantFrom('A256GCM', 'A128GCM', 'a256gcm', ''), segment, segment, segment, fc.boolean())
      .map(([alg, key, params, blob, legacy]) =>
        legacy ? `$${alg}$${key}$${blob}` : `$${alg}$${key}$${params}$${blob}`,
      );
    fc.assert(
      fc.property(token, (t) => {
        expect(check(c, t)).toBe('error');
        let field: ReturnType<typeof parseEncryptedField> | undefined;
        try {
          field = parseEncryptedField(t);
        } catch (err) {
          expect(err).toBeInstanceOf(KmsEnvelopeError);
          return;
        }
        if (field.alg !== 'A256GCM') {
          expect(() => formatEncryptedField(field)).toThrow(UnsupportedAlgorithmError);
          return;
        }
        // One spelling per token: what parses re-formats to the same string, up to key id case/shape.
        const again = formatEncryptedField(field);
        expect(parseEncryptedField(again)).toEqual({ ...field, legacy: false });
        if (!field.legacy && t.split('$')[2] === field.keyId) expect(again).toBe(t);
        expect(isEncryptedValue(t)).toBe(field.alg === 'A256GCM');
      }),
      { numRuns: 20_000 },
    );
  });

  it('any plaintext round-trips (5,000), bound or not; lone surrogates are refused', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 200, unit: 'binary' }), fc.boolean(), (s, withContext) => {
        const options = withContext ? { context: { s } } : undefined;
        const wellFormed = Buffer.from(s, 'utf8').toString('utf8') === s;
        if (!wellFormed) {
          expect(() => encryptString(s, ours, options)).toThrow(KmsEnvelopeError);
          return;
        }
        const token = encryptString(s, ours, options);
        expect(decryptString(token, ours, options)).toBe(s);
        expect(Buffer.from(token.split('$')[4]!, 'base64url')).toHaveLength(12 + Buffer.byteLength(s) + 16);
      }),
      { numRuns: 5_000 },
    );
  });

  it('the strict base64 decoder accepts exactly what re-encodes to itself (10,000)', () => {
    const alphabet = fc.constantFrom(
      ...'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=+/ '.split(''),
    );
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string({ unit: alphabet, maxLength: 16 }),
          fc.string({ maxLength: 16 }),
          fc.string({ unit: 'binary', maxLength: 16 }),
          // Canonical text with one character swapped for any UTF-16 unit (Node reads U+FF45 as `E`).
          fc
            .tuple(fc.uint8Array({ maxLength: 12 }), fc.nat(), fc.integer({ min: 0, max: 0xffff }))
            .map(([bytes, at, unit]) => {
              const text = encodeBase64UrlPadded(bytes);
              const i = text.length === 0 ? 0 : at % text.length;
              return text.slice(0, i) + String.fromCharCode(unit) + text.slice(i + 1);
            }),
        ),
        (s) => {
          const reference = Buffer.from(s, 'base64url');
          const canonical = encodeBase64UrlPadded(reference) === s;
          let decoded: Buffer | undefined;
          try {
            decoded = decodeBase64UrlPadded(s, 'x');
          } catch (err) {
            expect(err).toBeInstanceOf(KmsEnvelopeError);
          }
          expect(decoded !== undefined).toBe(canonical);
          expect(isCanonicalBase64UrlPadded(s)).toBe(canonical);
          if (decoded !== undefined) expect(decoded.equals(reference)).toBe(true);
        },
      ),
      { numRuns: 10_000 },
    );
  });
});
