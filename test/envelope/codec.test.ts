import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import fc from 'fast-check';
import { Builder, ByteBuffer } from 'flatbuffers';
import { describe, expect, it } from 'vitest';
import { decodeKmsBlob, encodeKmsBlob } from '../../src/envelope/codec.js';
import { CREATION_ID_LENGTH, type KmsBlob, KmsBlobLimits } from '../../src/envelope/kms-blob.js';
import { InvalidArgumentError, MalformedEnvelopeError } from '../../src/errors.js';
import { KMSBlob } from '../../src/generated/kms_blob_generated.js';
import { sampleBlob } from '../helpers/blobs.js';
import { buildWithFlatc, byUtf8, withTrailer } from '../helpers/flatc-blob.js';

const vectorDir = join(import.meta.dirname, '../vectors/envelopes');
const kinds = readdirSync(vectorDir)
  .filter((f) => f.endsWith('.kmsb'))
  .map((f) => f.slice(0, -5));

function expected(kind: string): KmsBlob {
  const raw = JSON.parse(readFileSync(join(vectorDir, `${kind}.json`), 'utf8')) as Record<string, unknown>;
  return {
    ...(raw as unknown as KmsBlob),
    wrappedKek: new Uint8Array(Buffer.from(raw.wrappedKek as string, 'base64')),
    kekCheck:
      raw.kekCheck === null ? undefined : new Uint8Array(Buffer.from(raw.kekCheck as string, 'base64')),
    creationId:
      raw.creationId === undefined
        ? undefined
        : new Uint8Array(Buffer.from(raw.creationId as string, 'base64')),
    ...(raw.wraps === undefined
      ? {}
      : {
          wraps: (raw.wraps as Array<Record<string, string>>).map((w) => ({
            kmsName: w.kmsName!,
            provider: w.provider!,
            keyId: w.keyId!,
            region: w.region!,
            wrappedKek: new Uint8Array(Buffer.from(w.wrappedKek!, 'base64')),
          })),
        }),
  };
}

const golden = kinds.map((kind) => ({
  kind,
  bytes: new Uint8Array(readFileSync(join(vectorDir, `${kind}.kmsb`))),
  blob: expected(kind),
}));

/** Decodes and classifies: the blob, or 'malformed'; any other exception fails the test. */
function attempt(bytes: Uint8Array): KmsBlob | 'malformed' {
  try {
    return decodeKmsBlob(bytes);
  } catch (err) {
    if (err instanceof MalformedEnvelopeError) return 'malformed';
    throw new Error(`decode threw ${(err as Error)?.constructor?.name}: ${(err as Error)?.message}`);
  }
}

/**
 * Asserts that a blob decoded from mutated bytes is valid: encode accepts it and gives it back
 * unchanged. Compares with isDeepStrictEqual first, since expect() per case is slow in bulk.
 */
function expectValid(blob: KmsBlob): void {
  const again = decodeKmsBlob(encodeKmsBlob(blob));
  if (!isDeepStrictEqual(again, blob)) expect(again).toEqual(blob);
}

/** No C0 control characters or DEL (the codec refuses them in text fields). */
const noControl = (s: string) => ![...s].some((c) => c.charCodeAt(0) < 0x20 || c.charCodeAt(0) === 0x7f);

const blobArb: fc.Arbitrary<KmsBlob> = fc
  .record({
    kmsName: fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9._-]{0,40}$/).filter((s) => !s.includes('..')),
    provider: fc.constantFrom('none', 'local', 'aws', 'aws-kms', 'gcp-kms', 'azure-kv', 'my-plugin2'),
    // 'binary': any code point, astral ones and U+FEFF included (never lone surrogates).
    keyId: fc.string({ maxLength: 300, unit: 'binary' }).filter(noControl),
    region: fc.stringMatching(/^[a-z0-9-]{0,20}$/),
    wrappedKek: fc.uint8Array({ maxLength: 600 }),
    version: fc.integer({ min: 1, max: KmsBlobLimits.maxVersion }),
    createdAt: fc.integer({ min: 0, max: KmsBlobLimits.maxTimestamp }),
    indexName: fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9._-]{0,60}$/).filter((s) => !s.includes('..')),
    encryptionContext: fc.dictionary(
      fc
        .string({ minLength: 1, maxLength: 20, unit: 'binary' })
        .filter((s) => noControl(s) && s !== '__proto__'),
      fc.string({ maxLength: 40, unit: 'binary' }).filter(noControl),
      { maxKeys: 5 },
    ),
    schemaVersion: fc.constantFrom(1, 2, 2, 3),
    updatedAt: fc.integer({ min: 0, max: KmsBlobLimits.maxTimestamp }),
    kekCheck: fc.option(fc.uint8Array({ minLength: 1, maxLength: 32 }), { nil: undefined }),
    creationId: fc.uint8Array({ minLength: CREATION_ID_LENGTH, maxLength: CREATION_ID_LENGTH }),
    wraps: fc.array(
      fc.record({
        kmsName: fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9._-]{0,20}$/).filter((s) => !s.includes('..')),
        provider: fc.constantFrom('local', 'aws-kms', 'gcp-kms', 'azure-kv', 'recipient', 'my-plugin2'),
        keyId: fc.string({ maxLength: 120, unit: 'binary' }).filter(noControl),
        region: fc.stringMatching(/^[a-z0-9-]{0,20}$/),
        wrappedKek: fc.uint8Array({ maxLength: 300 }),
      }),
      { maxLength: 4 },
    ),
    threshold: fc.integer({ min: 2, max: 5 }),
  })
  .map(({ wraps: rawWraps, threshold: k, ...b }) => {
    // Schema 1: no wraps; schema 3: at least one wrap and a threshold k from 2 to 1 + wraps.
    const wraps =
      b.schemaVersion === 1
        ? []
        : (b.schemaVersion === 3 && rawWraps.length === 0 ? [sampleWrap] : rawWraps).map((w, i) => ({
            ...w,
            kmsName: `${w.kmsName}-w${i}`, // unique, and never the primary's name
          }));
    const multi = wraps.length > 0;
    return {
      ...b,
      updatedAt: Math.max(b.createdAt, b.updatedAt),
      // Schema 2 and 3 have a creation id, schema 1 none; provider none always has its check
      // value and no wraps; an envelope with wraps always has a check value.
      provider: multi && b.provider === 'none' ? 'local' : b.provider,
      creationId: b.schemaVersion >= 2 ? b.creationId : undefined,
      kekCheck: b.kekCheck ?? (b.provider === 'none' || multi ? new Uint8Array([1, 2, 3]) : undefined),
      ...(multi ? { wraps } : {}),
      ...(b.schemaVersion === 3 ? { threshold: Math.min(k, 1 + wraps.length) } : {}),
    };
  });

/** A further wrap for schema 3 blobs made without one. */
const sampleWrap = {
  kmsName: 'second',
  provider: 'gcp-kms',
  keyId: 'projects/p/locations/l/keyRings/r/cryptoKeys/k/cryptoKeyVersions/1',
  region: 'l',
  wrappedKek: new Uint8Array([9, 8, 7]),
};

/** The context sorted by key in stored order (toEqual ignores key order; this is for reading). */
function normalized(blob: KmsBlob): KmsBlob {
  const ctx = blob.encryptionContext;
  return {
    ...blob,
    encryptionContext: Object.fromEntries(
      Object.keys(ctx)
        .sort(byUtf8)
        .map((key) => [key, ctx[key]!]),
    ),
  };
}

describe('KMSBlob codec', () => {
  it('any valid blob round-trips exactly, deterministically', () => {
    fc.assert(
      fc.property(blobArb, (blob) => {
        const bytes = encodeKmsBlob(blob);
        expect(decodeKmsBlob(bytes)).toEqual(normalized(blob));
        expect(encodeKmsBlob(decodeKmsBlob(bytes))).toEqual(bytes);
      }),
      { numRuns: 2000 },
    );
  });

  it.each([0, 1, 64, 65, 4096, 4097, KmsBlobLimits.maxWrappedKekBytes])(
    'a %i-byte wrapped KEK round-trips as a fresh plain copy (heap, slab and dedicated copies)',
    (length) => {
      const wrappedKek = new Uint8Array(length).map((_, i) => i * 7);
      const bytes = encodeKmsBlob(sampleBlob('orders', { wrappedKek }));
      const decoded = decodeKmsBlob(bytes);
      expect(decoded.wrappedKek).toEqual(wrappedKek);
      expect(Object.getPrototypeOf(decoded.wrappedKek)).toBe(Uint8Array.prototype);
      expect(decoded.wrappedKek.buffer).not.toBe(bytes.buffer);
    },
  );

  it('the flatc-generated reader reads what we write', () => {
    fc.assert(
      fc.property(blobArb, (blob) => {
        const bytes = encodeKmsBlob(blob);
        const bb = new ByteBuffer(bytes.subarray(0, bytes.length - 4));
        expect(KMSBlob.bufferHasIdentifier(bb)).toBe(true);
        const g = KMSBlob.getRootAsKMSBlob(bb);
        expect(g.kmsName()).toBe(blob.kmsName);
        expect(g.provider()).toBe(blob.provider);
        expect(g.keyId() ?? '').toBe(blob.keyId);
        expect(g.region() ?? '').toBe(blob.region);
        expect(g.wrappedKekArray() ?? new Uint8Array()).toEqual(blob.wrappedKek);
        expect(g.version()).toBe(blob.version);
        expect(g.createdAt()).toBe(BigInt(blob.createdAt));
        expect(g.indexName()).toBe(blob.indexName);
        expect(g.schemaVersion()).toBe(blob.schemaVersion);
        expect(g.creationIdArray() ?? undefined).toEqual(blob.creationId);
        expect(g.updatedAt()).toBe(BigInt(blob.updatedAt));
        expect(g.kekCheckArray() ?? undefined).toEqual(blob.kekCheck);
        const ctx: Record<string, string> = {};
        const order: string[] = [];
        for (let i = 0; i < g.encryptionContextLength(); i++) {
          ctx[g.encryptionContext(i)!.key()!] = g.encryptionContext(i)!.value()!;
          order.push(g.encryptionContext(i)!.key()!);
        }
        expect(ctx).toEqual(blob.encryptionContext);
        expect(order).toEqual(Object.keys(blob.encryptionContext).sort(byUtf8));
        const wraps = Array.from({ length: g.wrapsLength() }, (_, i) => {
          const w = g.wraps(i)!;
          return {
            kmsName: w.kmsName(),
            provider: w.provider(),
            keyId: w.keyId() ?? '',
            region: w.region() ?? '',
            wrappedKek: w.wrappedKekArray() ?? new Uint8Array(),
          };
        });
        expect(wraps).toEqual(blob.wraps ?? []);
        expect(g.threshold()).toBe(blob.threshold ?? 0);
      }),
      { numRuns: 500 },
    );
  });

  it('we read what the flatc-generated builder writes', () => {
    fc.assert(
      fc.property(blobArb, (blob) => {
        expect(decodeKmsBlob(buildWithFlatc(blob))).toEqual(normalized(blob));
      }),
      { numRuns: 500 },
    );
  });

  it('a buffer with a field from a newer schema still decodes (forward compatibility)', () => {
    const blob = sampleBlob('orders');
    // Fields 15 and 16, unknown to this schema: an int32 and an int64.
    const bytes = buildWithFlatc(blob, (b) => {
      b.addFieldInt32(15, 42, 0);
      b.addFieldInt64(16, 7n, 0n);
    });
    const view = new DataView(bytes.buffer, bytes.byteOffset);
    const root = view.getUint32(0, true);
    expect(view.getUint16(root - view.getInt32(root, true), true)).toBe(4 + 2 * 17); // really there
    expect(decodeKmsBlob(bytes)).toEqual(blob);
  });

  it('a buffer without a required field is malformed', () => {
    const b = new Builder(64);
    const name = b.createString('dev');
    KMSBlob.startKMSBlob(b);
    KMSBlob.addKmsName(b, name);
    KMSBlob.addProvider(b, name);
    KMSBlob.addVersion(b, 1);
    const end = b.endObject(); // no index_name
    b.finish(end, 'KMSB');
    expect(() => decodeKmsBlob(withTrailer(b.asUint8Array()))).toThrow(
      /required field index_name is missing/,
    );
  });

  it.each([
    ['kmsName', { kmsName: '../x' }],
    ['indexName', { indexName: 'a/b' }],
    ['provider', { provider: 'Bad Provider' }],
    ['keyId control character', { keyId: 'arn\n' }],
    ['keyId length', { keyId: 'k'.repeat(KmsBlobLimits.maxKeyIdLength + 1) }],
    ['version 0', { version: 0 }],
    ['version fraction', { version: 1.5 }],
    ['version too large', { version: 2 ** 32 }],
    ['createdAt negative', { createdAt: -1 }],
    ['createdAt unsafe', { createdAt: 2 ** 53 }],
    ['updatedAt before createdAt', { createdAt: 10, updatedAt: 5 }],
    ['schemaVersion', { schemaVersion: 3 }],
    ['schemaVersion 2 without creationId', { schemaVersion: 2, creationId: undefined }],
    ['schemaVersion 1 with creationId', { schemaVersion: 1 }],
    ['creationId short', { creationId: new Uint8Array(15) }],
    [
      'provider none without kekCheck',
      { provider: 'none', wrappedKek: new Uint8Array(0), kekCheck: undefined },
    ],
    ['wrappedKek size', { wrappedKek: new Uint8Array(KmsBlobLimits.maxWrappedKekBytes + 1) }],
    ['wrappedKek type', { wrappedKek: 'AAAA' as unknown as Uint8Array }],
    ['kekCheck empty', { kekCheck: new Uint8Array(0) }],
    ['context empty key', { encryptionContext: { '': 'x' } }],
    ['context value type', { encryptionContext: { a: 1 as unknown as string } }],
    ['kmsName with ..', { kmsName: 'a..b' }],
    ['kmsName length', { kmsName: 'k'.repeat(129) }],
    ['kmsName type', { kmsName: 7 as unknown as string }],
    ['indexName empty', { indexName: '' }],
    ['provider upper case', { provider: 'AWS' }],
    ['region length', { region: 'r'.repeat(KmsBlobLimits.maxRegionLength + 1) }],
    ['region DEL', { region: 'eu\u007f' }],
    ['keyId lone high surrogate', { keyId: 'key\ud800' }],
    ['keyId lone low surrogate', { keyId: '\udc00key' }],
    ['keyId type', { keyId: undefined as unknown as string }],
    ['version NaN', { version: Number.NaN }],
    ['version string', { version: '1' as unknown as number }],
    [
      'createdAt after 9999',
      { createdAt: KmsBlobLimits.maxTimestamp + 1, updatedAt: KmsBlobLimits.maxTimestamp + 1 },
    ],
    ['updatedAt fraction', { updatedAt: 1_763_900_000.5 }],
    ['schemaVersion 0', { schemaVersion: 0 }],
    ['kekCheck too long', { kekCheck: new Uint8Array(KmsBlobLimits.maxKekCheckBytes + 1) }],
    ['kekCheck null', { kekCheck: null as unknown as undefined }],
    ['kekCheck array', { kekCheck: [1, 2] as unknown as Uint8Array }],
    ['context null', { encryptionContext: null as unknown as Record<string, string> }],
    ['context array', { encryptionContext: ['a'] as unknown as Record<string, string> }],
    ['context Map', { encryptionContext: new Map([['a', 'b']]) as unknown as Record<string, string> }],
    [
      'context class instance',
      {
        encryptionContext: new (class Ctx {
          a = 'b';
        })() as unknown as Record<string, string>,
      },
    ],
    [
      'context __proto__ key',
      { encryptionContext: JSON.parse('{"__proto__":"x"}') as Record<string, string> },
    ],
    ['context control in key', { encryptionContext: { 'a\tb': 'x' } }],
    ['context lone surrogate in value', { encryptionContext: { a: '\ud83d' } }],
    [
      'context key length',
      { encryptionContext: { ['k'.repeat(KmsBlobLimits.maxContextKeyLength + 1)]: 'v' } },
    ],
    [
      'context value length',
      { encryptionContext: { k: 'v'.repeat(KmsBlobLimits.maxContextValueLength + 1) } },
    ],
    [
      'context entry count',
      {
        encryptionContext: Object.fromEntries(
          Array.from({ length: KmsBlobLimits.maxContextEntries + 1 }, (_, i) => [`k${i}`, 'v']),
        ),
      },
    ],
  ])('encode rejects an invalid %s with InvalidArgumentError', (_, override) => {
    expect(() => encodeKmsBlob(sampleBlob('orders', override as Partial<KmsBlob>))).toThrow(
      InvalidArgumentError,
    );
  });

  it('encode rejects a blob that is not an object', () => {
    expect(() => encodeKmsBlob(null as unknown as KmsBlob)).toThrow(InvalidArgumentError);
    expect(() => encodeKmsBlob('blob' as unknown as KmsBlob)).toThrow(InvalidArgumentError);
  });

  it('encode rejects an envelope over maxEnvelopeBytes, and accepts one of exactly that size', () => {
    // 31 entries of a 2000-byte value: about 63.7 KiB; the last value is sized to hit the limit.
    const ctx: Record<string, string> = {};
    for (let i = 0; i < 31; i++) ctx[`k${String(i).padStart(2, '0')}`] = 'v'.repeat(2000);
    const base = sampleBlob('orders', { encryptionContext: ctx });
    const baseSize = encodeKmsBlob(base).length;
    // One more entry "k99" costs 20 (vtable + table) + 8 (key) + 4 (vector slot) + 4 + n + 1, padded.
    const room = KmsBlobLimits.maxEnvelopeBytes - baseSize - 20 - 8 - 4 - 4 - 1;
    const exact = { ...base, encryptionContext: { ...ctx, k99: 'v'.repeat(room - (room % 4) + 3) } };
    const bytes = encodeKmsBlob(exact);
    expect(bytes.length).toBe(KmsBlobLimits.maxEnvelopeBytes);
    expect(decodeKmsBlob(bytes)).toEqual(exact);
    const over = { ...base, encryptionContext: { ...ctx, k99: 'v'.repeat(room - (room % 4) + 4) } };
    expect(() => encodeKmsBlob(over)).toThrow(/would be 65540 bytes, over 65536/);
  });

  it('encode reads every field once (a getter cannot change a field between check and write)', () => {
    let reads = 0;
    const blob = sampleBlob('orders');
    const tricky = Object.defineProperty({ ...blob }, 'keyId', {
      get: () => (++reads === 1 ? 'short' : 'k\n'.repeat(5000)),
    });
    expect(decodeKmsBlob(encodeKmsBlob(tricky)).keyId).toBe('short');
    expect(reads).toBe(1);
  });

  it('accepts a null-prototype context, and keeps text exactly: BOM, astral characters, order by UTF-8 bytes', () => {
    const ctx = Object.assign(Object.create(null) as Record<string, string>, {
      '\uffff': 'BMP last',
      '\u{10000}': 'astral first in UTF-16, last in UTF-8',
      '\ufeffbom': '\ufeff',
    });
    const blob = sampleBlob('orders', { keyId: '\ufeffkey-\u{1f511}', encryptionContext: ctx });
    const bytes = encodeKmsBlob(blob);
    const decoded = decodeKmsBlob(bytes);
    expect(decoded.keyId).toBe('\ufeffkey-\u{1f511}');
    expect(decoded.encryptionContext).toEqual({ ...ctx });
    expect(Object.keys(decoded.encryptionContext)).toEqual(['\ufeffbom', '\uffff', '\u{10000}']);
  });

  it('encode errors never show byte values', () => {
    const secretish = new Uint8Array(KmsBlobLimits.maxWrappedKekBytes + 1).fill(0xab);
    const err = (() => {
      try {
        encodeKmsBlob(sampleBlob('orders', { wrappedKek: secretish }));
      } catch (e) {
        return e as Error;
      }
    })();
    expect(err?.message).not.toMatch(/ab,|abab|q6ur/i);
  });
});

describe('golden envelopes (test/vectors/envelopes)', () => {
  it('has one per provider kind and schema version', () => {
    const providers = ['aws', 'aws-kms', 'azure-kv', 'gcp-kms', 'local', 'none'];
    const multi = ['multi-anyof', 'multi-threshold'];
    expect(kinds.sort()).toEqual([...providers, ...providers.map((p) => `${p}.v2`), ...multi].sort());
    const schemaOf = (kind: string) =>
      kind === 'multi-threshold' ? 3 : kind.startsWith('multi') ? 2 : kind.endsWith('.v2') ? 2 : 1;
    for (const { kind, blob } of golden) expect(blob.schemaVersion).toBe(schemaOf(kind));
    const anyOf = golden.find((g) => g.kind === 'multi-anyof')!.blob;
    expect(anyOf.wraps?.map((w) => w.kmsName)).toEqual(['gcp-eu', 'recovery']);
    expect(anyOf.threshold).toBeUndefined();
    expect(golden.find((g) => g.kind === 'multi-threshold')!.blob.threshold).toBe(2);
  });

  it.each(golden)('$kind decodes to its JSON and re-encodes to the same bytes', ({ bytes, blob }) => {
    expect(decodeKmsBlob(bytes)).toEqual(blob);
    expect(encodeKmsBlob(blob)).toEqual(bytes);
  });

  it.each(golden)(
    '$kind: every truncation and every single-bit flip is exactly the original or malformed',
    ({ bytes, blob }) => {
      let malformed = 0;
      for (let n = 0; n < bytes.length; n++) {
        expect(attempt(bytes.subarray(0, n))).toBe('malformed');
      }
      for (let i = 0; i < bytes.length; i++) {
        for (let bit = 0; bit < 8; bit++) {
          const flipped = bytes.slice();
          flipped[i]! ^= 1 << bit;
          const result = attempt(flipped);
          if (result === 'malformed') malformed++;
          else expect(result).toEqual(blob);
        }
      }
      // CRC32C detects every single-bit error, so in fact every flip is rejected.
      expect(malformed).toBe(bytes.length * 8);
    },
  );
});

describe('fuzzing the verifier (120,000 fast-check cases, plus exhaustive flips and truncations)', () => {
  // Both layouts: ours (front to back) and flatc's (back to front, shared vtables, padding).
  const seedEnvelopes = [
    ...golden.map((g) => ({ bytes: g.bytes, blob: g.blob })),
    ...golden.map((g) => ({ bytes: buildWithFlatc(g.blob), blob: g.blob })),
  ];
  const seeds = seedEnvelopes.map((e) => e.bytes);

  /** Mutations of a valid buffer: flips, byte sets, insertions, deletions, truncations, splices. */
  const mutated = fc
    .record({
      seed: fc.constantFrom(...seedEnvelopes),
      ops: fc.array(
        fc.record({
          kind: fc.constantFrom('flip', 'set', 'insert', 'delete', 'truncate', 'splice'),
          at: fc.nat(),
          value: fc.integer({ min: 0, max: 255 }),
          len: fc.integer({ min: 1, max: 16 }),
        }),
        { minLength: 1, maxLength: 4 },
      ),
    })
    .map(({ seed, ops }) => {
      let b = Array.from(seed.bytes);
      for (const op of ops) {
        const at = b.length ? op.at % b.length : 0;
        if (op.kind === 'flip') b[at] = (b[at] ?? 0) ^ (1 << (op.value % 8));
        else if (op.kind === 'set') b[at] = op.value;
        else if (op.kind === 'insert') b.splice(at, 0, ...Array(op.len).fill(op.value));
        else if (op.kind === 'delete') b.splice(at, op.len);
        else if (op.kind === 'truncate') b = b.slice(0, at);
        else b.splice(at, op.len, ...Array.from(seeds[op.value % seeds.length]!.subarray(0, op.len)));
      }
      return { original: seed.blob, bytes: new Uint8Array(b) };
    });

  it('random buffers only ever throw MalformedEnvelopeError', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 700 }), (bytes) => {
        expect(attempt(bytes)).toBe('malformed');
      }),
      { numRuns: 30_000 },
    );
  });

  it('random buffers that carry the identifier and a valid checksum only ever throw MalformedEnvelopeError or decode to a valid blob', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 8, maxLength: 400 }), fc.nat(), (body, root) => {
        const fb = body.slice();
        new DataView(fb.buffer).setUint32(0, 8 + ((root % Math.max(1, fb.length - 8)) & ~3), true);
        fb.set([0x4b, 0x4d, 0x53, 0x42], 4); // "KMSB"
        const result = attempt(withTrailer(fb));
        if (result !== 'malformed') expect(() => encodeKmsBlob(result)).not.toThrow();
      }),
      { numRuns: 20_000 },
    );
  });

  it('mutated golden envelopes decode to exactly the original or throw MalformedEnvelopeError', () => {
    fc.assert(
      fc.property(mutated, ({ original, bytes }) => {
        const result = attempt(bytes);
        if (result !== 'malformed') expect(result).toEqual(original);
      }),
      { numRuns: 30_000 },
    );
  });

  it('behind the checksum: every bit flip and truncation of each golden FlatBuffer (both layouts), re-CRCed, is rejected or decodes to a valid blob', () => {
    let decoded = 0;
    for (const seed of seeds) {
      const fb = seed.subarray(0, seed.length - 4);
      for (let n = 0; n < fb.length; n++) {
        const result = attempt(withTrailer(fb.subarray(0, n)));
        if (result !== 'malformed') expectValid(result);
      }
      for (let i = 0; i < fb.length; i++) {
        for (let bit = 0; bit < 8; bit++) {
          const flipped = fb.slice();
          flipped[i]! ^= 1 << bit;
          const result = attempt(withTrailer(flipped));
          if (result === 'malformed') continue;
          decoded++;
          expectValid(result);
        }
      }
    }
    // Flips inside wrapped_kek, kek_check, padding or unused vtable bits leave a valid envelope.
    expect(decoded).toBeGreaterThan(0);
  });

  it('behind the checksum: mutated encodings of random valid blobs (both layouts) are rejected or decode to a valid blob', () => {
    const mutation = fc.record({
      at: fc.nat(),
      value: fc.integer({ min: 0, max: 255 }),
      kind: fc.constantFrom('set', 'flip', 'truncate'),
    });
    fc.assert(
      fc.property(
        blobArb,
        fc.boolean(),
        fc.array(mutation, { minLength: 1, maxLength: 3 }),
        (blob, flatc, ops) => {
          const stored = flatc ? buildWithFlatc(blob) : encodeKmsBlob(blob);
          let fb = stored.slice(0, stored.length - 4);
          for (const op of ops) {
            const at = fb.length ? op.at % fb.length : 0;
            if (op.kind === 'set') fb[at] = op.value;
            else if (op.kind === 'flip') fb[at]! ^= 1 << (op.value % 8);
            else fb = fb.slice(0, at);
          }
          const result = attempt(withTrailer(fb));
          if (result !== 'malformed') expectValid(result);
        },
      ),
      { numRuns: 10_000 },
    );
  });

  it('behind the checksum: mutated FlatBuffers with a recomputed CRC are rejected or decode to a valid blob', () => {
    fc.assert(
      fc.property(mutated, ({ bytes }) => {
        const fb = bytes.subarray(0, Math.max(0, bytes.length - 4));
        const result = attempt(withTrailer(fb));
        if (result !== 'malformed') expectValid(result);
      }),
      { numRuns: 30_000 },
    );
  });
});
