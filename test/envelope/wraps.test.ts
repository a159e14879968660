import { describe, expect, it } from 'vitest';
import { decodeKmsBlob, encodeKmsBlob } from '../../src/envelope/codec.js';
import type { KmsBlob, KmsWrap } from '../../src/envelope/kms-blob.js';
import {
  checkPolicy,
  combinationsWith,
  combineShares,
  slotsOf,
  splitKek,
  wrapBindingOf,
  wrapsOf,
} from '../../src/envelope/wraps.js';
import { InvalidArgumentError, MalformedEnvelopeError } from '../../src/errors.js';
import { Kek } from '../../src/keys/kek.js';
import { parseIndexName, parseSlotName } from '../../src/names.js';
import { buildWithFlatc } from '../helpers/flatc-blob.js';

const wrap = (name: string, provider = 'local'): KmsWrap => ({
  kmsName: name,
  provider,
  keyId: `key-${name}`,
  region: '',
  wrappedKek: new Uint8Array([1, 2, 3]),
});

const base: KmsBlob = {
  kmsName: 'primary',
  provider: 'aws-kms',
  keyId: 'arn:k',
  region: 'eu-west-1',
  wrappedKek: new Uint8Array([7, 7, 7]),
  version: 3,
  createdAt: 1_700_000_000,
  updatedAt: 1_700_000_000,
  indexName: 'orders',
  encryptionContext: {},
  schemaVersion: 2,
  kekCheck: new Uint8Array(16).fill(5),
  creationId: new Uint8Array(16).fill(9),
  wraps: [wrap('second'), wrap('third', 'recipient')],
};

/** A buffer written by flatc's builder, with wraps as given (no value checks on the way). */
function flatc(blob: KmsBlob, wraps: readonly KmsWrap[], threshold?: number): Uint8Array {
  return buildWithFlatc({ ...blob, wraps, threshold });
}

describe('the wraps of an envelope: the rules a reader enforces', () => {
  it('a valid multi-wrap envelope decodes the same from our writer and from flatc', () => {
    expect(decodeKmsBlob(encodeKmsBlob(base))).toEqual(base);
    expect(decodeKmsBlob(flatc(base, base.wraps!))).toEqual({
      ...base,
      wraps: base.wraps!.map((w) => ({ ...w, region: '' })),
    });
    expect(slotsOf(base)).toEqual(['primary', 'second', 'third']);
    expect(wrapsOf(base).map((w) => [w.kmsName, w.share])).toEqual([
      ['primary', 1],
      ['second', 2],
      ['third', 3],
    ]);
  });

  it.each([
    [
      'more than 7 wraps',
      { ...base },
      Array.from({ length: 8 }, (_, i) => wrap(`w${i}`)),
      undefined,
      /wraps/,
    ],
    ['a slot named twice', base, [wrap('second'), wrap('second')], undefined, /same slot/],
    ['a wrap naming the primary slot', base, [wrap('primary')], undefined, /same slot/],
    ['a wrap of provider none', base, [wrap('x', 'none')], undefined, /none/],
    ['a bad wrap slot name', base, [wrap('../etc')], undefined, /kms_name/],
    ['a bad wrap provider id', base, [wrap('x', 'Bad_Provider')], undefined, /provider/],
    [
      'wraps in a schema 1 envelope',
      { ...base, schemaVersion: 1, creationId: undefined },
      [wrap('x')],
      undefined,
      /schema_version 1/,
    ],
    ['wraps without a KEK check', { ...base, kekCheck: undefined }, [wrap('x')], undefined, /kek_check/],
    ['a primary of provider none with wraps', { ...base, provider: 'none' }, [wrap('x')], undefined, /none/],
    ['a threshold in schema 2', base, [wrap('x')], 2, /threshold/],
    ['schema 3 without a threshold', { ...base, schemaVersion: 3 }, [wrap('x')], undefined, /threshold/],
    ['a threshold of 1', { ...base, schemaVersion: 3 }, [wrap('x')], 1, /threshold/],
    ['a threshold above the number of wraps', { ...base, schemaVersion: 3 }, [wrap('x')], 3, /threshold/],
  ])('refuses %s (both on read and on write)', (_, blob, wraps, threshold, message) => {
    const bytes = flatc(blob, wraps, threshold);
    expect(() => decodeKmsBlob(bytes)).toThrow(MalformedEnvelopeError);
    expect(() => decodeKmsBlob(bytes)).toThrow(message);
    expect(() =>
      encodeKmsBlob({ ...blob, wraps, ...(threshold === undefined ? {} : { threshold }) }),
    ).toThrow(/./);
  });

  it('every truncation of a multi-wrap envelope is malformed', () => {
    const bytes = encodeKmsBlob({ ...base, schemaVersion: 3, threshold: 2 });
    for (let n = 0; n < bytes.length; n++)
      expect(() => decodeKmsBlob(bytes.subarray(0, n))).toThrow(MalformedEnvelopeError);
  });

  it('the binding of each wrap: own slot, share number and, for a threshold, the policy', () => {
    const index = parseIndexName('orders');
    const anyOf = wrapBindingOf(index, parseSlotName('second'), base, 2, 3);
    expect(anyOf).toEqual({
      index,
      slot: 'second',
      encryptionContext: {},
      version: 3,
      creationId: base.creationId,
    });
    expect(wrapBindingOf(index, parseSlotName('second'), { ...base, threshold: 2 }, 2, 3).policy).toEqual({
      threshold: 2,
      shares: 3,
      share: 2,
    });
  });
});

describe('policies and Shamir shares of a KEK', () => {
  it('checkPolicy refuses what an envelope cannot hold', () => {
    expect(() => checkPolicy(['a', 'b'], undefined)).not.toThrow();
    expect(() => checkPolicy(['a', 'b', 'c'], 3)).not.toThrow();
    for (const [slots, k] of [
      [[], undefined],
      [['a', 'a'], undefined],
      [['a', 'b'], 1],
      [['a', 'b'], 3],
      [['a', 'b'], 2.5],
      [Array.from({ length: 9 }, (_, i) => `s${i}`), undefined],
    ] as const) {
      expect(() => checkPolicy(slots, k)).toThrow(InvalidArgumentError);
    }
  });

  it('any k of n shares recover the KEK; fewer, or one share changed, give another key', async () => {
    const kek = Kek.generate();
    const shares = await splitKek(kek, 5, 3);
    expect(shares).toHaveLength(5);
    for (const share of shares) expect(share.equals(kek)).toBe(false);
    const all = shares.map((y, i) => ({ share: i + 1, y }));
    for (const set of [
      [0, 1, 2],
      [0, 2, 4],
      [1, 3, 4],
      [4, 3, 2],
    ]) {
      const got = await combineShares(set.map((i) => all[i]!));
      expect(got.equals(kek)).toBe(true);
    }
    expect((await combineShares([all[0]!, all[1]!])).equals(kek)).toBe(false);
    const forged = { share: 2, y: Kek.generate() };
    expect((await combineShares([all[0]!, forged, all[2]!])).equals(kek)).toBe(false);
    // The x coordinate is the position: a share fed in at another position gives another key.
    expect((await combineShares([all[0]!, { share: 4, y: all[1]!.y }, all[2]!])).equals(kek)).toBe(false);
    for (const share of shares) share.zero();
  });

  it('combinationsWith lists each k-subset holding the given item once', () => {
    expect(combinationsWith(['a', 'b', 'c', 'd'], 2, 3)).toEqual([
      ['a', 'd'],
      ['b', 'd'],
      ['c', 'd'],
    ]);
    expect(combinationsWith(['a', 'b', 'c'], 3, 0)).toEqual([['b', 'c', 'a']]);
    expect(combinationsWith(['a'], 2, 0)).toEqual([]);
  });
});
