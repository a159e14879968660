import { KMS_BLOB_SCHEMA_VERSION, type KmsBlob } from './envelope/kms-blob.js';
import { ConfigError, InvalidArgumentError, KekMismatchError, UnwrapFailedError } from './errors.js';
import { Kek } from './keys/kek.js';
import { kekCheckValue, kekMatchesCheck } from './keys/kek-check.js';
import { type IndexName, parseIndexName, parseSlotName, type SlotName } from './names.js';
import type { KmsProvider, WrapContext } from './providers/provider.js';
import { KmsRegistry, type KmsRegistryOptions } from './providers/registry.js';
import type { EnvelopeStore } from './storage/store.js';

/** Options of {@link KmsEnvelopeClient}. */
export interface KmsEnvelopeClientOptions {
  /** Where envelopes live (`StorageConfig.disk(...)`, `.redis(...)`, `.memory()`). */
  readonly store: EnvelopeStore;
  /** The KMS slots: a registry, or the options to build one. */
  readonly kms: KmsRegistry | KmsRegistryOptions;
  /** Store a KEK check value in new envelopes (default true), so a wrong KEK is told apart. */
  readonly kekCheck?: boolean;
  /** Clock in epoch seconds (tests). */
  readonly now?: () => number;
}

/** Options of {@link KmsEnvelopeClient.createIndex}. */
export interface CreateIndexOptions {
  /** The KMS slot that wraps the new KEK. */
  readonly slot: string;
  /** Extra context bound to the wrap and stored in the envelope. */
  readonly encryptionContext?: Readonly<Record<string, string>>;
  /** Use this KEK instead of a fresh random one (BYOK import); it is copied, not consumed. */
  readonly kek?: Kek;
  /** Deadline for the KMS call. */
  readonly signal?: AbortSignal;
}

/** Options of {@link KmsEnvelopeClient.unwrap}. */
export interface UnwrapOptions {
  /** The caller's KEK, for envelopes of provider `none`. */
  readonly kek?: Kek;
  /** Deadline for the KMS call. */
  readonly signal?: AbortSignal;
}

/** Options of {@link KmsEnvelopeClient.rotate}. */
export interface RotateOptions extends UnwrapOptions {
  /** Re-wrap under this slot instead of the envelope's current one. */
  readonly toSlot?: string;
}

/** Options of {@link KmsEnvelopeClient.prepareEnvelope}. */
export interface PrepareEnvelopeOptions {
  readonly slot: string;
  readonly version: number;
  readonly createdAt?: number;
  readonly encryptionContext?: Readonly<Record<string, string>>;
  readonly signal?: AbortSignal;
}

/** Re-reads the index's envelope, unwraps, checks, and the rest, for {@link KmsEnvelopeClient.verify}. */
export interface VerifyReport {
  readonly index: string;
  readonly slot: string;
  readonly provider: string;
  readonly version: number;
  /** Whether the envelope carries a KEK check value that the unwrapped KEK matched. */
  readonly kekChecked: boolean;
}

/**
 * The high-level API over one store and a set of KMS slots: create an index's envelope, unwrap
 * its KEK, rotate, delete. Every KEK it returns is the caller's to zero ({@link withKey}).
 *
 * @example
 * const client = new KmsEnvelopeClient({
 *   store: StorageConfig.disk('/var/lib/search/indexes'),
 *   kms: { slots: { dev: { provider: 'local', masterKey: 'env:KMS_MASTER_KEY' } } },
 * });
 * const kek = await client.createIndex('orders', { slot: 'dev' });
 */
export class KmsEnvelopeClient {
  /** The store envelopes live in. */
  readonly store: EnvelopeStore;
  /** The KMS slots. */
  readonly kms: KmsRegistry;
  readonly #kekCheck: boolean;
  readonly #now: () => number;

  constructor(options: KmsEnvelopeClientOptions) {
    this.store = options.store;
    this.kms = options.kms instanceof KmsRegistry ? options.kms : new KmsRegistry(options.kms);
    this.#kekCheck = options.kekCheck ?? true;
    this.#now = options.now ?? (() => Math.floor(Date.now() / 1000));
  }

  /**
   * Creates the envelope of a new index: a new random KEK (or `options.kek`), wrapped by the
   * slot, stored by strict insert. Returns the KEK (the caller zeroes it).
   * @throws EnvelopeExistsError if the index has an envelope; ConfigError for an unknown slot;
   * the provider's errors.
   */
  async createIndex(indexName: string, options: CreateIndexOptions): Promise<Kek> {
    const index = parseIndexName(indexName);
    const slot = parseSlotName(options.slot);
    const kek = options.kek === undefined ? Kek.generate() : Kek.fromBytes(options.kek.expose());
    try {
      const now = this.#now();
      const blob = await this.#wrapInto(kek, index, slot, options.encryptionContext ?? {}, options.signal, {
        version: 1,
        createdAt: now,
        updatedAt: now,
      });
      await this.store.create(index, blob);
      return kek;
    } catch (err) {
      kek.zero();
      throw err;
    }
  }

  /** The envelope of `indexName`, verified (its fields; no key). @throws EnvelopeNotFoundError */
  getEnvelope(indexName: string): Promise<KmsBlob> {
    return this.store.get(parseIndexName(indexName));
  }

  /**
   * Unwraps the KEK of `indexName` with the provider of the envelope's slot, and checks it
   * against the envelope's KEK check value. The caller zeroes the returned KEK.
   * @throws EnvelopeNotFoundError; UnwrapFailedError (wrong key, tampered or moved envelope);
   * KekMismatchError (a supplied KEK that is not the index's); the provider's errors.
   */
  async unwrap(indexName: string, options: UnwrapOptions = {}): Promise<Kek> {
    const index = parseIndexName(indexName);
    return this.#unwrapBlob(index, await this.store.get(index), options);
  }

  /**
   * Re-wraps the same KEK under the same or another slot: version + 1, pushed with
   * compare-and-set on the version read, so two rotators cannot lose an update (the loser gets
   * VersionConflictError and may retry). Returns the new envelope.
   */
  async rotate(indexName: string, options: RotateOptions = {}): Promise<KmsBlob> {
    const index = parseIndexName(indexName);
    const current = await this.store.get(index);
    const kek = await this.#unwrapBlob(index, current, options);
    try {
      const slot = parseSlotName(options.toSlot ?? current.kmsName);
      const next = await this.#wrapInto(kek, index, slot, current.encryptionContext, options.signal, {
        version: current.version + 1,
        createdAt: current.createdAt,
        updatedAt: Math.max(this.#now(), current.createdAt),
      });
      await this.store.push(index, next, { expectedVersion: current.version });
      return next;
    } finally {
      kek.zero();
    }
  }

  /**
   * Unwraps the KEK and reports what was checked, without returning the key.
   * @throws as {@link unwrap}.
   */
  async verify(indexName: string, options: UnwrapOptions = {}): Promise<VerifyReport> {
    const index = parseIndexName(indexName);
    const blob = await this.store.get(index);
    const kek = await this.#unwrapBlob(index, blob, options);
    kek.zero();
    return {
      index,
      slot: blob.kmsName,
      provider: blob.provider,
      version: blob.version,
      kekChecked: blob.kekCheck !== undefined,
    };
  }

  /**
   * Wraps `kek` for `indexName` with a slot into a new envelope, without storing it (for
   * multi-step operations such as KEK rotation, which push it later with compare-and-set).
   */
  async prepareEnvelope(indexName: string, kek: Kek, options: PrepareEnvelopeOptions): Promise<KmsBlob> {
    const index = parseIndexName(indexName);
    const now = this.#now();
    const createdAt = options.createdAt ?? now;
    return this.#wrapInto(
      kek,
      index,
      parseSlotName(options.slot),
      options.encryptionContext ?? {},
      options.signal,
      {
        version: options.version,
        createdAt,
        updatedAt: Math.max(now, createdAt),
      },
    );
  }

  /**
   * Unwraps the KEK of an envelope that was read or prepared (not necessarily the stored one),
   * checked against its KEK check value. The caller zeroes the returned KEK.
   */
  async unwrapEnvelope(indexName: string, blob: KmsBlob, options: UnwrapOptions = {}): Promise<Kek> {
    const index = parseIndexName(indexName);
    if (blob.indexName !== index) {
      throw new InvalidArgumentError('the envelope is bound to another index', { index, slot: blob.kmsName });
    }
    return this.#unwrapBlob(index, blob, options);
  }

  /** Deletes the envelope of `indexName`; a no-op when there is none. */
  delete(indexName: string): Promise<void> {
    return this.store.delete(parseIndexName(indexName));
  }

  /** Closes the providers and the store (a caller-supplied Redis client stays open). */
  async close(): Promise<void> {
    await this.kms.close();
    await this.store.close();
  }

  async #provider(slot: string, index: IndexName): Promise<KmsProvider> {
    try {
      return await this.kms.provider(slot);
    } catch (err) {
      if (err instanceof ConfigError && err.index === undefined) {
        throw new ConfigError(err.detail, { index, slot, provider: err.provider, cause: err });
      }
      throw err;
    }
  }

  async #wrapInto(
    kek: Kek,
    index: IndexName,
    slot: SlotName,
    encryptionContext: Readonly<Record<string, string>>,
    signal: AbortSignal | undefined,
    times: { version: number; createdAt: number; updatedAt: number },
  ): Promise<KmsBlob> {
    const provider = await this.#provider(slot, index);
    const context: WrapContext = { index, slot, encryptionContext, ...(signal ? { signal } : {}) };
    const wrapped = await provider.wrap(kek, context);
    return {
      kmsName: slot,
      provider: provider.id,
      keyId: wrapped.keyId,
      region: wrapped.region,
      // A plain copy, so the returned blob equals what a store reads back.
      wrappedKek: new Uint8Array(wrapped.wrappedKek),
      indexName: index,
      encryptionContext: { ...encryptionContext },
      schemaVersion: KMS_BLOB_SCHEMA_VERSION,
      // Provider `none` stores nothing key-derived but the check value, which is how a supplied
      // KEK is confirmed; for the others it tells a wrong KEK apart from corrupt data.
      kekCheck: this.#kekCheck || provider.id === 'none' ? kekCheckValue(kek) : undefined,
      ...times,
    };
  }

  async #unwrapBlob(index: IndexName, blob: KmsBlob, options: UnwrapOptions): Promise<Kek> {
    const where = { index, slot: blob.kmsName, provider: blob.provider };
    const provider = await this.#provider(blob.kmsName, index);
    if (provider.id !== blob.provider) {
      throw new UnwrapFailedError(
        `envelope was wrapped by provider "${blob.provider}" but the slot uses "${provider.id}"`,
        where,
      );
    }
    if (options.kek !== undefined && blob.provider !== 'none') {
      throw new InvalidArgumentError('a KEK can only be supplied for envelopes of provider "none"', where);
    }
    const kek = await provider.unwrap(blob, {
      index,
      slot: parseSlotName(blob.kmsName),
      encryptionContext: blob.encryptionContext,
      ...(options.signal ? { signal: options.signal } : {}),
      ...(options.kek ? { suppliedKek: options.kek } : {}),
    });
    if (blob.kekCheck !== undefined && !kekMatchesCheck(kek, blob.kekCheck)) {
      kek.zero();
      throw new KekMismatchError("the KEK does not match the envelope's KEK check value", where);
    }
    return kek;
  }
}
