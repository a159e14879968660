// The structural verifier, one check at a time: each test breaks one thing in a valid envelope,
// recomputes the CRC32C trailer (so the checksum does not hide the structure check), and expects
// MalformedEnvelopeError naming that check. Offsets follow the layout that encodeKmsBlob writes
// (schemas/README.md, "Layout written by kms-envelope").

import { Builder } from 'flatbuffers';
import { describe, expect, it } from 'vitest';
import { decodeKmsBlob, encodeKmsBlob } from '../../src/envelope/codec.js';
import { type KmsBlob, KmsBlobLimits } from '../../src/envelope/kms-blob.js';
import { MalformedEnvelopeError } from '../../src/errors.js';
import { ContextEntry, KMSBlob } from '../../src/generated/kms_blob_generated.js';
import { sampleBlob } from '../helpers/blobs.js';
import { withTrailer } from '../helpers/flatc-blob.js';

const VTABLE = 8;
const TABLE = 36;
const entry = (slot: number) => VTABLE + 4 + 2 * slot;
/** Absolute positions of the inline fields in our layout. */
const at = {
  createdAtLow: TABLE + 4,
  createdAtHigh: TABLE + 8,
  updatedAt: TABLE + 12,
  version: TABLE + 20,
  kmsName: TABLE + 24,
  schemaVersion: TABLE + 56,
  firstString: TABLE + 60, // kms_name's length prefix
};
const slot = { keyId: 2, version: 5, createdAt: 6, indexName: 7, updatedAt: 10 };

// Schema 1: the layout the positions above describe (schema 2 adds creation_id and moves them).
const blob = sampleBlob('orders', {
  schemaVersion: 1,
  creationId: undefined,
  kmsName: 'dev',
  keyId: 'key-é',
  encryptionContext: { a: '1', b: '2' },
});

/** The FlatBuffer part (no trailer) of `source`, changed by `edit`, with a fresh CRC32C trailer. */
function patched(edit: (fb: Uint8Array, view: DataView) => void, source: KmsBlob = blob): Uint8Array {
  const stored = encodeKmsBlob(source);
  const fb = stored.slice(0, stored.length - 4);
  edit(fb, new DataView(fb.buffer));
  return withTrailer(fb);
}

function indexOf(haystack: Uint8Array, needle: string): number {
  return Buffer.from(haystack).indexOf(Buffer.from(needle));
}

function malformed(bytes: unknown, message: RegExp): void {
  let thrown: unknown;
  try {
    decodeKmsBlob(bytes as Uint8Array);
  } catch (err) {
    thrown = err;
  }
  expect(thrown).toBeInstanceOf(MalformedEnvelopeError);
  expect((thrown as Error).message).toMatch(message);
}

/** A flatc-built envelope with the given context entries, in the given order (no sorting). */
function flatcWithContext(entries: Array<[string, string]>): Uint8Array {
  const b = new Builder(256);
  const tables = entries.map(([k, v]) =>
    ContextEntry.createContextEntry(b, b.createString(k), b.createString(v)),
  );
  const ctx = KMSBlob.createEncryptionContextVector(b, tables);
  const name = b.createString('dev');
  const provider = b.createString('none');
  const index = b.createString('orders');
  const check = KMSBlob.createKekCheckVector(b, [1, 2, 3, 4]);
  KMSBlob.startKMSBlob(b);
  KMSBlob.addKmsName(b, name);
  KMSBlob.addProvider(b, provider);
  KMSBlob.addVersion(b, 1);
  KMSBlob.addCreatedAt(b, 10n);
  KMSBlob.addIndexName(b, index);
  KMSBlob.addEncryptionContext(b, ctx);
  KMSBlob.addKekCheck(b, check);
  KMSBlob.finishKMSBlobBuffer(b, KMSBlob.endKMSBlob(b));
  return withTrailer(b.asUint8Array());
}

describe('decode: frame', () => {
  it('rejects input that is not a Uint8Array', () => {
    for (const input of [null, undefined, 'KMSB', 42, [1, 2, 3], new ArrayBuffer(32), {}]) {
      malformed(input, /input is not a Uint8Array/);
    }
  });

  it('rejects too short and too large envelopes before anything else', () => {
    malformed(new Uint8Array(15), /too short/);
    malformed(new Uint8Array(KmsBlobLimits.maxEnvelopeBytes + 1), /too large/);
  });

  it('rejects a wrong checksum, and a foreign file identifier behind a right one', () => {
    const stored = encodeKmsBlob(blob);
    stored[stored.length - 1]! ^= 1;
    malformed(stored, /checksum does not match/);
    malformed(
      patched((fb) => fb.set([0x4b, 0x4d, 0x53, 0x43], 4)),
      /file identifier is not "KMSB"/,
    );
  });

  it('reads a Buffer at any byteOffset and returns plain copies, never views into the input', () => {
    const stored = encodeKmsBlob(blob);
    const pooled = Buffer.concat([Buffer.alloc(3), Buffer.from(stored)]).subarray(3);
    const decoded = decodeKmsBlob(pooled);
    expect(decoded).toEqual(blob);
    for (const bytes of [decoded.wrappedKek, decoded.kekCheck!]) {
      expect(Object.getPrototypeOf(bytes)).toBe(Uint8Array.prototype);
      expect(bytes.buffer).not.toBe(pooled.buffer);
    }
    pooled.fill(0);
    expect(decoded).toEqual(blob);
  });

  it('keeps working after a decoded byte field’s buffer was transferred (detached)', () => {
    const big = sampleBlob('orders', { wrappedKek: new Uint8Array(512).fill(7) });
    const first = decodeKmsBlob(encodeKmsBlob(big));
    const slab = first.wrappedKek.buffer as ArrayBuffer;
    structuredClone(slab, { transfer: [slab] });
    expect(first.wrappedKek.length).toBe(0); // detached: the caveat of decodeKmsBlob's TSDoc
    expect(decodeKmsBlob(encodeKmsBlob(big))).toEqual(big);
  });
});

describe('decode: tables and vtables', () => {
  it('rejects a root offset into the header, misaligned or out of bounds', () => {
    malformed(
      patched((_, v) => v.setUint32(0, 4, true)),
      /root offset points into the header/,
    );
    malformed(
      patched((_, v) => v.setUint32(0, TABLE + 2, true)),
      /root table is misaligned/,
    );
    malformed(
      patched((_, v) => v.setUint32(0, 1 << 20, true)),
      /root table is out of bounds/,
    );
  });

  it('rejects a vtable out of bounds, misaligned or of a bad size', () => {
    malformed(
      patched((_, v) => v.setInt32(TABLE, -4096, true)),
      /vtable of root table is out of bounds/,
    );
    malformed(
      patched((_, v) => v.setInt32(TABLE, TABLE - VTABLE + 1, true)),
      /vtable of root table is misaligned/,
    );
    malformed(
      patched((_, v) => v.setUint16(VTABLE, 27, true)),
      /vtable of root table has a bad size/,
    );
    malformed(
      patched((_, v) => v.setUint16(VTABLE, 2, true)),
      /vtable of root table has a bad size/,
    );
    malformed(
      patched((_, v) => v.setUint16(VTABLE, 0xfffe, true)),
      /vtable of root table is out of bounds/,
    );
    malformed(
      patched((_, v) => v.setUint16(VTABLE + 2, 2, true)),
      /root table has a bad size/,
    );
    malformed(
      patched((_, v) => v.setUint16(VTABLE + 2, 0xfff0, true)),
      /root table is out of bounds/,
    );
  });

  it('rejects fields outside their table, too wide for it, or misaligned', () => {
    malformed(
      patched((_, v) => v.setUint16(entry(slot.keyId), 2, true)),
      /key_id overlaps its table's vtable offset/,
    );
    malformed(
      patched((_, v) => v.setUint16(entry(slot.keyId), 60, true)),
      /key_id overruns its table/,
    );
    malformed(
      patched((_, v) => v.setUint16(entry(slot.createdAt), 56, true)),
      /created_at overruns its table/,
    );
    malformed(
      patched((_, v) => v.setUint16(entry(slot.createdAt), 8, true)),
      /created_at is misaligned/,
    );
    malformed(
      patched((_, v) => v.setUint16(entry(slot.keyId), 26, true)),
      /key_id is misaligned/,
    );
  });

  it('accepts a longer vtable (fields of a newer schema) but still bounds-checks the new entries', () => {
    // A 13th entry (creation_id since schema 2) now reads the first bytes of the table's soffset
    // as its field offset: a known field whose vector does not check out, so malformed.
    malformed(
      patched((_, v) => v.setUint16(VTABLE, 30, true)),
      /creation_id/,
    );
    // With a flatc-built buffer: an unknown field 15, then the same buffer with it pointing out.
    const b = new Builder(128);
    const s = b.createString('orders');
    const provider = b.createString('local');
    b.startObject(16); // startKMSBlob() has room for 15 fields: field 15 would be dropped

    KMSBlob.addKmsName(b, s);
    KMSBlob.addProvider(b, provider);
    KMSBlob.addVersion(b, 1);
    KMSBlob.addIndexName(b, s);
    b.addFieldInt32(15, 42, 0);
    KMSBlob.finishKMSBlobBuffer(b, KMSBlob.endKMSBlob(b));
    const fb = b.asUint8Array().slice();
    expect(decodeKmsBlob(withTrailer(fb)).indexName).toBe('orders');
    const view = new DataView(fb.buffer);
    const root = view.getUint32(0, true);
    const vtable = root - view.getInt32(root, true);
    expect(view.getUint16(vtable, true)).toBe(4 + 2 * 16);
    view.setUint16(vtable + 4 + 2 * 15, 0x7ff0, true);
    malformed(withTrailer(fb), /a field of root table is out of its table/);
  });
});

describe('decode: strings and vectors', () => {
  it('rejects zero, misaligned and out-of-bounds offsets', () => {
    malformed(
      patched((_, v) => v.setUint32(at.kmsName, 0, true)),
      /offset to kms_name is zero/,
    );
    malformed(
      patched((_, v) => v.setUint32(at.kmsName, 37, true)),
      /kms_name is misaligned/,
    );
    malformed(
      patched((_, v) => v.setUint32(at.kmsName, 1 << 20, true)),
      /kms_name is out of bounds/,
    );
  });

  it('rejects lengths over the limit or past the end, and a missing terminator', () => {
    malformed(
      patched((_, v) => v.setUint32(at.firstString, 129, true)),
      /kms_name is longer than 128 bytes/,
    );
    const keyIdAt = (fb: Uint8Array) => indexOf(fb, 'key-') - 4;
    malformed(
      patched((fb, v) => v.setUint32(keyIdAt(fb), 5000, true)),
      /key_id is out of bounds/,
    );
    malformed(
      patched((fb) => fb.set([0x78], at.firstString + 4 + 3)),
      /kms_name is not NUL-terminated/,
    );
  });

  it('rejects invalid UTF-8, control characters and DEL', () => {
    const e = (fb: Uint8Array) => Buffer.from(fb).indexOf(Buffer.from('é')); // C3 A9
    malformed(
      patched((fb) => fb.set([0x41], e(fb) + 1)),
      /key_id is not valid UTF-8/,
    );
    malformed(
      patched((fb) => fb.set([0xed, 0xa0], e(fb))),
      /key_id is not valid UTF-8/,
    ); // surrogate
    malformed(
      patched((fb) => fb.set([0x0a], indexOf(fb, 'key-'))),
      /key_id contains control characters/,
    );
    malformed(
      patched((fb) => fb.set([0x7f], indexOf(fb, 'key-'))),
      /key_id contains control characters/,
    );
    malformed(
      patched((fb) => fb.set([0x00], at.firstString + 4)),
      /kms_name contains control characters/,
    );
  });

  it('rejects a missing required field; reads a missing optional one as its default', () => {
    malformed(
      patched((_, v) => v.setUint16(entry(slot.indexName), 0, true)),
      /required field index_name is missing/,
    );
    expect(decodeKmsBlob(patched((_, v) => v.setUint16(entry(slot.keyId), 0, true))).keyId).toBe('');
  });

  it('reads an empty kek_check as absent', () => {
    const stored = patched((_, v) => {
      const kekCheck = TABLE + 52;
      v.setUint32(kekCheck + v.getUint32(kekCheck, true), 0, true);
    });
    expect(decodeKmsBlob(stored).kekCheck).toBeUndefined();
  });
});

describe('decode: values', () => {
  it('rejects version 0 and a missing version', () => {
    malformed(
      patched((_, v) => v.setUint32(at.version, 0, true)),
      /version must be a whole number from 1/,
    );
    malformed(
      patched((_, v) => v.setUint16(entry(slot.version), 0, true)),
      /version must be a whole number from 1/,
    );
  });

  it('rejects a schema_version from a newer kms-envelope, and 0; reads an absent one as 1', () => {
    malformed(
      patched((_, v) => v.setUint16(at.schemaVersion, 4, true)),
      /schema_version 4 was written by a newer kms-envelope/,
    );
    // Schema 2 binds a creation id: a schema 1 layout relabelled as 2 lacks it.
    malformed(
      patched((_, v) => v.setUint16(at.schemaVersion, 2, true)),
      /schema_version 2 needs a 16-byte creation_id/,
    );
    malformed(
      patched((_, v) => v.setUint16(at.schemaVersion, 0, true)),
      /schema_version 0 is not supported/,
    );
    expect(decodeKmsBlob(patched((_, v) => v.setUint16(entry(9), 0, true))).schemaVersion).toBe(1);
  });

  it('rejects negative, inexact and out-of-range timestamps', () => {
    malformed(
      patched((_, v) => v.setInt32(at.createdAtHigh, -1, true)),
      /created_at is out of range/,
    );
    malformed(
      patched((_, v) => v.setUint32(at.createdAtHigh, 0x20_0000, true)),
      /created_at is out of range/,
    );
    malformed(
      patched((_, v) => v.setUint32(at.createdAtHigh, 0x100, true)),
      /created_at must be whole epoch seconds/,
    );
    malformed(
      patched((_, v) => v.setUint32(at.updatedAt, 5, true)),
      /updated_at is before created_at/,
    );
  });

  it('reads an absent or zero updated_at (older writers) as created_at', () => {
    const absent = patched((_, v) => v.setUint16(entry(slot.updatedAt), 0, true));
    expect(decodeKmsBlob(absent).updatedAt).toBe(blob.createdAt);
    const zero = patched((_, v) => {
      v.setUint32(at.updatedAt, 0, true);
      v.setUint32(at.updatedAt + 4, 0, true);
    });
    expect(decodeKmsBlob(zero).updatedAt).toBe(blob.createdAt);
  });

  it('rejects names and provider ids that the encoder refuses', () => {
    malformed(
      patched((fb) => fb.set([0x2e, 0x2e], at.firstString + 4)),
      /kms_name is not a valid name/,
    );
    malformed(
      patched((fb) => fb.set([0x4c], indexOf(fb, 'local'))),
      /provider is not a valid provider id/,
    );
  });
});

describe('decode: encryption context', () => {
  it('requires keys strictly ascending by UTF-8 bytes', () => {
    // Swap the keys "a" and "b": out of order.
    const swapped = patched((fb) => {
      const a = indexOf(fb, '\u0001\u0000\u0000\u0000a\u0000') + 4;
      const b = indexOf(fb, '\u0001\u0000\u0000\u0000b\u0000') + 4;
      fb[a] = 0x62;
      fb[b] = 0x61;
    });
    malformed(swapped, /encryption_context keys are not strictly ascending/);
    const duplicate = patched((fb) => fb.set([0x61], indexOf(fb, '\u0001\u0000\u0000\u0000b\u0000') + 4));
    malformed(duplicate, /encryption_context keys are not strictly ascending/);
  });

  it('uses UTF-8 byte order, not JavaScript’s UTF-16 order', () => {
    // U+FFFF < U+10000 in code points and UTF-8 bytes; the reverse in UTF-16 code units.
    expect(
      decodeKmsBlob(
        flatcWithContext([
          ['\uffff', '1'],
          ['\u{10000}', '2'],
        ]),
      ).encryptionContext,
    ).toEqual({
      '\uffff': '1',
      '\u{10000}': '2',
    });
    malformed(
      flatcWithContext([
        ['\u{10000}', '2'],
        ['\uffff', '1'],
      ]),
      /not strictly ascending/,
    );
  });

  it('rejects an empty key, "__proto__", and too many entries', () => {
    malformed(flatcWithContext([['', 'x']]), /encryption_context has an empty key/);
    malformed(flatcWithContext([['__proto__', 'x']]), /encryption_context key "__proto__" is reserved/);
    const many = Array.from({ length: KmsBlobLimits.maxContextEntries + 1 }, (_, i): [string, string] => [
      `k${String(i).padStart(3, '0')}`,
      'v',
    ]);
    malformed(flatcWithContext(many), /encryption_context has too many entries/);
    expect(Object.keys(decodeKmsBlob(flatcWithContext(many.slice(1))).encryptionContext)).toHaveLength(64);
  });
});

describe('decode: error messages', () => {
  it('never show the bytes of wrapped_kek', () => {
    const secret = sampleBlob('orders', { wrappedKek: new Uint8Array(48).fill(0xab) });
    const stored = encodeKmsBlob(secret);
    const messages: string[] = [];
    for (let i = 0; i < stored.length; i++) {
      const copy = stored.slice();
      copy[i]! ^= 0x40;
      try {
        decodeKmsBlob(withTrailer(copy.subarray(0, copy.length - 4)));
      } catch (err) {
        messages.push((err as Error).message);
      }
    }
    expect(messages.length).toBeGreaterThan(0);
    for (const message of messages) expect(message).not.toMatch(/ab,|abab|q6ur|171/i);
  });
});
