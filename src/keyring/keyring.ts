import type { CreateIndexOptions, KmsEnvelopeClient } from '../client.js';
import { decodeKmsBlob, encodeKmsBlob } from '../envelope/codec.js';
import type { KmsBlob } from '../envelope/kms-blob.js';
import { slotsOf } from '../envelope/wraps.js';
import {
  ConfigError,
  DecryptFailedError,
  EnvelopeExistsError,
  EnvelopeNotFoundError,
  InvalidArgumentError,
  KekMismatchError,
  MalformedTokenError,
  UnknownKeyError,
  VersionConflictError,
} from '../errors.js';
import { Dek } from '../keys/dek.js';
import { Kek } from '../keys/kek.js';
import { type IndexName, parseIndexName } from '../names.js';
import type { EnvelopeStore, RecordStore } from '../storage/store.js';
import { algorithm, recommendedDataAlg } from '../wire/algorithms.js';
import {
  type BindingContext,
  decryptString,
  encryptString,
  type FieldOptions,
  type KeyContext,
  type KeyContextResolver,
} from '../wire/fields.js';
import { formatEncryptedField, parseEncryptedField } from '../wire/format.js';
import {
  type DekId,
  type KekSlotId,
  newKekSlotId,
  newKeyId,
  parseDekId,
  parseKekSlotId,
} from '../wire/key-id.js';
import { canonicalJson } from '../wire/params.js';
import {
  type DekRecord,
  type DekState,
  decodeDekRecord,
  encodeDekRecord,
  KEK_SLOT_CONTEXT_KEY,
  META,
} from './records.js';

/** Options of {@link IndexKeyring}. */
export interface KeyringOptions {
  /** The caller's KEK, for envelopes of provider `none`. Not consumed. */
  readonly kek?: Kek;
  /** Deadline for KMS calls. */
  readonly signal?: AbortSignal;
  /** Clock in epoch seconds (tests). */
  readonly now?: () => number;
  /**
   * How long the keyring keeps the KEKs and DEKs it opened, in ms: by default the client's cache
   * TTL (`client.cacheTtlMs`), or 60 s when the client caches nothing. The next use after it
   * opens them again (one KMS unwrap of the KEK), so a KEK disabled in the KMS or an index
   * deleted by another instance stops working here within it, with or without an invalidation
   * feed. A client cache TTL of 0 (no expiry) makes the default `Infinity`: no age bound, so
   * only invalidations (and {@link IndexKeyring.clearCache}) drop them.
   */
  readonly maxAgeMs?: number;
  /**
   * How long a key the keyring dropped (at `maxAgeMs`, when the client reports the index
   * changed: see {@link KmsEnvelopeClient.onInvalidate}, or when the keyring itself is garbage
   * collected) stays usable by a caller that already holds it, in ms after the drop (after its
   * load settles, for a key still loading then), before it is zeroed; default 5000. A caller that
   * keeps a DEK's {@link KeyContext} past it gets InvalidArgumentError ("zeroed"), never another
   * key. {@link IndexKeyring.clearCache} zeroes at once.
   */
  readonly retireGraceMs?: number;
}

/** The keys a keyring opened, dropped together (at their max age, or on an invalidation). */
interface OpenedKeys {
  readonly keks: Map<string, Promise<Kek>>;
  readonly deks: Map<string, Promise<KeyContext>>;
  readonly expiresAt: number;
  timer?: ReturnType<typeof setTimeout>;
  retired: boolean;
}

/** setTimeout's longest delay; a longer max age is checked on use only. */
const MAX_TIMER_MS = 2_147_483_647;

/** Zeroes `key` after `graceMs` (at once for 0). */
function zeroLater(key: { zero(): void }, graceMs: number): void {
  if (graceMs <= 0) key.zero();
  else setTimeout(() => key.zero(), graceMs).unref();
}

/**
 * Drops `opened` (its maps emptied, so later users load again) and zeroes each of its keys
 * `graceMs` after the drop, or after its own load settles if it is still loading (a load that
 * fails has nothing to zero). Resolves once every load settled. Idempotent.
 */
function retireKeys(opened: OpenedKeys, graceMs: number): Promise<void> {
  opened.retired = true;
  clearTimeout(opened.timer);
  const keks = [...opened.keks.values()];
  const deks = [...opened.deks.values()];
  opened.keks.clear();
  opened.deks.clear();
  const ignore = () => {};
  return Promise.all([
    ...keks.map((k) => k.then((kek) => zeroLater(kek, graceMs), ignore)),
    ...deks.map((d) => d.then((context) => zeroLater(context.key, graceMs), ignore)),
  ]).then(ignore);
}

/** What a keyring leaves behind for its finalizer: it must not reference the keyring. */
interface KeyringRemains {
  unsubscribe: () => void;
  opened: OpenedKeys | undefined;
  graceMs: number;
}

/**
 * When a keyring is collected: unsubscribe it from its client, and retire the keys it had open
 * (zeroed after the grace: a caller may still hold one).
 */
const FINALIZE = new FinalizationRegistry<KeyringRemains>((remains) => {
  remains.unsubscribe();
  if (remains.opened !== undefined) void retireKeys(remains.opened, remains.graceMs);
});

/** What {@link IndexKeyring.listDeks} shows of a DEK (never the key). */
export interface DekInfo {
  /** The DEK's id, as in its wire tokens. */
  readonly id: DekId;
  /** Its algorithm (`A256GCM`, …). */
  readonly alg: string;
  /** Whether it encrypts, only decrypts, or neither. */
  readonly state: DekState;
  /** Whether it is the index's active DEK (the one new values are encrypted under). */
  readonly active: boolean;
  /** The KEK slot id its record is wrapped under. */
  readonly kekSlotId: KekSlotId;
  /** When it was created (ms since the epoch). */
  readonly createdAt: number;
}

/** Options of {@link IndexKeyring.rotateKek}. */
export interface RotateKekOptions {
  /** Called after each batch of re-wrapped DEK records. */
  readonly onProgress?: (done: number, total: number) => void;
  /** Report what would change and change nothing. */
  readonly dryRun?: boolean;
  /** The new KEK, for provider `none` (the caller keeps it); otherwise a random one is made. */
  readonly newKek?: Kek;
  /** Records re-wrapped per store write (default 256). */
  readonly batchSize?: number;
}

/** What {@link IndexKeyring.rotateKek} did (or, with `dryRun`, would do). */
export interface RotateKekReport {
  /** Whether this was a dry run (nothing written). */
  readonly dryRun: boolean;
  /** True when it picked up a rotation that an earlier run left unfinished. */
  readonly resumed: boolean;
  /** The KEK slot id the DEK records were under (undefined: the index had none). */
  readonly fromKekSlotId: KekSlotId | undefined;
  /** The KEK slot id they are under now (with `dryRun`: would be). */
  readonly toKekSlotId: KekSlotId | undefined;
  /** The DEKs re-wrapped by this run (with `dryRun`: the ones that would be). */
  readonly deks: readonly DekId[];
  /** How many DEK records this run re-wrapped (0 with `dryRun`). */
  readonly rewrapped: number;
  /** DEK records already under the new KEK (done by an earlier, interrupted run). */
  readonly alreadyDone: number;
  /** DEK records of the index. */
  readonly totalDeks: number;
  /** Envelope version after the rotation. */
  readonly version: number;
}

/** What {@link IndexKeyring.pruneStaleRecords} removed (or, with `dryRun`, would remove). */
export interface PruneReport {
  /** Whether this was a dry run (nothing removed). */
  readonly dryRun: boolean;
  /** DEK records of KEK slots no envelope names. */
  readonly deks: readonly DekId[];
  /** KEK-check records (`kek-check.<slot>`) of such slots. */
  readonly kekChecks: readonly string[];
  /** Whether `meta/active` named such a DEK (or one without a record) and was unset. */
  readonly active: boolean;
}

const KEK_CHECK_PLAINTEXT = Buffer.from('kms-envelope/kek-check/v1', 'utf8');
const WRAP_ALG = 'A256GCM';

interface Rotation {
  readonly slotId: KekSlotId;
  readonly envelope: KmsBlob;
  readonly fromSlotId: KekSlotId | undefined;
}

/**
 * The client's store as a RecordStore (every built-in store is one).
 * @throws ConfigError for a store that keeps no records.
 */
export function recordStoreOf(client: KmsEnvelopeClient, index?: string): EnvelopeStore & RecordStore {
  const store = client.store as EnvelopeStore & Partial<RecordStore>;
  if (typeof store.putRecord !== 'function') {
    throw new ConfigError(
      `the ${store.kind} store keeps no DEK records`,
      index === undefined ? {} : { index },
    );
  }
  return store as EnvelopeStore & RecordStore;
}

/** The KEK slot id an envelope names, if any. */
export function kekSlotOf(blob: KmsBlob): KekSlotId | undefined {
  const value = blob.encryptionContext[KEK_SLOT_CONTEXT_KEY];
  return value === undefined ? undefined : parseKekSlotId(value);
}

function bindingAad(parts: Record<string, string>): Buffer {
  return Buffer.from(canonicalJson(parts), 'utf8');
}

/** Wraps bytes under a KEK as a wire token whose segment 2 is the KEK slot id. */
function wrapUnderKek(kek: Kek, slot: KekSlotId, plaintext: Uint8Array, aad: Record<string, string>): string {
  const blob = algorithm(WRAP_ALG).encrypt(kek, plaintext, bindingAad(aad));
  return formatEncryptedField({ alg: WRAP_ALG, keyId: slot, params: { aad: 'ctx-v1' }, blob });
}

/** Opens a token made by {@link wrapUnderKek}. @throws MalformedTokenError, DecryptFailedError */
function unwrapUnderKek(kek: Kek, slot: KekSlotId, token: string, aad: Record<string, string>): Buffer {
  // Segment 2 of a wrapped record is a KEK slot id, parsed (and named in errors) as one.
  const field = parseEncryptedField(token, parseKekSlotId);
  if (field.keyId !== slot) throw new MalformedTokenError('wrapped record names another KEK slot');
  if (field.params.aad !== 'ctx-v1')
    throw new MalformedTokenError('wrapped record is not bound to its context');
  return algorithm(field.alg).decrypt(kek, field.blob, bindingAad(aad));
}

/**
 * The DEK layer of one index: data keys wrapped under the index's KEK and stored beside its
 * envelope, the active DEK for new values, a resolver from a token's DEK id to its key, the
 * KEK-check record, and crash-safe KEK rotation.
 *
 * The index's envelope names its KEK slot id in its encryption context
 * (`kms-envelope:kek-slot`); create the index with {@link IndexKeyring.createIndex}.
 */
export class IndexKeyring {
  /** The index this keyring serves. */
  readonly index: IndexName;
  readonly #client: KmsEnvelopeClient;
  readonly #store: EnvelopeStore & RecordStore;
  readonly #options: KeyringOptions;
  readonly #maxAgeMs: number;
  /** The open keys, where the finalizer finds them too. */
  readonly #remains: KeyringRemains;
  /** Provider `none`: the new KEK of a rotation, as passed to rotateKek. */
  #rotationKek: Kek | undefined;

  /**
   * @throws ConfigError when the client's store keeps no records; InvalidArgumentError for a
   * `maxAgeMs` that is not positive or a `retireGraceMs` that is negative or not finite.
   */
  constructor(client: KmsEnvelopeClient, index: string, options: KeyringOptions = {}) {
    this.index = parseIndexName(index);
    this.#client = client;
    this.#store = recordStoreOf(client, this.index);
    this.#options = options;
    // A client cache TTL of 0 means its entries never expire: so do the keyring's, by default.
    const ttl = client.cacheTtlMs;
    const maxAgeMs =
      options.maxAgeMs ?? (ttl === undefined ? 60_000 : ttl > 0 ? ttl : Number.POSITIVE_INFINITY);
    if (!(maxAgeMs > 0)) throw new InvalidArgumentError('maxAgeMs must be a positive number of ms');
    const graceMs = options.retireGraceMs ?? 5000;
    if (!(graceMs >= 0 && Number.isFinite(graceMs)))
      throw new InvalidArgumentError('retireGraceMs must be a finite number of ms, 0 or more');
    this.#maxAgeMs = maxAgeMs;
    // Held weakly: a keyring nobody uses any more is collected, and then unsubscribed.
    const self = new WeakRef(this);
    const unsubscribe = client.onInvalidate(
      () => {
        const keyring = self.deref();
        if (keyring !== undefined) keyring.#drop();
      },
      { index: this.index },
    );
    this.#remains = { unsubscribe, opened: undefined, graceMs };
    FINALIZE.register(this, this.#remains);
  }

  /** The keys opened now: a new set once the last one was dropped or reached its max age. */
  #keys(): OpenedKeys {
    const opened = this.#remains.opened;
    if (opened !== undefined && !opened.retired && Date.now() < opened.expiresAt) return opened;
    if (opened !== undefined) void retireKeys(opened, this.#remains.graceMs);
    const fresh: OpenedKeys = {
      keks: new Map(),
      deks: new Map(),
      expiresAt: Date.now() + this.#maxAgeMs,
      retired: false,
    };
    if (this.#maxAgeMs <= MAX_TIMER_MS) {
      // Zeroed at its age even if the keyring is not used again (the timer holds only the keys).
      const graceMs = this.#remains.graceMs;
      fresh.timer = setTimeout(() => void retireKeys(fresh, graceMs), this.#maxAgeMs);
      fresh.timer.unref();
    }
    this.#remains.opened = fresh;
    return fresh;
  }

  /** The client reported the index changed: drop the opened keys (zeroed after the grace). */
  #drop(): void {
    void this.#retireOpened(this.#remains.graceMs);
  }

  /** Retires the open keys (see {@link retireKeys}); the next use opens a new set. */
  #retireOpened(graceMs: number): Promise<void> {
    const opened = this.#remains.opened;
    this.#remains.opened = undefined;
    return opened === undefined ? Promise.resolve() : retireKeys(opened, graceMs);
  }

  /**
   * Creates an index ready for DEKs: its envelope (naming a new KEK slot id) and the KEK-check
   * record. Returns the keyring; the KEK itself is not returned (use `client.unwrap`).
   * @throws EnvelopeExistsError, and the client's errors.
   */
  static async createIndex(
    client: KmsEnvelopeClient,
    index: string,
    options: Pick<CreateIndexOptions, 'slot' | 'slots' | 'threshold' | 'encryptionContext'> & KeyringOptions,
  ): Promise<IndexKeyring> {
    const slotId = newKekSlotId();
    const keyring = new IndexKeyring(client, index, options);
    await keyring.#refuseLeftoverRecords();
    const kek = await client.createIndex(index, {
      ...(options.slot === undefined ? {} : { slot: options.slot }),
      // Several slots (one wraps each, or k of them a share each): the client's rules apply.
      ...(options.slots === undefined ? {} : { slots: options.slots }),
      ...(options.threshold === undefined ? {} : { threshold: options.threshold }),
      encryptionContext: { ...options.encryptionContext, [KEK_SLOT_CONTEXT_KEY]: slotId },
      ...(options.kek ? { kek: options.kek } : {}),
      ...(options.signal ? { signal: options.signal } : {}),
    });
    try {
      await keyring.#writeKekCheck(kek, slotId);
    } finally {
      kek.zero();
    }
    return keyring;
  }

  /**
   * Refuses to create an index over keyring records of an earlier creation (kept by
   * `delete(..., { keepRecords: true })`, or left by the delete of kms-envelope before 0.2, which
   * removed only the envelope): they are wrapped under a KEK that is gone, and an active DEK among
   * them would make every encrypt fail. Other records of the index (e.g. the `v2:` per-user keys)
   * do not count.
   * @throws EnvelopeExistsError naming what to do.
   */
  async #refuseLeftoverRecords(): Promise<void> {
    const deks = await this.#store.listRecords(this.index, 'dek');
    const meta = await this.#store.listRecords(this.index, 'meta');
    const owned = [...meta.keys()].some(
      (id) => id === META.active || id === META.rotation || id === META.kdf || id.startsWith('kek-check.'),
    );
    if (deks.size === 0 && !owned) return;
    try {
      await this.#store.get(this.index);
      return; // the index exists: the strict create says so itself
    } catch (err) {
      if (!(err instanceof EnvelopeNotFoundError)) return; // a corrupt envelope is there: likewise
    }
    throw new EnvelopeExistsError(
      'DEK records of an earlier creation of this index are still stored: push its saved envelope back, or delete the index (without keepRecords) to remove them',
      { index: this.index },
    );
  }

  /**
   * Checks `kek` against the KEK-check record of slot `slotId`.
   * @throws KekMismatchError for another KEK; MalformedTokenError for a corrupt record.
   */
  async verifyKek(kek: Kek, slotId: KekSlotId): Promise<void> {
    const record = await this.#store.getRecord(this.index, 'meta', META.kekCheck(slotId));
    if (record === undefined) {
      throw new ConfigError(`no KEK-check record for KEK slot ${slotId}`, { index: this.index });
    }
    let plaintext: Buffer;
    try {
      plaintext = unwrapUnderKek(kek, slotId, Buffer.from(record).toString('utf8'), {
        index: this.index,
        check: slotId,
      });
    } catch (err) {
      if (err instanceof DecryptFailedError) {
        throw new KekMismatchError('the KEK does not match the KEK-check record', {
          index: this.index,
          cause: err,
        });
      }
      throw err;
    }
    if (!plaintext.equals(KEK_CHECK_PLAINTEXT))
      throw new MalformedTokenError('KEK-check record holds another plaintext');
  }

  async #writeKekCheck(kek: Kek, slotId: KekSlotId): Promise<void> {
    const token = wrapUnderKek(kek, slotId, KEK_CHECK_PLAINTEXT, { index: this.index, check: slotId });
    await this.#store.putRecord(this.index, 'meta', META.kekCheck(slotId), Buffer.from(token, 'utf8'));
  }

  /** The KEK of slot `slotId`: the current envelope's, or a rotation's in progress; verified. */
  #kek(slotId: KekSlotId): Promise<Kek> {
    return cachedLoad(this.#keys().keks, slotId, () => this.#loadKek(slotId));
  }

  async #loadKek(slotId: KekSlotId): Promise<Kek> {
    const current = await this.#client.getEnvelope(this.index);
    let blob: KmsBlob | undefined = kekSlotOf(current) === slotId ? current : undefined;
    let supplied = this.#options.kek;
    if (blob === undefined) {
      const rotation = await this.#rotation();
      if (rotation?.slotId === slotId) {
        blob = rotation.envelope;
        supplied = this.#rotationKek; // provider `none`: the rotation's new KEK, not the current one
      }
    }
    if (blob === undefined) {
      throw new UnknownKeyError(
        slotId,
        `KEK slot ${slotId} is neither the current KEK nor a rotation in progress`,
        {
          index: this.index,
        },
      );
    }
    const kek = await this.#client.unwrapEnvelope(this.index, blob, {
      ...(supplied ? { kek: supplied } : {}),
      ...(this.#options.signal ? { signal: this.#options.signal } : {}),
    });
    try {
      await this.verifyKek(kek, slotId);
    } catch (err) {
      kek.zero();
      throw err;
    }
    return kek;
  }

  async #currentSlot(): Promise<KekSlotId> {
    const slot = kekSlotOf(await this.#client.getEnvelope(this.index));
    if (slot === undefined) {
      throw new ConfigError(
        'the envelope names no KEK slot id: create the index with IndexKeyring.createIndex',
        {
          index: this.index,
        },
      );
    }
    return slot;
  }

  async #rotation(): Promise<Rotation | undefined> {
    const raw = await this.#store.getRecord(this.index, 'meta', META.rotation);
    if (raw === undefined) return undefined;
    const parsed = JSON.parse(Buffer.from(raw).toString('utf8')) as {
      slotId: string;
      envelope: string;
      from?: string;
    };
    return {
      slotId: parseKekSlotId(parsed.slotId),
      envelope: decodeKmsBlob(Buffer.from(parsed.envelope, 'base64')),
      fromSlotId: parsed.from === undefined ? undefined : parseKekSlotId(parsed.from),
    };
  }

  /**
   * Creates a DEK (random, of `alg`), wraps it under the current KEK, stores its record and,
   * unless `activate` is false, makes it the active DEK for new values. The context returned is
   * the keyring's cached one: see {@link getDek} for how long it may be held.
   */
  async createDek(options: { alg?: string; activate?: boolean } = {}): Promise<KeyContext> {
    const alg = algorithm(options.alg ?? recommendedDataAlg());
    // The keys open now: if the index changes while this runs, the new DEK is not cached.
    const opened = this.#keys();
    // During a KEK rotation new DEKs go under the new KEK, so the rotation cannot miss them.
    const slotId = (await this.#rotation())?.slotId ?? (await this.#currentSlot());
    const kek = await this.#kek(slotId);
    const id = newKeyId();
    const key = Dek.generate(alg.keyLength);
    const record: DekRecord = {
      id,
      alg: alg.id,
      wrapped: wrapUnderKek(kek, slotId, key.expose(), { index: this.index, dek: id }),
      kekSlotId: slotId,
      state: 'enabled',
      createdAt: (this.#options.now ?? (() => Math.floor(Date.now() / 1000)))(),
    };
    if (!(await this.#store.createRecord(this.index, 'dek', id, encodeDekRecord(record)))) {
      throw new InvalidArgumentError(`DEK ${id} exists already`, { index: this.index });
    }
    if (options.activate !== false)
      await this.#store.putRecord(this.index, 'meta', META.active, Buffer.from(id));
    const context: KeyContext = { keyid: id, key, alg: alg.id };
    // Dropped meanwhile (another instance deleted or rotated the index): the caller has it for
    // the work at hand, zeroed after the grace like every dropped key; the next use loads again.
    if (opened.retired) zeroLater(key, this.#remains.graceMs);
    else opened.deks.set(id, Promise.resolve(context));
    return context;
  }

  /**
   * Creates `count` DEKs in one batched store write (none becomes active): for provisioning
   * many keys, e.g. one per tenant.
   */
  async createDeks(count: number, options: { alg?: string } = {}): Promise<KeyContext[]> {
    const alg = algorithm(options.alg ?? recommendedDataAlg());
    const slotId = (await this.#rotation())?.slotId ?? (await this.#currentSlot());
    const kek = await this.#kek(slotId);
    const createdAt = (this.#options.now ?? (() => Math.floor(Date.now() / 1000)))();
    const records = new Map<string, Uint8Array>();
    const contexts: KeyContext[] = [];
    for (let i = 0; i < count; i++) {
      const id = newKeyId();
      const key = Dek.generate(alg.keyLength);
      const wrapped = wrapUnderKek(kek, slotId, key.expose(), { index: this.index, dek: id });
      records.set(
        id,
        encodeDekRecord({ id, alg: alg.id, wrapped, kekSlotId: slotId, state: 'enabled', createdAt }),
      );
      contexts.push({ keyid: id, key, alg: alg.id });
    }
    await this.#store.putRecords(this.index, 'dek', records);
    return contexts;
  }

  async #record(id: DekId): Promise<DekRecord> {
    const raw = await this.#store.getRecord(this.index, 'dek', id);
    if (raw === undefined)
      throw new UnknownKeyError(id, `no DEK ${id} for this index`, { index: this.index });
    return decodeDekRecord(raw, id);
  }

  /**
   * The DEK `id` (unwrapped under its KEK, cached). Only a DEK that loaded is cached: a failed
   * load (store outage, KMS error, corrupt record) is forgotten, so the next call tries again.
   * The id is parsed to its canonical form before it becomes the cache key, so every accepted
   * spelling of one id shares one entry.
   *
   * The context is the keyring's, not a copy: use it for the work at hand and ask again for the
   * next (a cached lookup). Once the keyring drops it (at `maxAgeMs`, or when the client reports
   * the index changed) it is zeroed `retireGraceMs` later, and a holder then gets
   * InvalidArgumentError from it; a batch that runs longer asks per chunk, or uses
   * {@link encryptValue} / {@link decryptValue}, which look the key up on each call.
   * @throws InvalidKeyIdError, UnknownKeyError, KekMismatchError, and the store's errors.
   */
  getDek(id: string): Promise<KeyContext> {
    let dekId: DekId;
    try {
      dekId = parseDekId(id);
    } catch (err) {
      return Promise.reject(err);
    }
    return cachedLoad(this.#keys().deks, dekId, () => this.#loadDek(dekId));
  }

  async #loadDek(id: DekId): Promise<KeyContext> {
    const record = await this.#record(id);
    const kek = await this.#kek(record.kekSlotId);
    const bytes = unwrapUnderKek(kek, record.kekSlotId, record.wrapped, { index: this.index, dek: id });
    try {
      return { keyid: id, key: Dek.fromBytes(bytes, algorithm(record.alg).keyLength), alg: record.alg };
    } finally {
      bytes.fill(0);
    }
  }

  /**
   * Removes the records that no KEK of the index can open any more: DEK records and KEK-check
   * records of KEK slots that are neither the current envelope's nor a rotation's in progress,
   * and `meta/active` when it names such a DEK (or one with no record). These are what the delete
   * of kms-envelope before 0.2 left behind (it removed only the envelope), which made the index
   * created again show an old DEK as active and refuse to encrypt, and `rotateKek` refuse to run.
   * The values encrypted under those DEKs were already undecryptable: their KEK went with the
   * deleted envelope.
   *
   * Safe against concurrent writers: it reads the envelope and the rotation state before and after
   * listing and changes nothing if either moved (run it again); a KEK slot that is stale stays
   * stale (new slot ids are random), and `rotateKek` never rewrites a record of a stale slot.
   * @throws VersionConflictError when the index changed while it looked; ConfigError for an
   * envelope that names no KEK slot; and the store's errors.
   */
  async pruneStaleRecords(options: { readonly dryRun?: boolean } = {}): Promise<PruneReport> {
    const state = async () => {
      const envelope = await this.#client.getEnvelope(this.index);
      const rotation = await this.#store.getRecord(this.index, 'meta', META.rotation);
      return {
        envelope,
        key: `${envelope.version}/${Buffer.from(envelope.creationId ?? []).toString('hex')}/${rotation === undefined ? '' : Buffer.from(rotation).toString('base64')}`,
      };
    };
    const before = await state();
    const current = kekSlotOf(before.envelope);
    if (current === undefined) {
      throw new ConfigError('the envelope names no KEK slot id', { index: this.index });
    }
    const rotation = await this.#rotation();
    const live = new Set<string>([current]);
    if (rotation !== undefined) {
      live.add(rotation.slotId);
      if (rotation.fromSlotId !== undefined) live.add(rotation.fromSlotId);
    }
    const deks = await this.#store.listRecords(this.index, 'dek');
    const meta = await this.#store.listRecords(this.index, 'meta');
    const after = await state();
    if (after.key !== before.key) {
      // The envelope moved on (a rotation, a re-creation) or a KEK rotation started or finished.
      throw new VersionConflictError(
        before.envelope.version,
        after.envelope.version,
        { index: this.index },
        !sameBytes(before.envelope.creationId, after.envelope.creationId),
      );
    }
    const staleDeks = [...deks]
      .filter(([id, raw]) => !live.has(decodeDekRecord(raw, id).kekSlotId))
      .map(([id]) => parseDekId(id));
    const staleChecks = [...meta.keys()].filter(
      (id) => id.startsWith('kek-check.') && !live.has(id.slice('kek-check.'.length)),
    );
    const activeRaw = meta.get(META.active);
    const activeId = activeRaw === undefined ? undefined : Buffer.from(activeRaw).toString('utf8');
    const staleActive =
      activeId !== undefined && (!deks.has(activeId) || staleDeks.includes(activeId as DekId));
    if (!options.dryRun) {
      for (const id of staleDeks) {
        await this.#store.deleteRecord(this.index, 'dek', id);
        this.#remains.opened?.deks.delete(id);
      }
      for (const id of staleChecks) await this.#store.deleteRecord(this.index, 'meta', id);
      if (staleActive) await this.#store.deleteRecord(this.index, 'meta', META.active);
    }
    return { dryRun: !!options.dryRun, deks: staleDeks, kekChecks: staleChecks, active: staleActive };
  }

  /** Every DEK of the index, without keys. */
  async listDeks(): Promise<DekInfo[]> {
    const active = await this.#store.getRecord(this.index, 'meta', META.active);
    const activeId = active === undefined ? undefined : Buffer.from(active).toString('utf8');
    const records = await this.#store.listRecords(this.index, 'dek');
    return [...records].map(([id, raw]) => {
      const r = decodeDekRecord(raw, id);
      return {
        id: r.id,
        alg: r.alg,
        state: r.state,
        active: r.id === activeId,
        kekSlotId: r.kekSlotId,
        createdAt: r.createdAt,
      };
    });
  }

  /** Stops DEK `id` from encrypting new values (it still decrypts); unsets it as active. */
  async deactivateDek(id: string): Promise<void> {
    const record = await this.#record(parseDekId(id));
    await this.#store.putRecord(
      this.index,
      'dek',
      record.id,
      encodeDekRecord({ ...record, state: 'deactivated' }),
    );
    const active = await this.#store.getRecord(this.index, 'meta', META.active);
    if (active !== undefined && Buffer.from(active).toString('utf8') === record.id) {
      await this.#store.deleteRecord(this.index, 'meta', META.active);
    }
  }

  /**
   * The DEK new values are encrypted under (the keyring's context: see {@link getDek} for how
   * long it may be held). @throws UnknownKeyError when there is none.
   */
  async activeDek(): Promise<KeyContext> {
    const active = await this.#store.getRecord(this.index, 'meta', META.active);
    if (active === undefined) {
      throw new UnknownKeyError('', 'this index has no active DEK: create one (dek create)', {
        index: this.index,
      });
    }
    return this.getDek(Buffer.from(active).toString('utf8'));
  }

  /** A resolver from a token's DEK id to its key context (unwrapping records, cached). */
  resolver(): KeyContextResolver {
    return (keyId) => this.getDek(keyId);
  }

  /** Encrypts `plaintext` under the active DEK. */
  async encryptValue(plaintext: string, options: FieldOptions = {}): Promise<string> {
    return encryptString(plaintext, await this.activeDek(), options);
  }

  /** Decrypts a token of this index, finding its DEK by the token's key id. */
  async decryptValue(token: string, options: FieldOptions = {}): Promise<string> {
    return decryptString(token, this.resolver(), options);
  }

  /** Forgets and zeroes the cached KEKs and DEKs. */
  clearCache(): Promise<void> {
    return this.#retireOpened(0);
  }

  /**
   * KEK rotation: a new KEK, every DEK record re-wrapped under it, then the envelope pushed with
   * compare-and-set (version + 1). DEKs and application ciphertext do not change.
   *
   * Crash-safe and resumable: the new envelope is first stored as a pending rotation record
   * (with the new KEK's check record), records are re-wrapped in batches (each record replaced
   * whole), and readers find a record's KEK by its slot id — the current envelope's or the
   * pending one's — so every value stays decryptable at every point. Running it again after a
   * crash finishes the same rotation.
   */
  async rotateKek(options: RotateKekOptions = {}): Promise<RotateKekReport> {
    const current = await this.#client.getEnvelope(this.index);
    const currentSlot = kekSlotOf(current);
    let rotation = await this.#rotation();
    const resumed = rotation !== undefined;
    this.#rotationKek = options.newKek;

    // An earlier run pushed the new envelope and stopped before cleaning up.
    if (rotation !== undefined && currentSlot === rotation.slotId) {
      const total = (await this.#store.listRecords(this.index, 'dek')).size;
      if (!options.dryRun) await this.#finishRotation(rotation);
      return report(
        !!options.dryRun,
        resumed,
        rotation.fromSlotId,
        rotation.slotId,
        [],
        total,
        total,
        current.version,
      );
    }
    if (options.dryRun) {
      const records = await this.#store.listRecords(this.index, 'dek');
      const pending = [...records].filter(
        ([id, raw]) => decodeDekRecord(raw, id).kekSlotId !== rotation?.slotId,
      );
      const ids = pending.map(([id]) => parseDekId(id));
      return report(
        true,
        resumed,
        currentSlot,
        rotation?.slotId,
        ids,
        records.size - ids.length,
        records.size,
        current.version + 1,
      );
    }
    if (rotation === undefined) rotation = await this.#startRotation(current, currentSlot, options.newKek);

    // Copies of its own: the keyring's are dropped (and zeroed) by an invalidation meanwhile,
    // which this rotation's own push causes.
    let oldKek: Kek | undefined;
    let newKek: Kek | undefined;
    try {
      if (currentSlot !== undefined) oldKek = Kek.fromBytes((await this.#kek(currentSlot)).expose());
      newKek = Kek.fromBytes((await this.#kek(rotation.slotId)).expose());
      return await this.#rewrapAndPush(options, current, currentSlot, rotation, resumed, oldKek, newKek);
    } finally {
      oldKek?.zero();
      newKek?.zero();
    }
  }

  async #rewrapAndPush(
    options: RotateKekOptions,
    current: KmsBlob,
    currentSlot: KekSlotId | undefined,
    rotation: Rotation,
    resumed: boolean,
    oldKek: Kek | undefined,
    newKek: Kek,
  ): Promise<RotateKekReport> {
    const target = rotation.slotId;
    const batchSize = options.batchSize ?? 256;
    const rewrapped: DekId[] = [];
    let alreadyDone = 0;
    let total = 0;
    // Listed after the rotation record exists, so a DEK created from now on is wrapped under
    // the new KEK (createDek prefers a rotation's slot); a final sweep below catches one created
    // just before.
    const rewrapAll = async (records: Map<string, Uint8Array>, progress: boolean) => {
      let batch = new Map<string, Uint8Array>();
      const flush = async () => {
        if (batch.size === 0) return;
        await this.#store.putRecords(this.index, 'dek', batch);
        for (const id of batch.keys()) rewrapped.push(parseDekId(id));
        batch = new Map();
        if (progress) options.onProgress?.(rewrapped.length + alreadyDone, total);
      };
      for (const [id, raw] of records) {
        const record = decodeDekRecord(raw, id);
        if (record.kekSlotId === target) {
          if (progress) alreadyDone++;
          continue;
        }
        if (record.kekSlotId !== currentSlot || oldKek === undefined) {
          throw new UnknownKeyError(record.kekSlotId, `DEK ${id} is wrapped under an unknown KEK slot`, {
            index: this.index,
          });
        }
        const dek = unwrapUnderKek(oldKek, currentSlot, record.wrapped, {
          index: this.index,
          dek: record.id,
        });
        try {
          const wrapped = wrapUnderKek(newKek, target, dek, { index: this.index, dek: record.id });
          batch.set(id, encodeDekRecord({ ...record, wrapped, kekSlotId: target }));
        } finally {
          dek.fill(0);
        }
        if (batch.size >= batchSize) await flush();
      }
      await flush();
    };
    const records = await this.#store.listRecords(this.index, 'dek');
    total = records.size;
    await rewrapAll(records, true);
    if (alreadyDone > 0 || total === 0) options.onProgress?.(rewrapped.length + alreadyDone, total);

    try {
      await this.#client.store.push(this.index, rotation.envelope, {
        expectedVersion: current.version,
        expectedCreationId: current.creationId ?? new Uint8Array(0),
      });
    } catch (err) {
      // Another run of the same rotation pushed it first: that is success.
      const now = await this.#client.getEnvelope(this.index);
      if (!(err instanceof VersionConflictError) || kekSlotOf(now) !== target) throw err;
    }
    this.#client.invalidate(this.index); // the client's cached KEK is the old one
    await rewrapAll(await this.#store.listRecords(this.index, 'dek'), false);
    await this.#finishRotation(rotation);
    return report(
      false,
      resumed,
      currentSlot,
      target,
      rewrapped,
      alreadyDone,
      total,
      rotation.envelope.version,
    );
  }

  async #startRotation(
    current: KmsBlob,
    currentSlot: KekSlotId | undefined,
    newKek: Kek | undefined,
  ): Promise<Rotation> {
    if (current.provider === 'none' && newKek === undefined) {
      throw new InvalidArgumentError('provider "none": pass the new KEK (newKek) to rotateKek', {
        index: this.index,
      });
    }
    const slotId = newKekSlotId();
    const kek = newKek === undefined ? Kek.generate() : Kek.fromBytes(newKek.expose());
    try {
      const envelope = await this.#client.prepareEnvelope(this.index, kek, {
        // Every wrap of the envelope, under the same policy: the new KEK is wrapped by each slot.
        slots: slotsOf(current),
        ...(current.threshold === undefined ? {} : { threshold: current.threshold }),
        version: current.version + 1,
        createdAt: current.createdAt,
        // The same creation: a new creation id would let the envelope it replaces be replayed
        // as "another creation" (docs/threat-model.md). A schema 1 envelope gets its first one.
        ...(current.creationId ? { creationId: current.creationId } : {}),
        encryptionContext: { ...current.encryptionContext, [KEK_SLOT_CONTEXT_KEY]: slotId },
      });
      await this.#writeKekCheck(kek, slotId);
      const record = JSON.stringify({
        slotId,
        envelope: Buffer.from(encodeKmsBlob(envelope)).toString('base64'),
        ...(currentSlot ? { from: currentSlot } : {}),
      });
      if (!(await this.#store.createRecord(this.index, 'meta', META.rotation, Buffer.from(record)))) {
        // Another process started a rotation first: continue that one.
        const other = await this.#rotation();
        if (other === undefined)
          throw new ConfigError('a rotation record appeared and vanished', { index: this.index });
        await this.#store.deleteRecord(this.index, 'meta', META.kekCheck(slotId));
        return other;
      }
      return { slotId, envelope, fromSlotId: currentSlot };
    } finally {
      kek.zero();
    }
  }

  async #finishRotation(rotation: Rotation): Promise<void> {
    if (rotation.fromSlotId !== undefined) {
      await this.#store.deleteRecord(this.index, 'meta', META.kekCheck(rotation.fromSlotId));
      const old = this.#remains.opened?.keks.get(rotation.fromSlotId);
      this.#remains.opened?.keks.delete(rotation.fromSlotId);
      old?.then((k) => k.zero()).catch(() => {});
    }
    await this.#store.deleteRecord(this.index, 'meta', META.rotation);
  }
}

function sameBytes(a: Uint8Array | undefined, b: Uint8Array | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  return Buffer.from(a).equals(Buffer.from(b));
}

/**
 * The cached load of `key`, started by `load` on a miss. Concurrent callers share one load; a
 * load that rejects is removed from `cache` (only if it is still the entry for `key`: a
 * `clearCache` and a newer load may have replaced it), so a failure is never served twice.
 * `key` must already be canonical: the same key both stores and removes the entry.
 */
function cachedLoad<K, V>(cache: Map<K, Promise<V>>, key: K, load: () => Promise<V>): Promise<V> {
  const cached = cache.get(key);
  if (cached !== undefined) return cached;
  let pending: Promise<V>;
  try {
    pending = load();
  } catch (err) {
    return Promise.reject(err);
  }
  cache.set(key, pending);
  pending.catch(() => {
    if (cache.get(key) === pending) cache.delete(key);
  });
  return pending;
}

function report(
  dryRun: boolean,
  resumed: boolean,
  fromKekSlotId: KekSlotId | undefined,
  toKekSlotId: KekSlotId | undefined,
  deks: DekId[],
  alreadyDone: number,
  totalDeks: number,
  version: number,
): RotateKekReport {
  return {
    dryRun,
    resumed,
    fromKekSlotId,
    toKekSlotId,
    deks,
    rewrapped: dryRun ? 0 : deks.length,
    alreadyDone,
    totalDeks,
    version,
  };
}

/** A resolver for `decryptString(token, keyctxResolver(keyring))`. */
export function keyctxResolver(keyring: IndexKeyring): KeyContextResolver {
  return keyring.resolver();
}

export type { BindingContext };
