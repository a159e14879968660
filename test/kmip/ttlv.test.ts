/**
 * TTLV: the KMIP specification's encoding examples and PyKMIP's primitive vectors
 * (test/vectors/kmip/ttlv-primitives.json), whole messages from the KMIP 1.1 Test Cases
 * (test/vectors/kmip/messages.json), and fast-check properties: any item round-trips, and any
 * truncation or byte flip either fails with TtlvError or decodes to bytes that re-encode exactly.
 */
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  DEFAULT_MAX_TTLV_BYTES,
  decodeTtlv,
  encodeTtlv,
  findOne,
  MAX_TTLV_DEPTH,
  readTtlvHeader,
  requireOne,
  structure,
  TtlvError,
  type TtlvItem,
  type TtlvTypeName,
  textString,
} from '../../src/kmip/ttlv.js';

interface ItemJson {
  readonly tag: string;
  readonly type: TtlvTypeName;
  readonly value: unknown;
}

/** The vector files' JSON form of an item (see their `_about`). */
function itemFromJson(json: ItemJson): TtlvItem {
  const tag = Number.parseInt(json.tag, 16);
  switch (json.type) {
    case 'Structure':
      return { tag, type: 'Structure', value: (json.value as ItemJson[]).map(itemFromJson) };
    case 'LongInteger':
    case 'BigInteger':
    case 'DateTime':
      return { tag, type: json.type, value: BigInt(json.value as string) };
    case 'ByteString':
      return { tag, type: 'ByteString', value: Buffer.from(json.value as string, 'hex') };
    case 'Boolean':
      return { tag, type: 'Boolean', value: json.value as boolean };
    case 'TextString':
      return { tag, type: 'TextString', value: json.value as string };
    default:
      return { tag, type: json.type, value: json.value as number };
  }
}

function normalize(item: TtlvItem): unknown {
  if (item.type === 'Structure') return { tag: item.tag, type: item.type, value: item.value.map(normalize) };
  if (item.type === 'ByteString')
    return { tag: item.tag, type: item.type, value: Buffer.from(item.value).toString('hex') };
  return item;
}

const primitives = JSON.parse(
  readFileSync(new URL('../vectors/kmip/ttlv-primitives.json', import.meta.url), 'utf8'),
) as {
  valid: { name: string; hex: string; item: ItemJson }[];
  invalid: { name: string; hex: string }[];
};
const messages = JSON.parse(
  readFileSync(new URL('../vectors/kmip/messages.json', import.meta.url), 'utf8'),
) as {
  messages: { name: string; hex: string; checks: { path: string[]; type: TtlvTypeName; value: unknown }[] }[];
};

describe('TTLV vectors (KMIP spec §9.1.2 examples, PyKMIP primitive tests)', () => {
  it('has the rows', () => {
    expect(primitives.valid.length).toBeGreaterThanOrEqual(14);
    expect(primitives.invalid.length).toBeGreaterThanOrEqual(16);
  });
  for (const row of primitives.valid) {
    it(`decodes and encodes: ${row.name}`, () => {
      const bytes = Buffer.from(row.hex, 'hex');
      const expected = itemFromJson(row.item);
      expect(normalize(decodeTtlv(bytes))).toEqual(normalize(expected));
      expect(encodeTtlv(expected).toString('hex')).toBe(row.hex.toLowerCase());
    });
  }
  for (const row of primitives.invalid) {
    it(`refuses: ${row.name}`, () => {
      expect(() => decodeTtlv(Buffer.from(row.hex, 'hex'))).toThrow(TtlvError);
    });
  }
});

describe('KMIP messages (KMIP 1.1 Test Cases via PyKMIP)', () => {
  for (const row of messages.messages) {
    it(`decodes, re-encodes byte for byte and reads the fields: ${row.name}`, () => {
      const bytes = Buffer.from(row.hex, 'hex');
      const message = decodeTtlv(bytes);
      expect(encodeTtlv(message).equals(bytes)).toBe(true);
      expect(readTtlvHeader(bytes).totalLength).toBe(bytes.length);
      for (const check of row.checks) {
        let at: TtlvItem = message;
        for (const tag of check.path.slice(0, -1)) {
          const next = (at.type === 'Structure' ? at.value : []).find(
            (c) => c.tag === Number.parseInt(tag, 16),
          );
          expect(next, `path ${check.path.join('/')}`).toBeDefined();
          at = next!;
        }
        const leaf = requireOne(at, Number.parseInt(check.path.at(-1)!, 16), check.type);
        const value =
          leaf.type === 'ByteString'
            ? Buffer.from(leaf.value).toString('hex')
            : typeof leaf.value === 'bigint'
              ? leaf.value.toString()
              : leaf.value;
        expect(value).toEqual(check.value);
      }
    });
  }
});

describe('TTLV encoder checks its input', () => {
  it.each([
    ['tag without the 0x42 prefix', { tag: 0x430001, type: 'Integer', value: 1 }],
    ['Integer out of range', { tag: 0x420001, type: 'Integer', value: 2 ** 31 }],
    ['Integer not an integer', { tag: 0x420001, type: 'Integer', value: 1.5 }],
    ['negative Enumeration', { tag: 0x420001, type: 'Enumeration', value: -1 }],
    ['Long Integer out of range', { tag: 0x420001, type: 'LongInteger', value: 2n ** 63n }],
    ['unknown type', { tag: 0x420001, type: 'Float', value: 1 }],
  ])('%s', (_name, item) => {
    expect(() => encodeTtlv(item as TtlvItem)).toThrow(TtlvError);
  });

  it('padding is zeros and the Text String is UTF-8', () => {
    const bytes = encodeTtlv(textString(0x420020, 'é'));
    expect(bytes.toString('hex')).toBe('4200200700000002c3a9000000000000');
  });
});

describe('TTLV decoder bounds', () => {
  it('refuses input over the size limit without reading it', () => {
    const big = Buffer.alloc(DEFAULT_MAX_TTLV_BYTES + 8);
    expect(() => decodeTtlv(big)).toThrow(/exceeds the limit/);
    expect(() => decodeTtlv(Buffer.alloc(64), { maxBytes: 32 })).toThrow(TtlvError);
  });

  it('a length of 4 GiB is a typed error, not an allocation', () => {
    expect(() => decodeTtlv(Buffer.from('42002008ffffffff00', 'hex'))).toThrow(/truncated/);
  });

  it('nesting deeper than the limit is refused (no stack overflow)', () => {
    let item: TtlvItem = structure(0x420020, []);
    for (let i = 0; i < MAX_TTLV_DEPTH + 1; i++) item = structure(0x420020, [item]);
    expect(() => decodeTtlv(encodeTtlv(item))).toThrow(/nested deeper/);
    // A hostile 1 MiB of nested headers fails the same way.
    const hostile = Buffer.alloc(8 * 100_000);
    for (let i = 0; i < 100_000; i++) {
      hostile.writeUIntBE(0x420020, 8 * i, 3);
      hostile[8 * i + 3] = 1;
      hostile.writeUInt32BE(8 * (100_000 - i - 1), 8 * i + 4);
    }
    expect(() => decodeTtlv(hostile)).toThrow(TtlvError);
  });

  it('findOne refuses a duplicated or mistyped field', () => {
    const s = structure(0x420020, [textString(0x420094, 'a'), textString(0x420094, 'b')]);
    expect(() => findOne(s, 0x420094, 'TextString')).toThrow(/appears 2 times/);
    expect(() => findOne(structure(0x420020, [textString(0x420094, 'a')]), 0x420094, 'Integer')).toThrow(
      /not a Integer/,
    );
    expect(() => requireOne(structure(0x420020, []), 0x420094, 'TextString')).toThrow(/missing/);
  });
});

const tagArb = fc.oneof(
  fc.integer({ min: 0x420000, max: 0x42ffff }),
  fc.integer({ min: 0x540000, max: 0x54ffff }),
);
const leafArb: fc.Arbitrary<TtlvItem> = fc.oneof(
  fc.record({ tag: tagArb, type: fc.constant('Integer' as const), value: fc.integer() }),
  fc.record({
    tag: tagArb,
    type: fc.constant('LongInteger' as const),
    value: fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }),
  }),
  fc.record({
    tag: tagArb,
    type: fc.constant('BigInteger' as const),
    value: fc.bigInt({ min: -(2n ** 300n), max: 2n ** 300n }),
  }),
  fc.record({
    tag: tagArb,
    type: fc.constant('Enumeration' as const),
    value: fc.integer({ min: 0, max: 2 ** 32 - 1 }),
  }),
  fc.record({ tag: tagArb, type: fc.constant('Boolean' as const), value: fc.boolean() }),
  fc.record({
    tag: tagArb,
    type: fc.constant('TextString' as const),
    value: fc.string({ unit: 'grapheme', maxLength: 40 }),
  }),
  fc.record({
    tag: tagArb,
    type: fc.constant('ByteString' as const),
    value: fc.uint8Array({ maxLength: 40 }),
  }),
  fc.record({
    tag: tagArb,
    type: fc.constant('DateTime' as const),
    value: fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }),
  }),
  fc.record({
    tag: tagArb,
    type: fc.constant('Interval' as const),
    value: fc.integer({ min: 0, max: 2 ** 32 - 1 }),
  }),
);
const { item: itemArb } = fc.letrec<{ item: TtlvItem }>((tie) => ({
  item: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    leafArb,
    fc.record({
      tag: tagArb,
      type: fc.constant('Structure' as const),
      value: fc.array(tie('item'), { maxLength: 5 }),
    }),
  ),
}));

describe('TTLV properties (fast-check)', () => {
  it('any item round-trips: decode(encode(x)) = x', () => {
    fc.assert(
      fc.property(itemArb, (item) => {
        expect(normalize(decodeTtlv(encodeTtlv(item)))).toEqual(normalize(item));
      }),
      { numRuns: 2000 },
    );
  });

  it('any truncation fails with TtlvError', () => {
    fc.assert(
      fc.property(itemArb, fc.nat(), (item, cut) => {
        const bytes = encodeTtlv(item);
        const at = cut % bytes.length;
        expect(() => decodeTtlv(bytes.subarray(0, at))).toThrow(TtlvError);
      }),
      { numRuns: 2000 },
    );
  });

  it('any byte flip fails with TtlvError or decodes to other bytes that re-encode exactly (canonical)', () => {
    fc.assert(
      fc.property(itemArb, fc.nat(), fc.integer({ min: 1, max: 255 }), (item, pos, mask) => {
        const bytes = Buffer.from(encodeTtlv(item));
        bytes[pos % bytes.length]! ^= mask;
        let decoded: TtlvItem;
        try {
          decoded = decodeTtlv(bytes);
        } catch (err) {
          expect(err).toBeInstanceOf(TtlvError);
          return;
        }
        expect(encodeTtlv(decoded).equals(bytes)).toBe(true);
      }),
      { numRuns: 5000 },
    );
  });

  it('random bytes never crash the decoder', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 0, maxLength: 200 }), (bytes) => {
        try {
          const decoded = decodeTtlv(bytes);
          expect(encodeTtlv(decoded).equals(Buffer.from(bytes))).toBe(true);
        } catch (err) {
          expect(err).toBeInstanceOf(TtlvError);
        }
      }),
      { numRuns: 5000 },
    );
  });
});
