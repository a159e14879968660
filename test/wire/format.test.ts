import { describe, expect, it, vi } from 'vitest';
import {
  InvalidArgumentError,
  InvalidKeyIdError,
  MalformedTokenError,
  UnsupportedAlgorithmError,
} from '../../src/errors.js';
import { Dek } from '../../src/keys/dek.js';
import { generateKeyByAlg, recommendedDataAlg } from '../../src/wire/algorithms.js';
import {
  decodeBase64UrlPadded,
  encodeBase64UrlPadded,
  isCanonicalBase64UrlPadded,
} from '../../src/wire/base64.js';
import { decryptString, encryptString, type KeyContext } from '../../src/wire/fields.js';
import {
  formatEncryptedField,
  isEncryptedValue,
  parseEncryptedField,
  resetLegacyWarningForTesting,
} from '../../src/wire/format.js';
import {
  type DekId,
  type KekSlotId,
  newKekSlotId,
  newKeyId,
  parseDekId,
  parseKekSlotId,
} from '../../src/wire/key-id.js';
import { canonicalJson, decodeParams, encodeParams } from '../../src/wire/params.js';
import { attempt, keyContextOf, validVectors } from './vectors.js';

const URLSAFE_PADDED = /^(?:[A-Za-z0-9_-]{4})*(?:[A-Za-z0-9_-]{2}==|[A-Za-z0-9_-]{3}=)?$/;
const UUID_V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

describe('our tokens, exact bytes', () => {
  const ctx: KeyContext = { keyid: newKeyId(), key: generateKeyByAlg('A256GCM'), alg: recommendedDataAlg() };

  it.each([
    '',
    'a',
    'ab',
    'abc',
    'hello world',
    'naïve café ☕ — 日本語 😀',
    '\ufeffleading BOM kept',
    '$A256GCM$ inside the plaintext',
    'x'.repeat(1000),
  ])('$A256GCM$<canonical uuidv7>$e30=$<url-safe padded blob of 12+n+16 bytes> for %j', (plaintext) => {
    const token = encryptString(plaintext, ctx);
    const parts = token.split('$');
    expect(parts).toHaveLength(5);
    expect(parts[0]).toBe('');
    expect(parts[1]).toBe('A256GCM');
    expect(parts[2]).toBe(ctx.keyid);
    expect(parts[2]).toMatch(UUID_V7);
    expect(parts[3]).toBe('e30=');
    expect(parts[4]).toMatch(URLSAFE_PADDED);
    const blob = Buffer.from(parts[4]!, 'base64url');
    expect(blob).toHaveLength(12 + Buffer.byteLength(plaintext, 'utf8') + 16);
    // Exactly Python's urlsafe_b64encode: standard base64 with + → -, / → _.
    expect(parts[4]).toBe(blob.toString('base64').replaceAll('+', '-').replaceAll('/', '_'));
    expect(token).toBe(`$A256GCM$${ctx.keyid}$e30=$${parts[4]}`);
    expect(decryptString(token, ctx)).toBe(plaintext);
  });

  it('two encryptions of one plaintext differ (fresh nonce each time)', () => {
    const a = parseEncryptedField(encryptString('same', ctx)).blob;
    const b = parseEncryptedField(encryptString('same', ctx)).blob;
    expect(a.subarray(0, 12).equals(b.subarray(0, 12))).toBe(false);
  });

  it('writes the key id canonical whatever spelling the key context carries', () => {
    const spelled = { ...ctx, keyid: `{${ctx.keyid.toUpperCase()}}` as DekId };
    expect(encryptString('v', spelled).split('$')[2]).toBe(ctx.keyid);
  });
});

describe('params segment', () => {
  it('is sorted compact JSON with Python-style ASCII escapes, URL-safe base64 with padding', () => {
    expect(encodeParams({})).toBe('e30=');
    expect(canonicalJson({ b: 1, a: { d: 'é', c: [1, 'x', null, true] } })).toBe(
      '{"a":{"c":[1,"x",null,true],"d":"\\u00e9"},"b":1}',
    );
    // Python: json.dumps({"b": "\x7f é 😀", "a": 1, "\ue000": 1, "😀": 2}, separators=(",", ":"), sort_keys=True)
    expect(canonicalJson({ b: '\x7f é 😀', a: 1, '\ue000': 1, '😀': 2 })).toBe(
      '{"a":1,"b":"\\u007f \\u00e9 \\ud83d\\ude00","\\ue000":1,"\\ud83d\\ude00":2}',
    );
    expect(encodeParams({ aad: 'ctx-v1' })).toBe('eyJhYWQiOiJjdHgtdjEifQ==');
    expect(decodeParams('eyJhYWQiOiJjdHgtdjEifQ==')).toEqual({ aad: 'ctx-v1' });
  });

  it('reads only the canonical spelling of a params object', () => {
    const b64 = (json: string) => encodeBase64UrlPadded(Buffer.from(json, 'utf8'));
    expect(decodeParams(b64('{"a":1,"b":2}'))).toEqual({ a: 1, b: 2 });
    for (const json of ['{ }', '{"b":2,"a":1}', '{"a": 1}', '{"a":1,"a":1}', '{"é":1}', '{"a":1.0}']) {
      expect(() => decodeParams(b64(json)), json).toThrow(MalformedTokenError);
    }
    for (const json of ['[]', 'null', '1', '"{}"', '{', '']) {
      expect(() => decodeParams(b64(json)), json).toThrow(MalformedTokenError);
    }
    expect(() => decodeParams(encodeBase64UrlPadded(Buffer.from([0x7b, 0xff, 0x7d])))).toThrow(
      MalformedTokenError,
    );
  });
});

describe('base64 segments are strict (Python is lax; we read the one spelling it writes)', () => {
  it('accepts the canonical padded URL-safe form', () => {
    for (let n = 0; n < 40; n++) {
      const bytes = Buffer.from(Array.from({ length: n }, (_, i) => (i * 97 + n) & 0xff));
      const text = encodeBase64UrlPadded(bytes);
      expect(text).toMatch(URLSAFE_PADDED);
      expect(decodeBase64UrlPadded(text, 'x').equals(bytes)).toBe(true);
    }
  });

  it.each([
    ['e30', 'missing padding'],
    ['e30==', 'excess padding'],
    ['e3+0', 'standard alphabet +'],
    ['e3/0', 'standard alphabet /'],
    ['e3 0', 'space'],
    ['e3!0', 'junk character'],
    ['e30=junk', 'text after the padding'],
    ['e31=', 'non-zero unused bits (Python reads it as {})'],
    ['YR==', 'non-zero unused bits, two pads'],
    ['=e30', 'padding first'],
    ['e=30', 'padding inside'],
    ['====', 'only padding'],
    ['A===', 'three pads'],
    ['e30=\n', 'trailing newline'],
    ['ｅ30=', 'non-ASCII'],
  ])('rejects %j (%s)', (text) => {
    expect(isCanonicalBase64UrlPadded(text)).toBe(false);
    expect(() => decodeBase64UrlPadded(text, 'params')).toThrow(MalformedTokenError);
  });

  it('in a token: a non-canonical params or blob segment is a MalformedTokenError', () => {
    const v = validVectors[2]!;
    const ctx = keyContextOf(v);
    expect(attempt(v.wire, ctx)).toBe(v.plaintext);
    expect(attempt(v.wire.replace('$e30=$', '$e31=$'), ctx)).toBeInstanceOf(MalformedTokenError);
    expect(attempt(v.wire.replace('$e30=$', '$e30$'), ctx)).toBeInstanceOf(MalformedTokenError);
    expect(attempt(`${v.wire}=`, ctx)).toBeInstanceOf(MalformedTokenError);
    const [, alg, keyId, params, blob] = v.wire.split('$');
    expect(blob).toMatch(/-.*_|_.*-/);
    for (const standard of [blob!.replaceAll('_', '/'), blob!.replaceAll('-', '+')]) {
      expect(attempt(`$${alg}$${keyId}$${params}$${standard}`, ctx)).toBeInstanceOf(MalformedTokenError);
    }
  });

  it('a blob shorter than nonce + tag (28 bytes) is a MalformedTokenError', () => {
    const ctx = keyContextOf(validVectors[0]!);
    for (const n of [0, 1, 12, 27]) {
      const token = `$A256GCM$${ctx.keyid}$e30=$${encodeBase64UrlPadded(Buffer.alloc(n))}`;
      expect(attempt(token, ctx), String(n)).toBeInstanceOf(MalformedTokenError);
    }
  });
});

describe('key ids', () => {
  const id = '01a20849-b253-7265-8831-44e0eb8ffa6c';

  it.each([
    id,
    id.toUpperCase(),
    '01A20849-b253-7265-8831-44E0EB8FFA6C',
    id.replaceAll('-', ''),
    `{${id}}`,
    `{${id.toUpperCase()}}`,
    `{${id.replaceAll('-', '')}}`,
    `urn:uuid:${id}`,
    `urn:uuid:${id.replaceAll('-', '')}`,
  ])('%s is read and written canonical', (spelling) => {
    expect(parseDekId(spelling)).toBe(id);
    expect(parseKekSlotId(spelling)).toBe(id);
  });

  it.each([
    ['', 'empty'],
    ['not-a-uuid', 'not hex'],
    [`URN:UUID:${id}`, 'upper-case URN prefix (Python refuses it too)'],
    [`urn:uuid:{${id}}`, 'both URN prefix and braces'],
    [`{${id}`, 'unclosed brace'],
    [`${id}}`, 'unopened brace'],
    [` ${id}`, 'whitespace'],
    [`${id}\n`, 'trailing newline'],
    ['01a2-0849b253-7265-8831-44e0eb8ffa6c', 'hyphens in the wrong places'],
    ['01a20849-b253-7265-8831-44e0eb8ffa6', '31 hex digits'],
    ['01a20849-b253-7265-8831-44e0eb8ffa6cc', '33 hex digits'],
    ['01a20849-b253-7265-8831-44e0eb8ffa6g', 'not hex'],
  ])('%j is an InvalidKeyIdError (%s)', (text) => {
    expect(() => parseDekId(text)).toThrow(InvalidKeyIdError);
    expect(() => parseKekSlotId(text)).toThrow(InvalidKeyIdError);
  });

  it('any 128-bit value is accepted, as Python reads it (no version or variant check)', () => {
    expect(parseDekId('00000000-0000-0000-0000-000000000000')).toBe('00000000-0000-0000-0000-000000000000');
    expect(parseDekId('FFFFFFFF-FFFF-0FFF-3FFF-FFFFFFFFFFFF')).toBe('ffffffff-ffff-0fff-3fff-ffffffffffff');
  });

  it('integer ids (gemstone_utils before 0.5) are refused with a hint to migrate them', () => {
    for (const text of ['42', '0', '18446744073709551616']) {
      expect(() => parseDekId(text)).toThrow(InvalidKeyIdError);
      expect(() => parseDekId(text)).toThrow(/integer key ids .* no longer supported; migrate .* UUID/);
    }
    const ctx = keyContextOf(validVectors[1]!);
    const token = validVectors[1]!.wire.replace(ctx.keyid, '42');
    const err = attempt(token, ctx);
    expect(err).toBeInstanceOf(InvalidKeyIdError);
    expect((err as Error).message).toMatch(/migrate/);
    expect(attempt(`$A256GCM$42$${validVectors[1]!.wire.split('$')[4]}`, ctx)).toBeInstanceOf(
      InvalidKeyIdError,
    );
  });

  it('a token with an upper-case, braced or URN key id decrypts and re-formats canonical', () => {
    const v = validVectors[2]!;
    const ctx = keyContextOf(v);
    for (const spelling of [v.keyid.toUpperCase(), `{${v.keyid}}`, `urn:uuid:${v.keyid}`]) {
      const token = v.wire.replace(v.keyid, spelling);
      expect(decryptString(token, ctx)).toBe(v.plaintext);
      expect(formatEncryptedField(parseEncryptedField(token))).toBe(v.wire);
    }
  });

  it('new ids are distinct canonical UUIDv7 of both kinds', () => {
    const ids = new Set(Array.from({ length: 1000 }, () => newKeyId()));
    expect(ids.size).toBe(1000);
    for (const k of ids) expect(k).toMatch(UUID_V7);
    expect(newKekSlotId()).toMatch(UUID_V7);
  });

  it('DEK ids and KEK slot ids are different types, and the format functions are generic over them', () => {
    const dekId: DekId = newKeyId();
    const slotId: KekSlotId = newKekSlotId();
    // @ts-expect-error a KEK slot id is not a DEK id
    const wrong: DekId = slotId;
    // @ts-expect-error a DEK id is not a KEK slot id
    const wrong2: KekSlotId = dekId;
    // @ts-expect-error plain strings must be parsed first
    const wrong3: DekId = '01a20849-b253-7265-8831-44e0eb8ffa6c';
    expect([wrong, wrong2, wrong3]).toHaveLength(3);

    const blob = Buffer.alloc(28, 1);
    const asSlot = formatEncryptedField({ alg: 'A256GCM', keyId: slotId, blob });
    const parsedSlot = parseEncryptedField(asSlot, parseKekSlotId);
    const slotKey: KekSlotId = parsedSlot.keyId;
    expect(slotKey).toBe(slotId);
    const parsedDek = parseEncryptedField(formatEncryptedField({ alg: 'A256GCM', keyId: dekId, blob }));
    const dekKey: DekId = parsedDek.keyId;
    expect(dekKey).toBe(dekId);
    // @ts-expect-error parsed with parseKekSlotId: not a DEK id
    const wrong4: DekId = parsedSlot.keyId;
    expect(wrong4).toBe(slotId);
  });
});

describe('structure', () => {
  const ctx: KeyContext = { keyid: newKeyId(), key: Dek.generate(), alg: 'A256GCM' };
  const token = encryptString('v', ctx);
  const [, , keyId, params, blob] = token.split('$');

  it.each([
    ['', 'empty'],
    ['$', 'one dollar'],
    ['$$$$', 'empty segments'],
    ['plain text', 'no dollar'],
    [`A256GCM$${keyId}$${params}$${blob}`, 'no leading $'],
    [`x$A256GCM$${keyId}$${params}$${blob}`, 'something before the leading $'],
    [`$A256GCM$${keyId}`, 'two parts'],
    [`${token}$`, 'six parts (trailing $)'],
    [`${token}$e30=`, 'six parts'],
    [`$$${keyId}$${params}$${blob}`, 'empty alg'],
    [`$A256 GCM$${keyId}$${params}$${blob}`, 'space in alg'],
    [`$${'A'.repeat(33)}$${keyId}$${params}$${blob}`, 'alg too long'],
    [`$A256GCM$$${params}$${blob}`, 'empty key id'],
    [`$A256GCM$${keyId}$$${blob}`, 'empty params'],
    [`$A256GCM$${keyId}$${params}$`, 'empty blob'],
  ])('%j is a typed structural error (%s)', (bad) => {
    const err = attempt(bad, ctx);
    expect(err).toBeInstanceOf(Error);
    expect([MalformedTokenError, InvalidKeyIdError].some((c) => err instanceof c)).toBe(true);
  });

  it('non-string tokens are MalformedTokenErrors', () => {
    for (const bad of [undefined, null, 42, {}, Buffer.from(token)]) {
      expect(() => parseEncryptedField(bad as unknown as string)).toThrow(MalformedTokenError);
    }
  });

  it('unknown algorithms are UnsupportedAlgorithmErrors', () => {
    expect(attempt(token.replace('$A256GCM$', '$A128GCM$'), ctx)).toBeInstanceOf(UnsupportedAlgorithmError);
    expect(() => formatEncryptedField({ alg: 'A128GCM', keyId: ctx.keyid, blob: Buffer.alloc(28) })).toThrow(
      UnsupportedAlgorithmError,
    );
  });

  it('format refuses what it could not read back', () => {
    expect(() => formatEncryptedField({ alg: 'A256GCM', keyId: ctx.keyid, blob: Buffer.alloc(27) })).toThrow(
      InvalidArgumentError,
    );
    expect(() =>
      formatEncryptedField({ alg: 'A256GCM', keyId: '42' as DekId, blob: Buffer.alloc(28) }),
    ).toThrow(InvalidKeyIdError);
  });
});

describe('legacy four-part form', () => {
  it('is read, with one DeprecationWarning per process', () => {
    resetLegacyWarningForTesting();
    const spy = vi.spyOn(process, 'emitWarning').mockImplementation(() => {});
    try {
      const legacy = validVectors.find((v) => v.legacy_four_part)!;
      const ctx = keyContextOf(legacy);
      for (let i = 0; i < 3; i++) expect(decryptString(legacy.wire, ctx)).toBe(legacy.plaintext);
      expect(parseEncryptedField(legacy.wire).legacy).toBe(true);
      expect(spy).toHaveBeenCalledTimes(1);
      expect(spy.mock.calls[0]![0]).toMatch(/legacy four-part/);
      expect(spy.mock.calls[0]![1]).toEqual({ type: 'DeprecationWarning', code: 'KMS_ENVELOPE_LEGACY_WIRE' });
      // Five-part tokens never warn.
      decryptString(validVectors[0]!.wire, keyContextOf(validVectors[0]!));
      expect(spy).toHaveBeenCalledTimes(1);
    } finally {
      spy.mockRestore();
    }
  });

  it('a malformed four-part string does not warn', () => {
    resetLegacyWarningForTesting();
    const spy = vi.spyOn(process, 'emitWarning').mockImplementation(() => {});
    try {
      expect(() => parseEncryptedField('$1$salt$hash')).toThrow(InvalidKeyIdError);
      expect(spy).not.toHaveBeenCalled();
    } finally {
      spy.mockRestore();
    }
  });
});

describe('isEncryptedValue', () => {
  const ctx: KeyContext = { keyid: newKeyId(), key: Dek.generate(), alg: 'A256GCM' };

  it('is true for our tokens, gemstone tokens (also legacy and integer-id ones)', () => {
    expect(isEncryptedValue(encryptString('v', ctx))).toBe(true);
    expect(isEncryptedValue(encryptString('v', ctx, { context: { row: '1' } }))).toBe(true);
    for (const v of validVectors) expect(isEncryptedValue(v.wire)).toBe(true);
    const blob = validVectors[1]!.wire.split('$')[4];
    expect(isEncryptedValue(`$A256GCM$42$e30=$${blob}`)).toBe(true);
  });

  it('is false for plaintext, including crypt(3) and bcrypt hashes that start with $', () => {
    for (const v of [
      '',
      'hello',
      '$',
      '$$$$',
      '$$$$$',
      'v2:abc',
      '$1$saltsalt$qjXMvbEw8oaL.CzflDugX/',
      '$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW',
      '$5$rounds=5000$usesomesillystri$KqJWpanXZHKq2BOB43TSaYhEWsQ1Lr5QNyPCDH/Tp.6',
      '$argon2id$v=19$m=65536,t=3,p=4$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG',
      `$A128GCM$${ctx.keyid}$e30=$${'A'.repeat(40)}`,
      `$A256GCM$${ctx.keyid}$e30=$not base64!`,
      42,
      null,
      undefined,
      {},
    ]) {
      expect(isEncryptedValue(v), String(v)).toBe(false);
    }
  });
});
