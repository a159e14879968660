import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { NonceLimitError } from '../../src/errors.js';
import { Dek } from '../../src/keys/dek.js';
import { Kek } from '../../src/keys/kek.js';
import { encryptAlg } from '../../src/wire/algorithms.js';
import { encryptString, type KeyContext } from '../../src/wire/fields.js';
import { newKeyId } from '../../src/wire/key-id.js';
import {
  GCM_RANDOM_NONCE_LIMIT,
  invocationCount,
  setInvocationCountForTesting,
} from '../../src/wire/nonce-limit.js';

describe('the 2^32 random-nonce limit counts per key bytes, across every key object in the process', () => {
  it('two separate objects made from the same key bytes share one count', () => {
    const bytes = randomBytes(32);
    const a = Dek.fromBytes(bytes);
    const b = Dek.fromBytes(bytes);
    const ctxA: KeyContext = { keyid: newKeyId(), key: a, alg: 'A256GCM' };
    const ctxB: KeyContext = { keyid: newKeyId(), key: b, alg: 'A256GCM' };
    encryptString('1', ctxA);
    encryptString('2', ctxB);
    encryptAlg('A256GCM', b, Buffer.from('3'));
    expect(invocationCount(a)).toBe(3);
    expect(invocationCount(b)).toBe(3);
    // A third object, made later from the same bytes, sees the same count at once.
    expect(invocationCount(Dek.fromBytes(bytes))).toBe(3);
    expect(invocationCount(Dek.generate())).toBe(0);
  });

  it('at the limit through one object, every other object with the same bytes is refused too', () => {
    const bytes = randomBytes(32);
    const first = Dek.fromBytes(bytes);
    setInvocationCountForTesting(first, GCM_RANDOM_NONCE_LIMIT - 1);
    const second = Dek.fromBytes(bytes);
    encryptAlg('A256GCM', second, Buffer.from('the last one'));
    expect(() => encryptAlg('A256GCM', first, Buffer.from('x'))).toThrow(NonceLimitError);
    expect(() => encryptAlg('A256GCM', Dek.fromBytes(bytes), Buffer.from('x'))).toThrow(NonceLimitError);
    // The same bytes as a KEK are the same AES key: the same nonce space.
    expect(() => encryptAlg('A256GCM', Kek.fromBytes(bytes), Buffer.from('x'))).toThrow(NonceLimitError);
    expect(() => encryptAlg('A256GCM', Dek.generate(), Buffer.from('x'))).not.toThrow();
  });

  it('a zeroed key object keeps reporting its count; a copy made before zeroing keeps counting', () => {
    const bytes = randomBytes(32);
    const a = Dek.fromBytes(bytes);
    const b = Dek.fromBytes(bytes);
    encryptAlg('A256GCM', a, Buffer.from('x'));
    a.zero();
    encryptAlg('A256GCM', b, Buffer.from('y'));
    expect(invocationCount(a)).toBe(2);
    expect(invocationCount(b)).toBe(2);
    const never = Dek.generate();
    never.zero();
    expect(invocationCount(never)).toBe(0);
  });

  it('keeps a bounded number of counts of keys no object holds, the highest ones (child process with --expose-gc)', () => {
    const script = `
      import { Dek } from './src/keys/dek.ts';
      import { encryptAlg } from './src/wire/algorithms.ts';
      import { keyCountsKeptForTesting, invocationCount, setInvocationCountForTesting, setMaxRetiredKeyCountsForTesting } from './src/wire/nonce-limit.ts';
      const max = 1000;
      setMaxRetiredKeyCountsForTesting(max);
      const kept = Buffer.alloc(32, 7);
      setInvocationCountForTesting(Dek.fromBytes(kept), 1000);
      const held = Dek.generate();
      encryptAlg('A256GCM', held, Buffer.from('held by a live object'));
      for (let round = 0; round < 5; round++) {
        for (let i = 0; i < max; i++) encryptAlg('A256GCM', Dek.generate(), Buffer.from('x'));
        for (let j = 0; j < 3; j++) { globalThis.gc(); await new Promise((r) => setTimeout(r, 10)); }
      }
      console.log(JSON.stringify({ size: keyCountsKeptForTesting(), max, kept: invocationCount(Dek.fromBytes(kept)), held: invocationCount(held) }));
    `;
    const out = execFileSync(
      process.execPath,
      ['--expose-gc', '--import', 'tsx', '--input-type=module', '-e', script],
      { cwd: process.cwd(), encoding: 'utf8' },
    );
    const { size, max, kept, held } = JSON.parse(out.trim().split('\n').pop()!) as {
      size: number;
      max: number;
      kept: number;
      held: number;
    };
    // 5000 keys came and went; at most max retired counts (plus the held ones) stay.
    expect(size).toBeLessThanOrEqual(max + 2);
    expect(size).toBeGreaterThan(max / 4);
    expect(held).toBe(1);
    // The highest count survived the drops; the 1-encryption keys went first.
    expect(kept).toBe(1000);
  });
});
