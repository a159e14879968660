import { describe, expect, it } from 'vitest';
import {
  DecryptFailedError,
  InvalidArgumentError,
  NonceLimitError,
  UnsupportedAlgorithmError,
} from '../../src/errors.js';
import { Dek } from '../../src/keys/dek.js';
import {
  algorithm,
  decryptAlg,
  encryptAlg,
  encryptWithNonceForTesting,
  GCM_RANDOM_NONCE_LIMIT,
  generateKeyByAlg,
  invocationCount,
  recommendedDataAlg,
  registerAlgorithm,
  setInvocationCountForTesting,
} from '../../src/wire/algorithms.js';
import { encryptString, type KeyContext } from '../../src/wire/fields.js';
import { newKeyId } from '../../src/wire/key-id.js';

describe('algorithm dispatch', () => {
  it('A256GCM is registered and recommended; keys are 32 random bytes', () => {
    expect(recommendedDataAlg()).toBe('A256GCM');
    expect(algorithm('A256GCM').keyLength).toBe(32);
    const a = generateKeyByAlg('A256GCM');
    const b = generateKeyByAlg('A256GCM');
    expect(a).toBeInstanceOf(Dek);
    expect(a.length).toBe(32);
    expect(a.equals(b)).toBe(false);
    expect(String(a)).not.toContain(a.expose().toString('hex'));
  });

  it('encryptAlg / decryptAlg round-trip with and without AAD, and refuse wrong keys or AAD', () => {
    const key = generateKeyByAlg('A256GCM');
    const blob = encryptAlg('A256GCM', key, Buffer.from('data'), {}, Buffer.from('aad'));
    expect(blob).toHaveLength(12 + 4 + 16);
    expect(decryptAlg('A256GCM', key, blob, {}, Buffer.from('aad')).toString()).toBe('data');
    expect(() => decryptAlg('A256GCM', key, blob, {}, Buffer.from('other'))).toThrow(DecryptFailedError);
    expect(() => decryptAlg('A256GCM', key, blob)).toThrow(DecryptFailedError);
    expect(() => decryptAlg('A256GCM', Dek.generate(), blob, {}, Buffer.from('aad'))).toThrow(
      DecryptFailedError,
    );
    expect(decryptAlg('A256GCM', key, encryptAlg('A256GCM', key, Buffer.alloc(0))).length).toBe(0);
    expect(() => decryptAlg('A256GCM', key, blob.subarray(0, 27))).toThrow(DecryptFailedError);
  });

  it('unknown ids are UnsupportedAlgorithmErrors', () => {
    const key = Dek.generate();
    expect(() => generateKeyByAlg('nope')).toThrow(UnsupportedAlgorithmError);
    expect(() => encryptAlg('A128GCM', key, Buffer.from('x'))).toThrow(UnsupportedAlgorithmError);
    expect(() => decryptAlg('', key, Buffer.alloc(28))).toThrow(UnsupportedAlgorithmError);
  });

  it('A256GCM takes no algorithm parameters (as in gemstone_utils)', () => {
    const key = Dek.generate();
    expect(() => encryptAlg('A256GCM', key, Buffer.from('x'), { nonce: 'x' })).toThrow(InvalidArgumentError);
    expect(() => decryptAlg('A256GCM', key, Buffer.alloc(28), { aad: 'ctx-v1' })).toThrow(
      InvalidArgumentError,
    );
    expect(() => encryptAlg('A256GCM', key, Buffer.from('x'), Buffer.from('aad') as never)).toThrow(
      InvalidArgumentError,
    );
  });

  it('keys of the wrong length are InvalidArgumentErrors', () => {
    const short = Dek.generate(16);
    expect(() => encryptAlg('A256GCM', short, Buffer.from('x'))).toThrow(InvalidArgumentError);
    expect(() => decryptAlg('A256GCM', short, Buffer.alloc(40))).toThrow(InvalidArgumentError);
  });

  it('the fixed-nonce seam needs a 12-byte nonce', () => {
    const key = Dek.generate();
    expect(() => encryptWithNonceForTesting('A256GCM', key, Buffer.from('x'), Buffer.alloc(16))).toThrow(
      InvalidArgumentError,
    );
  });

  it('registering checks the id', () => {
    const alg = { ...algorithm('A256GCM') };
    expect(() => registerAlgorithm(alg)).toThrow(UnsupportedAlgorithmError);
    expect(() => registerAlgorithm({ ...alg, id: 'has$dollar' })).toThrow(InvalidArgumentError);
    expect(() => registerAlgorithm({ ...alg, id: '' })).toThrow(InvalidArgumentError);
  });
});

describe('nonce limit (NIST SP 800-38D: 2^32 encryptions per key with random nonces)', () => {
  it('the encryptions up to the limit pass; the one past it is a NonceLimitError', () => {
    const ctx: KeyContext = { keyid: newKeyId(), key: Dek.generate(), alg: 'A256GCM' };
    expect(GCM_RANDOM_NONCE_LIMIT).toBe(4_294_967_296);
    setInvocationCountForTesting(ctx.key, GCM_RANDOM_NONCE_LIMIT - 2);
    encryptString('2^32 - 1', ctx);
    encryptString('2^32', ctx);
    expect(invocationCount(ctx.key)).toBe(GCM_RANDOM_NONCE_LIMIT);
    expect(() => encryptString('2^32 + 1', ctx)).toThrow(NonceLimitError);
    expect(() => encryptAlg('A256GCM', ctx.key, Buffer.from('x'))).toThrow(NonceLimitError);
    expect(invocationCount(ctx.key)).toBe(GCM_RANDOM_NONCE_LIMIT);
  });

  it('counts per key, every encryption path, and not decryptions', () => {
    const key = Dek.generate();
    const ctx: KeyContext = { keyid: newKeyId(), key, alg: 'A256GCM' };
    const token = encryptString('a', ctx);
    encryptString('b', ctx, { context: { t: '1' } });
    encryptAlg('A256GCM', key, Buffer.from('c'));
    encryptWithNonceForTesting('A256GCM', key, Buffer.from('d'), Buffer.alloc(12));
    expect(invocationCount(key)).toBe(4);
    expect(algorithm('A256GCM').decrypt(key, Buffer.from(token.split('$')[4]!, 'base64url'))).toHaveLength(1);
    expect(invocationCount(key)).toBe(4);
    expect(invocationCount(Dek.generate())).toBe(0);
  });

  it('another key is not affected by one at the limit', () => {
    const full = Dek.generate();
    setInvocationCountForTesting(full, GCM_RANDOM_NONCE_LIMIT);
    expect(() => encryptAlg('A256GCM', full, Buffer.from('x'))).toThrow(NonceLimitError);
    expect(() => encryptAlg('A256GCM', Dek.generate(), Buffer.from('x'))).not.toThrow();
  });
});
