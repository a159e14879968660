import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { Builder, ByteBuffer } from 'flatbuffers';
import { describe, expect, it } from 'vitest';
import { crc32c } from '../../src/envelope/checksum.js';
import { decodeKmsBlob, encodeKmsBlob } from '../../src/envelope/codec.js';
import { type KmsBlob, KmsBlobLimits } from '../../src/envelope/kms-blob.js';
import { InvalidArgumentError, MalformedEnvelopeError } from '../../src/errors.js';
import { ContextEntry, KMSBlob } from '../../src/generated/kms_blob_generated.js';
import { sampleBlob } from '../helpers/blobs.js';

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

/** A copy of `fb` (without trailer) with a fresh valid CRC32C trailer. */
function withTrailer(fb: Uint8Array): Uint8Array {
  const out = new Uint8Array(fb.length + 4);
  out.set(fb);
  new DataView(out.buffer).setUint32(fb.length, crc32c(fb), true);
  return out;
}

/** No C0 control characters or DEL (the codec refuses them in text fields). */
const noControl = (s: string) => ![...s].some((c) => c.charCodeAt(0) < 0x20 || c.charCodeAt(0) === 0x7f);

const blobArb: fc.Arbitrary<KmsBlob> = fc
  .record({
    kmsName: fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9._-]{0,40}$/).filter((s) => !s.includes('..')),
    provider: fc.constantFrom('none', 'local', 'aws', 'aws-kms', 'gcp-kms', 'azure-kv', 'my-plugin2'),
    keyId: fc.string({ maxLength: 300, unit: 'grapheme' }).filter(noControl),
    region: fc.stringMatching(/^[a-z0-9-]{0,20}$/),
    wrappedKek: fc.uint8Array({ maxLength: 600 }),
    version: fc.integer({ min: 1, max: KmsBlobLimits.maxVersion }),
    createdAt: fc.integer({ min: 0, max: KmsBlobLimits.maxTimestamp }),
    indexName: fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9._-]{0,60}$/).filter((s) => !s.includes('..')),
    encryptionContext: fc.dictionary(
      fc.string({ minLength: 1, maxLength: 20 }).filter((s) => noControl(s) && s !== '__proto__'),
      fc.string({ maxLength: 40 }).filter(noControl),
      { maxKeys: 5 },
    ),
    schemaVersion: fc.constant(1),
    updatedAt: fc.integer({ min: 0, max: KmsBlobLimits.maxTimestamp }),
    kekCheck: fc.option(fc.uint8Array({ minLength: 1, maxLength: 32 }), { nil: undefined }),
  })
  .map((b) => ({ ...b, updatedAt: Math.max(b.createdAt, b.updatedAt) }));

/** The context sorted by key, as decode returns it (JS objects keep insertion order). */
function normalized(blob: KmsBlob): KmsBlob {
  return {
    ...blob,
    encryptionContext: Object.fromEntries(
      Object.entries(blob.encryptionContext).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)),
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
        expect(g.schemaVersion()).toBe(1);
        expect(g.updatedAt()).toBe(BigInt(blob.updatedAt));
        expect(g.kekCheckArray() ?? undefined).toEqual(blob.kekCheck);
        const ctx: Record<string, string> = {};
        for (let i = 0; i < g.encryptionContextLength(); i++)
          ctx[g.encryptionContext(i)!.key()!] = g.encryptionContext(i)!.value()!;
        expect(ctx).toEqual(normalized(blob).encryptionContext);
      }),
      { numRuns: 500 },
    );
  });

  /** Builds a buffer with the flatc-generated builder (back to front, its own layout). */
  function buildWithFlatc(blob: KmsBlob, extra?: (b: Builder) => void): Uint8Array {
    const b = new Builder(256);
    const entries = Object.keys(blob.encryptionContext)
      .sort()
      .map((k) =>
        ContextEntry.createContextEntry(b, b.createString(k), b.createString(blob.encryptionContext[k]!)),
      );
    const ctx = entries.length ? KMSBlob.createEncryptionContextVector(b, entries) : 0;
    const strings = [blob.kmsName, blob.provider, blob.keyId, blob.region, blob.indexName].map((s) =>
      b.createString(s),
    );
    const wrapped = KMSBlob.createWrappedKekVector(b, blob.wrappedKek);
    const check = blob.kekCheck ? KMSBlob.createKekCheckVector(b, blob.kekCheck) : 0;
    KMSBlob.startKMSBlob(b);
    KMSBlob.addKmsName(b, strings[0]!);
    KMSBlob.addProvider(b, strings[1]!);
    KMSBlob.addKeyId(b, strings[2]!);
    KMSBlob.addRegion(b, strings[3]!);
    KMSBlob.addWrappedKek(b, wrapped);
    KMSBlob.addVersion(b, blob.version);
    KMSBlob.addCreatedAt(b, BigInt(blob.createdAt));
    KMSBlob.addIndexName(b, strings[4]!);
    if (ctx) KMSBlob.addEncryptionContext(b, ctx);
    KMSBlob.addUpdatedAt(b, BigInt(blob.updatedAt));
    if (check) KMSBlob.addKekCheck(b, check);
    extra?.(b);
    KMSBlob.finishKMSBlobBuffer(b, KMSBlob.endKMSBlob(b));
    return withTrailer(b.asUint8Array());
  }

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
    const bytes = buildWithFlatc(blob, (b) => b.addFieldInt32(14, 42, 0)); // slot 14: unknown to us
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
    ['schemaVersion', { schemaVersion: 2 }],
    ['wrappedKek size', { wrappedKek: new Uint8Array(KmsBlobLimits.maxWrappedKekBytes + 1) }],
    ['wrappedKek type', { wrappedKek: 'AAAA' as unknown as Uint8Array }],
    ['kekCheck empty', { kekCheck: new Uint8Array(0) }],
    ['context empty key', { encryptionContext: { '': 'x' } }],
    ['context value type', { encryptionContext: { a: 1 as unknown as string } }],
  ])('encode rejects an invalid %s with InvalidArgumentError', (_, override) => {
    expect(() => encodeKmsBlob(sampleBlob('orders', override as Partial<KmsBlob>))).toThrow(
      InvalidArgumentError,
    );
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
  it('has one per provider kind', () => {
    expect(kinds.sort()).toEqual(['aws', 'aws-kms', 'azure-kv', 'gcp-kms', 'local', 'none']);
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

describe('fuzzing the verifier (≥ 100,000 cases in total)', () => {
  const seeds = golden.map((g) => g.bytes);

  /** Mutations of a valid buffer: flips, byte sets, insertions, deletions, truncations, splices. */
  const mutated = fc
    .record({
      seed: fc.constantFrom(...seeds),
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
      let b = Array.from(seed);
      for (const op of ops) {
        const at = b.length ? op.at % b.length : 0;
        if (op.kind === 'flip') b[at] = (b[at] ?? 0) ^ (1 << (op.value % 8));
        else if (op.kind === 'set') b[at] = op.value;
        else if (op.kind === 'insert') b.splice(at, 0, ...Array(op.len).fill(op.value));
        else if (op.kind === 'delete') b.splice(at, op.len);
        else if (op.kind === 'truncate') b = b.slice(0, at);
        else b.splice(at, op.len, ...Array.from(seeds[op.value % seeds.length]!.subarray(0, op.len)));
      }
      return { original: seed, bytes: new Uint8Array(b) };
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
        if (result !== 'malformed') expect(encodeKmsBlob(result)).toEqual(original);
      }),
      { numRuns: 30_000 },
    );
  });

  it('behind the checksum: mutated FlatBuffers with a recomputed CRC are rejected or decode to a valid blob', () => {
    fc.assert(
      fc.property(mutated, ({ bytes }) => {
        const fb = bytes.subarray(0, Math.max(0, bytes.length - 4));
        const result = attempt(withTrailer(fb));
        if (result !== 'malformed') expect(() => encodeKmsBlob(result)).not.toThrow();
      }),
      { numRuns: 30_000 },
    );
  });
});
