import { describe, expect, it } from 'vitest';
import {
  ContextBindingError,
  DecryptFailedError,
  InvalidArgumentError,
  MalformedTokenError,
  UnknownKeyError,
} from '../../src/errors.js';
import { Dek } from '../../src/keys/dek.js';
import { Kek } from '../../src/keys/kek.js';
import { encryptWithNonceForTesting } from '../../src/wire/algorithms.js';
import {
  type BindingContext,
  CONTEXT_BINDING_PARAM,
  CONTEXT_BINDING_V1,
  decryptString,
  encryptString,
  type KeyContext,
} from '../../src/wire/fields.js';
import { joinToken, parseEncryptedField } from '../../src/wire/format.js';
import { type DekId, newKeyId } from '../../src/wire/key-id.js';
import { encodeParams } from '../../src/wire/params.js';
import { attempt, keyContextOf, validVectors } from './vectors.js';

describe('context binding (opt-in AAD)', () => {
  const ctx: KeyContext = { keyid: newKeyId(), key: Dek.generate(), alg: 'A256GCM' };
  const row = { table: 'users', column: 'email', row: '42' };

  it('is off by default: params e30=, as gemstone_utils writes', () => {
    expect(encryptString('v', ctx).split('$')[3]).toBe('e30=');
  });

  it('is visible in the token as {"aad":"ctx-v1"} and required on read, in any key order', () => {
    const token = encryptString('alice@example.com', ctx, { context: row });
    expect(CONTEXT_BINDING_PARAM).toBe('aad');
    expect(token.split('$')[3]).toBe(encodeParams({ aad: CONTEXT_BINDING_V1 }));
    expect(token.split('$')[3]).toBe('eyJhYWQiOiJjdHgtdjEifQ==');
    expect(parseEncryptedField(token).params).toEqual({ aad: 'ctx-v1' });
    expect(decryptString(token, ctx, { context: { row: '42', column: 'email', table: 'users' } })).toBe(
      'alice@example.com',
    );
  });

  it('the AAD bytes are the UTF-8 of the context as sorted compact JSON', () => {
    // Encrypt by hand with the documented AAD and the token's nonce: the same token must come out.
    const token = encryptString('v', ctx, { context: { tenant: 'acme', row: 'é' } });
    const field = parseEncryptedField(token);
    const aad = Buffer.from('{"row":"\\u00e9","tenant":"acme"}', 'utf8');
    const blob = encryptWithNonceForTesting(
      'A256GCM',
      ctx.key,
      Buffer.from('v'),
      field.blob.subarray(0, 12),
      aad,
    );
    expect(joinToken('A256GCM', ctx.keyid, 'eyJhYWQiOiJjdHgtdjEifQ==', blob)).toBe(token);
  });

  it('a bound token without a context is a ContextBindingError; with another context a DecryptFailedError', () => {
    const token = encryptString('secret', ctx, { context: row });
    expect(() => decryptString(token, ctx)).toThrow(ContextBindingError);
    expect(() => decryptString(token, ctx, {})).toThrow(ContextBindingError);
    const others: BindingContext[] = [
      { ...row, row: '43' },
      { table: 'users', column: 'email' },
      { ...row, extra: '' },
      {},
    ];
    for (const other of others) {
      expect(() => decryptString(token, ctx, { context: other })).toThrow(DecryptFailedError);
    }
  });

  it('an unbound token with a context is a ContextBindingError (a reader never guesses)', () => {
    const token = encryptString('v', ctx);
    expect(() => decryptString(token, ctx, { context: row })).toThrow(ContextBindingError);
    expect(() => decryptString(token, ctx, { context: {} })).toThrow(ContextBindingError);
    const v = validVectors[1]!;
    expect(attempt(v.wire, keyContextOf(v), { context: row })).toBeInstanceOf(ContextBindingError);
  });

  it('an unknown binding version or other params are MalformedTokenErrors', () => {
    const token = encryptString('v', ctx);
    const [, alg, id, , blob] = token.split('$');
    for (const params of [{ aad: 'ctx-v2' }, { aad: 1 }, { nonce: 'x' }, { aad: 'ctx-v1', x: 1 }]) {
      const forged = `$${alg}$${id}$${encodeParams(params)}$${blob}`;
      expect(attempt(forged, ctx, { context: row }), JSON.stringify(params)).toBeInstanceOf(
        MalformedTokenError,
      );
    }
  });

  it('stripping the binding from a bound token does not decrypt', () => {
    const token = encryptString('v', ctx, { context: row });
    expect(attempt(token.replace('$eyJhYWQiOiJjdHgtdjEifQ==$', '$e30=$'), ctx)).toBeInstanceOf(
      DecryptFailedError,
    );
  });

  it('binding contexts must be objects of strings', () => {
    for (const bad of [null, 'row', ['a'], { row: 42 }, { row: undefined }]) {
      expect(() => encryptString('v', ctx, { context: bad as never })).toThrow(InvalidArgumentError);
    }
  });
});

describe('key contexts', () => {
  const ctx: KeyContext = { keyid: newKeyId(), key: Dek.generate(), alg: 'A256GCM' };
  const token = encryptString('v', ctx);

  it('a key context for another DEK id is a DecryptFailedError naming the key id', () => {
    const other = newKeyId();
    const err = attempt(token, { ...ctx, keyid: other });
    expect(err).toBeInstanceOf(DecryptFailedError);
    expect((err as Error).message).toContain(ctx.keyid);
    expect((err as Error).message).toContain(other);
  });

  it('the right id but the wrong key is a DecryptFailedError naming the key id, and nothing of the key', () => {
    const wrong = Dek.generate();
    const err = attempt(token, { ...ctx, key: wrong });
    expect(err).toBeInstanceOf(DecryptFailedError);
    expect((err as Error).message).toContain(ctx.keyid);
    for (const k of [wrong, ctx.key]) {
      const bytes = k.expose();
      for (const enc of ['hex', 'base64', 'base64url'] as const) {
        expect((err as Error).message).not.toContain(bytes.toString(enc));
      }
    }
  });

  it('a key context of another algorithm is a DecryptFailedError', () => {
    expect(attempt(token, { ...ctx, alg: 'A128GCM' })).toBeInstanceOf(DecryptFailedError);
  });

  it('a key context spelled non-canonically still matches', () => {
    expect(decryptString(token, { ...ctx, keyid: ctx.keyid.toUpperCase() as DekId })).toBe('v');
  });

  it('malformed key contexts are InvalidArgumentErrors, not TypeErrors', () => {
    for (const bad of [
      null,
      { keyid: ctx.keyid, alg: 'A256GCM' },
      { ...ctx, key: ctx.key.expose() },
      { ...ctx, key: Kek.generate() },
    ]) {
      expect(() => encryptString('v', bad as never)).toThrow(InvalidArgumentError);
      expect(() => decryptString(token, bad as never)).toThrow(InvalidArgumentError);
    }
    expect(() => encryptString('v', { ...ctx, key: Dek.generate(16) })).toThrow(InvalidArgumentError);
    expect(() => encryptString(42 as never, ctx)).toThrow(InvalidArgumentError);
  });

  it('a zeroed key is refused with an InvalidArgumentError', () => {
    const key = Dek.generate();
    const zeroed: KeyContext = { ...ctx, key };
    const t = encryptString('v', zeroed);
    key.zero();
    expect(() => encryptString('v', zeroed)).toThrow(InvalidArgumentError);
    expect(() => decryptString(t, zeroed)).toThrow(InvalidArgumentError);
  });

  it('a decrypted value that is not UTF-8 is a MalformedTokenError', () => {
    const blob = encryptWithNonceForTesting(
      'A256GCM',
      ctx.key,
      Buffer.from([0xff, 0xfe]),
      Buffer.alloc(12, 7),
    );
    expect(attempt(joinToken('A256GCM', ctx.keyid, 'e30=', blob), ctx)).toBeInstanceOf(MalformedTokenError);
  });
});

describe('resolvers', () => {
  const contexts = new Map<DekId, KeyContext>();
  for (let i = 0; i < 3; i++) {
    const keyid = newKeyId();
    contexts.set(keyid, { keyid, key: Dek.generate(), alg: 'A256GCM' });
  }
  const resolve = (id: DekId): KeyContext => {
    const found = contexts.get(id);
    if (found === undefined) throw new UnknownKeyError(id, `no DEK ${id}`);
    return found;
  };

  it('find the key context by the token key id, sync or async', async () => {
    for (const ctx of contexts.values()) {
      const token = encryptString(`under ${ctx.keyid}`, ctx);
      await expect(decryptString(token, resolve)).resolves.toBe(`under ${ctx.keyid}`);
      await expect(decryptString(token, async (id) => resolve(id))).resolves.toBe(`under ${ctx.keyid}`);
    }
  });

  it('report every failure as a rejection, never a synchronous throw', async () => {
    const stranger: KeyContext = { keyid: newKeyId(), key: Dek.generate(), alg: 'A256GCM' };
    const unknown = decryptString(encryptString('v', stranger), resolve);
    await expect(unknown).rejects.toBeInstanceOf(UnknownKeyError);
    await expect(decryptString('garbage', resolve)).rejects.toBeInstanceOf(MalformedTokenError);
    const ctx = [...contexts.values()][0]!;
    const wrongCtx = () => ({ ...ctx, keyid: newKeyId() });
    await expect(decryptString(encryptString('v', ctx), wrongCtx)).rejects.toBeInstanceOf(DecryptFailedError);
  });
});
