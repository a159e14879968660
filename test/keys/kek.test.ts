import { inspect } from 'node:util';
import { describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '../../src/errors.js';
import { Kek } from '../../src/keys/kek.js';
import { withKey } from '../../src/keys/secret-key.js';

describe('Kek', () => {
  it('holds exactly 32 bytes, copied from the input', () => {
    const bytes = Buffer.alloc(32, 7);
    const kek = Kek.fromBytes(bytes);
    bytes.fill(0);
    expect(kek.expose()).toEqual(Buffer.alloc(32, 7));
    expect(kek.length).toBe(32);
  });

  it.each([0, 16, 31, 33, 64])('rejects %i bytes without echoing them', (n) => {
    const bytes = Buffer.alloc(n, 0xab);
    expect(() => Kek.fromBytes(bytes)).toThrow(InvalidArgumentError);
    try {
      Kek.fromBytes(bytes);
    } catch (err) {
      expect((err as Error).message).not.toMatch(/abab/);
    }
  });

  it('is redacted in toString, template strings, JSON and util.inspect', () => {
    const kek = Kek.fromBytes(Buffer.alloc(32, 0x41));
    for (const shown of [
      String(kek),
      `${kek}`,
      JSON.stringify({ kek }),
      inspect(kek),
      inspect({ kek }, { showHidden: true, depth: 9 }),
    ]) {
      expect(shown).toMatch(/redacted/);
      expect(shown).not.toContain('AAAA');
      expect(shown).not.toContain('4141');
    }
  });

  it('generates distinct random keys', () => {
    expect(Kek.generate().equals(Kek.generate())).toBe(false);
  });

  it('compares equal keys equal, different keys and zeroed keys unequal', () => {
    const a = Kek.fromBytes(Buffer.alloc(32, 1));
    const b = Kek.fromBytes(Buffer.alloc(32, 1));
    const c = Kek.fromBytes(Buffer.alloc(32, 2));
    expect(a.equals(b)).toBe(true);
    expect(a.equals(c)).toBe(false);
    b.zero();
    expect(a.equals(b)).toBe(false);
  });

  it('zero() wipes the bytes in place and makes the key unusable', () => {
    const kek = Kek.fromBytes(Buffer.alloc(32, 9));
    const view = kek.expose();
    kek.zero();
    expect(view).toEqual(Buffer.alloc(32, 0));
    expect(kek.isZeroed).toBe(true);
    expect(() => kek.expose()).toThrow(InvalidArgumentError);
  });

  it('withKey zeroes the key after the callback, also when it throws', async () => {
    const kek = Kek.generate();
    await expect(withKey(kek, (k) => k.expose().length)).resolves.toBe(32);
    expect(kek.isZeroed).toBe(true);
    const other = Kek.generate();
    await expect(
      withKey(other, () => {
        throw new Error('boom');
      }),
    ).rejects.toThrow('boom');
    expect(other.isZeroed).toBe(true);
  });
});
