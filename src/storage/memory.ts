import { encodeKmsBlob } from '../envelope/codec.js';
import type { KmsBlob } from '../envelope/kms-blob.js';
import { EnvelopeExistsError, EnvelopeNotFoundError } from '../errors.js';
import { type IndexName, parseIndexName } from '../names.js';
import { checkCas, checkWrite, decodeStored } from './bind.js';
import { checkRecordId } from './record-id.js';
import type { EnvelopeStore, PushOptions, RecordKind, RecordStore } from './store.js';

/**
 * An in-process store for tests and examples. It keeps encoded bytes (so a stored envelope is a
 * copy, and reads verify them like the other stores do). Operations are atomic because they run
 * to completion on the event loop.
 */
export class MemoryStore implements EnvelopeStore, RecordStore {
  readonly kind = 'memory';
  readonly description = 'memory:';
  readonly #envelopes = new Map<string, Uint8Array>();
  readonly #records = new Map<string, Map<string, Uint8Array>>();

  #recordsOf(index: IndexName, kind: RecordKind): Map<string, Uint8Array> {
    const key = `${parseIndexName(index)}\u0000${kind}`;
    let records = this.#records.get(key);
    if (records === undefined) {
      records = new Map();
      this.#records.set(key, records);
    }
    return records;
  }

  async putRecord(index: IndexName, kind: RecordKind, id: string, value: Uint8Array): Promise<void> {
    checkRecordId(kind, id);
    this.#recordsOf(index, kind).set(id, new Uint8Array(value));
  }

  async createRecord(index: IndexName, kind: RecordKind, id: string, value: Uint8Array): Promise<boolean> {
    checkRecordId(kind, id);
    const records = this.#recordsOf(index, kind);
    if (records.has(id)) return false;
    records.set(id, new Uint8Array(value));
    return true;
  }

  async putRecords(
    index: IndexName,
    kind: RecordKind,
    records: ReadonlyMap<string, Uint8Array>,
  ): Promise<void> {
    for (const id of records.keys()) checkRecordId(kind, id);
    const target = this.#recordsOf(index, kind);
    for (const [id, value] of records) target.set(id, new Uint8Array(value));
  }

  async getRecord(index: IndexName, kind: RecordKind, id: string): Promise<Uint8Array | undefined> {
    checkRecordId(kind, id);
    const value = this.#recordsOf(index, kind).get(id);
    return value === undefined ? undefined : new Uint8Array(value);
  }

  async listRecords(index: IndexName, kind: RecordKind): Promise<Map<string, Uint8Array>> {
    return new Map([...this.#recordsOf(index, kind)].map(([id, value]) => [id, new Uint8Array(value)]));
  }

  async deleteRecord(index: IndexName, kind: RecordKind, id: string): Promise<void> {
    checkRecordId(kind, id);
    this.#recordsOf(index, kind).delete(id);
  }

  async create(index: IndexName, blob: KmsBlob): Promise<void> {
    const name = checkWrite(index, blob);
    const bytes = encodeKmsBlob(blob);
    if (this.#envelopes.has(name))
      throw new EnvelopeExistsError('an envelope already exists', { index: name });
    this.#envelopes.set(name, bytes);
  }

  async push(index: IndexName, blob: KmsBlob, options: PushOptions = {}): Promise<void> {
    const name = checkWrite(index, blob);
    const bytes = encodeKmsBlob(blob);
    if (options.expectedVersion !== undefined) {
      const current = this.#envelopes.get(name);
      const stored = current === undefined ? undefined : decodeStored(name, current);
      checkCas(name, stored, options);
    }
    this.#envelopes.set(name, bytes);
  }

  async get(index: IndexName): Promise<KmsBlob> {
    const [name, bytes] = this.#stored(index);
    return decodeStored(name, bytes);
  }

  async getEncoded(index: IndexName): Promise<Uint8Array> {
    return Buffer.from(this.#stored(index)[1]);
  }

  /** The valid name and the stored bytes of `index`. @throws EnvelopeNotFoundError */
  #stored(index: IndexName): [IndexName, Uint8Array] {
    const name = parseIndexName(index);
    const bytes = this.#envelopes.get(name);
    if (bytes === undefined) throw new EnvelopeNotFoundError('no envelope stored', { index: name });
    return [name, bytes];
  }

  async delete(index: IndexName): Promise<void> {
    this.#envelopes.delete(parseIndexName(index));
  }

  async close(): Promise<void> {}

  /** Test hook: replaces the stored bytes of `index` as they are, to simulate corruption. */
  putRawForTesting(index: IndexName, bytes: Uint8Array): void {
    this.#envelopes.set(parseIndexName(index), new Uint8Array(bytes));
  }
}
