import { randomBytes } from 'node:crypto';
import {
  CREATION_ID_LENGTH,
  KMS_BLOB_SCHEMA_VERSION,
  KMS_BLOB_THRESHOLD_SCHEMA_VERSION,
  type KmsBlob,
  type KmsWrap,
} from './envelope/kms-blob.js';
import {
  checkPolicy,
  isMultiWrap,
  slotsOf,
  splitKek,
  type WrapEntry,
  wrapBindingOf,
  wrapsOf,
} from './envelope/wraps.js';
import {
  AllWrapsFailedError,
  ConfigError,
  DeadlineExceededError,
  InvalidArgumentError,
  KekMismatchError,
  KmsEnvelopeError,
  RollbackError,
  SlotNotAllowedError,
  UnwrapFailedError,
} from './errors.js';
import { Kek } from './keys/kek.js';
import { kekCheckValue, kekMatchesCheck } from './keys/kek-check.js';
import { type IndexName, isValidName, parseIndexName, parseSlotName, type SlotName } from './names.js';
import type { KmsProvider, WrapContext, WrappedKek } from './providers/provider.js';
import { KmsRegistry, type KmsRegistryOptions } from './providers/registry.js';
import { slotServesIndex } from './providers/slot.js';
import { decodeStored } from './storage/bind.js';
import type { EnvelopeStore } from './storage/store.js';
import { tracedStore } from './storage/traced-store.js';
import type { InvalidationFeed } from './unwrap/invalidation.js';
import {
  bytesEqual,
  type CachedKek,
  cacheKey,
  indexOfKey,
  KekCache,
  type KekCacheOptions,
  sameEnvelope,
} from './unwrap/kek-cache.js';
import { callLeased, KekLease, runLeased } from './unwrap/kek-lease.js';
import { hasSyncUnwrap, KmsCaller, type KmsCallOptions, type KmsCallTarget } from './unwrap/kms-calls.js';
import { unwrapWraps, type WrapOutcome, type WrapUnwrapper } from './unwrap/multi-wrap.js';
import { type MeterLike, openTelemetryMeter, Telemetry, type UnwrapStats } from './unwrap/telemetry.js';
import { resolveTracer, type TracerLike } from './unwrap/tracing.js';

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
  /**
   * The cache of unwrapped KEKs used by {@link KmsEnvelopeClient.unwrap} (default on, TTL 60 s),
   * or `false` to unwrap with the KMS on every call.
   */
  readonly cache?: KekCacheOptions | false;
  /** Deadline, retries and circuit breaker of KMS calls. */
  readonly kmsCalls?: KmsCallOptions;
  /**
   * Where to record unwrap, cache and KMS metrics: an OpenTelemetry `Meter` (or anything shaped
   * like one), or `'opentelemetry'` for the meter `kms-envelope` of the global meter provider
   * (needs the optional peer `@opentelemetry/api`). Attributes name slot, provider, cache outcome
   * and error code, never an index's key material.
   */
  readonly meter?: MeterLike | 'opentelemetry';
  /**
   * Where to send spans of KMS calls (`kms-envelope.kms.wrap` / `unwrap` / `rewrap`, one per call,
   * retries as events) and of envelope store operations (`kms-envelope.store.get` / `create` /
   * `push` / `delete`): an OpenTelemetry `Tracer` (or anything shaped like one), or
   * `'opentelemetry'` for the tracer `kms-envelope` of the global tracer provider (needs the
   * optional peer `@opentelemetry/api`). Attributes name index, slot, provider, store kind and
   * outcome (an error code), never key material; a cache hit makes no span. Off by default, and
   * then free; when on, {@link KmsEnvelopeClient.store} is a traced view of `store`.
   */
  readonly tracing?: TracerLike | 'opentelemetry';
  /**
   * The lowest envelope version acceptable for an index, from a source the store's writers do
   * not control (your database, a config service): consulted before every unwrap of a stored
   * envelope that is not a cache hit; an envelope below it is refused (`RollbackError`) before
   * any KMS call. `undefined` for no floor. The client also keeps its own high-water mark per
   * index in memory (see {@link KmsEnvelopeClient.unwrap}); this source carries it across
   * restarts and instances.
   */
  readonly minVersion?: (index: string) => number | undefined | PromiseLike<number | undefined>;
  /**
   * A feed of changes other instances make to the shared store (`redisInvalidationFeed`, or your
   * own): a changed index is dropped from the cache at once, and a feed that may have missed
   * changes (a dropped connection) drops every cached KEK. The cache TTL stays the upper bound.
   * Started with the client; closed by {@link KmsEnvelopeClient.close}.
   */
  readonly invalidation?: InvalidationFeed;
}

/**
 * A listener of {@link KmsEnvelopeClient.onInvalidate}: the index whose envelope changed, or
 * `undefined` when it may be any index.
 */
export type IndexChangeListener = (index: IndexName | undefined) => void;

/** Calls each listener; one that throws is a process warning naming only its error's class. */
function notify(listeners: ReadonlySet<IndexChangeListener>, index: IndexName | undefined): void {
  for (const listener of listeners) {
    try {
      listener(index);
    } catch (err) {
      process.emitWarning(
        `an onInvalidate listener threw (${err instanceof Error ? err.name : typeof err})`,
        'KmsEnvelopeWarning',
      );
    }
  }
}

/** Options of {@link KmsEnvelopeClient.createIndex}. */
export interface CreateIndexOptions {
  /** The KMS slot that wraps the new KEK (or give {@link slots}). */
  readonly slot?: string;
  /**
   * Several slots that each wrap the new KEK (at most 8): the first is the primary wrap (the
   * envelope's own fields, which readers try first), the others go into the envelope's `wraps`.
   * An unwrap then succeeds through any one of them (or {@link threshold} of them). The primary
   * cannot be a slot that unwraps only offline (`recipient`).
   */
  readonly slots?: readonly string[];
  /**
   * With {@link slots}: split the KEK with Shamir's secret sharing so that any `threshold` of the
   * wraps (2 … slots.length) recover it and fewer reveal nothing. Absent: any one wrap suffices.
   */
  readonly threshold?: number;
  /** Extra context bound to the wrap and stored in the envelope. */
  readonly encryptionContext?: Readonly<Record<string, string>>;
  /** Use this KEK instead of a fresh random one (BYOK import); it is copied, not consumed. */
  readonly kek?: Kek;
  /** Deadline for the KMS call. */
  readonly signal?: AbortSignal;
}

/** Options of {@link KmsEnvelopeClient.unwrap}. */
export interface UnwrapOptions {
  /** The caller's KEK, for envelopes of provider `none` (never cached). */
  readonly kek?: Kek;
  /** Cache partition: KEKs of different tenants never share an entry. */
  readonly tenant?: string;
  /** Deadline for the KMS call. */
  readonly signal?: AbortSignal;
}

const NO_OPTIONS: UnwrapOptions = Object.freeze({});
/** An envelope without a creation id (schema 1), as compare-and-set compares it. */
const NO_CREATION_ID = new Uint8Array(0);

/** The highest version of an index this client has seen, and of which creation. */
interface HighWater {
  readonly version: number;
  readonly creationId: Uint8Array | undefined;
}

/** Whether two creation ids are the same (absent equals absent). Not secret. */
function sameCreation(a: Uint8Array | undefined, b: Uint8Array | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  return bytesEqual(a, b);
}
const SETTLED = Promise.resolve();
/** The `finish` of a caller that wants the leased entry itself. */
const asLeased = (entry: CachedKek) => entry;

/** An unwrap event of a cache miss. */
function missEvent(
  index: string,
  entry: { readonly blob: KmsBlob; readonly servedBy?: string | undefined } | undefined,
  started: number,
  outcome: string,
) {
  const blob = entry?.blob;
  return {
    index,
    slot: entry?.servedBy ?? blob?.kmsName ?? '',
    provider: blob?.provider ?? '',
    cache: 'miss' as const,
    durationMs: performance.now() - started,
    outcome,
  };
}

function codeOf(err: unknown): string {
  return err instanceof Error && 'code' in err ? String((err as { code: unknown }).code) : 'UNKNOWN';
}

/** Options of {@link KmsEnvelopeClient.rotate}. */
export interface RotateOptions extends UnwrapOptions {
  /** Re-wrap under this slot instead of the envelope's current (primary) one. */
  readonly toSlot?: string;
  /** Slots to add to the envelope's wraps (each then wraps the KEK too). */
  readonly addSlot?: string | readonly string[];
  /** Slots whose wraps leave the envelope (the primary's place goes to the next slot). */
  readonly removeSlot?: string | readonly string[];
  /**
   * A new policy: k of the wraps recover the KEK (2 … number of slots), or 0 for any one wrap.
   * Absent: the envelope's own policy.
   */
  readonly threshold?: number;
}

/** Options of {@link KmsEnvelopeClient.recover}. */
export interface RecoverOptions {
  /**
   * The offline private key of the break-glass slot, as its key file's bytes (`kms-envelope
   * keygen recipient`). The caller owns and zeroes it.
   */
  readonly privateKey: Uint8Array;
  /** The break-glass slot whose wrap to open; default: the envelope's first offline-only slot. */
  readonly slot?: string;
  /**
   * The slots to re-wrap the recovered KEK under, primary first; default: every slot of the
   * envelope (replace the ones that are gone).
   */
  readonly toSlots?: readonly string[];
  /**
   * The envelope's KEK check as recorded outside the store at create time (`kekCheck` of
   * `kms-envelope create --json` or `get --json`): when given, recovery refuses an envelope whose check differs, so a store
   * writer cannot make you adopt a KEK of their own (see docs/threat-model.md).
   */
  readonly expectedKekCheck?: Uint8Array;
  /** Deadline for the KMS calls. */
  readonly signal?: AbortSignal;
}

/** Options of {@link KmsEnvelopeClient.prepareEnvelope}. */
export interface PrepareEnvelopeOptions {
  /** The slot that wraps the KEK (or give {@link slots}). */
  readonly slot?: string;
  /** Several slots, as {@link CreateIndexOptions.slots}. */
  readonly slots?: readonly string[];
  /** The policy over {@link slots}, as {@link CreateIndexOptions.threshold}. */
  readonly threshold?: number;
  /** The new envelope's version (the current one + 1 for a rotation). */
  readonly version: number;
  /** Its creation time in epoch seconds (keep the current envelope's); default now. */
  readonly createdAt?: number;
  /**
   * The creation id of the envelope this one replaces (keep it across a rotation); a new random
   * one when absent (a new creation, or the upgrade of a schema 1 envelope).
   */
  readonly creationId?: Uint8Array;
  /** Extra context bound to the wrap and stored in the envelope. */
  readonly encryptionContext?: Readonly<Record<string, string>>;
  /** Deadline for the KMS calls. */
  readonly signal?: AbortSignal;
}

/** Re-reads the index's envelope, unwraps, checks, and the rest, for {@link KmsEnvelopeClient.verify}. */
export interface VerifyReport {
  /** The index verified. */
  readonly index: string;
  /** The envelope's (primary) slot. */
  readonly slot: string;
  /** The envelope's (primary) provider. */
  readonly provider: string;
  /** The envelope's version. */
  readonly version: number;
  /** Whether the envelope carries a KEK check value that the unwrapped KEK matched. */
  readonly kekChecked: boolean;
  /**
   * A multi-wrap envelope: how every wrap fared, each tried on its own (primary first). A wrap
   * that failed while the policy was still met does not fail `verify`; check `ok` here.
   */
  readonly wraps?: readonly WrapOutcome[];
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
  readonly #telemetry: Telemetry;
  readonly #cache: KekCache | undefined;
  /** Envelope reads not yet sent, per index (see {@link #readEncoded}). */
  readonly #pendingReads = new Map<IndexName, Promise<Uint8Array>>();
  readonly #caller: KmsCaller;
  /** The deadline of a KMS call, and of a whole multi-wrap unwrap. */
  readonly #deadlineMs: number;
  /** Providers the registry built, by slot (forgotten on close). */
  readonly #providers = new Map<string, KmsProvider>();
  /** Per index, the newest envelope this client unwrapped or wrote (see {@link unwrap}). */
  readonly #highWater = new Map<IndexName, HighWater>();
  readonly #minVersion: KmsEnvelopeClientOptions['minVersion'];
  readonly #feed: InvalidationFeed | undefined;
  readonly #feedStarted: Promise<void>;
  /** onInvalidate listeners of every index ... */
  readonly #listeners = new Set<IndexChangeListener>();
  /** ... and of one (a keyring's), so an invalidation costs what listens to its index. */
  readonly #indexListeners = new Map<IndexName, Set<IndexChangeListener>>();

  constructor(options: KmsEnvelopeClientOptions) {
    const tracer = resolveTracer(options.tracing);
    this.store = tracer === undefined ? options.store : tracedStore(options.store, tracer);
    this.kms = options.kms instanceof KmsRegistry ? options.kms : new KmsRegistry(options.kms);
    this.#kekCheck = options.kekCheck ?? true;
    this.#now = options.now ?? (() => Math.floor(Date.now() / 1000));
    this.#telemetry = new Telemetry(options.meter === 'opentelemetry' ? openTelemetryMeter() : options.meter);
    this.#cache =
      options.cache === false
        ? undefined
        : new KekCache(
            options.cache ?? {},
            (index, reason) => this.#telemetry.evicted(index, reason),
            // Refresh-ahead: keys are only ever made from valid index names.
            (key) => () => this.#load(indexOfKey(key) as IndexName, NO_OPTIONS),
          );
    this.#caller = new KmsCaller(options.kmsCalls ?? {}, this.#telemetry, tracer);
    this.#deadlineMs = options.kmsCalls?.deadlineMs ?? 3000;
    this.#minVersion = options.minVersion;
    this.#feed = options.invalidation;
    this.#feedStarted =
      this.#feed === undefined
        ? SETTLED
        : this.#feed
            .start({
              changed: (index) => {
                if (isValidName(index)) this.#invalidated(index as IndexName);
              },
              lost: () => this.#invalidated(undefined),
            })
            // Entries cached before the feed listened were not covered by it.
            .then(() => this.#invalidated(undefined));
    this.#feedStarted.catch(() => {}); // reported by invalidationReady()
  }

  /**
   * Resolves once the `invalidation` feed delivers changes (at once without a feed); rejects with
   * the feed's error if it could not start, in which case the cache relies on its TTL alone.
   */
  invalidationReady(): Promise<void> {
    return this.#feedStarted;
  }

  /**
   * Creates the envelope of a new index: a new random KEK (or `options.kek`), wrapped by the
   * slot, stored by strict insert. Returns the KEK (the caller zeroes it).
   * @throws EnvelopeExistsError if the index has an envelope; ConfigError for an unknown slot;
   * the provider's errors.
   */
  async createIndex(indexName: string, options: CreateIndexOptions): Promise<Kek> {
    const index = parseIndexName(indexName);
    const slots = slotsOption(options, index);
    const kek = options.kek === undefined ? Kek.generate() : Kek.fromBytes(options.kek.expose());
    try {
      const now = this.#now();
      const blob = await this.#wrapAll(
        kek,
        index,
        slots,
        options.threshold,
        options.encryptionContext ?? {},
        options.signal,
        { version: 1, createdAt: now, updatedAt: now, creationId: newCreationId() },
      );
      try {
        await this.store.create(index, blob);
      } catch (err) {
        // A write that failed with a retryable error may still have been applied (a paused Redis
        // answers after the timeout): if what is stored now is this very envelope, it was.
        if (!(err instanceof KmsEnvelopeError && err.retryable) || !(await this.#isStored(index, blob))) {
          throw err;
        }
      }
      this.#raiseHighWater(index, blob);
      return kek;
    } catch (err) {
      kek.zero();
      throw err;
    }
  }

  /** Whether the envelope stored for `index` is `blob` (same creation id and bytes that matter). */
  async #isStored(index: IndexName, blob: KmsBlob): Promise<boolean> {
    try {
      const stored = await this.store.get(index);
      return sameCreation(stored.creationId, blob.creationId) && sameEnvelope(stored, blob);
    } catch {
      // Still unreachable, or nothing stored: report the original error.
      return false;
    }
  }

  /** The envelope of `indexName`, verified (its fields; no key). @throws EnvelopeNotFoundError */
  getEnvelope(indexName: string): Promise<KmsBlob> {
    return this.store.get(parseIndexName(indexName));
  }

  /**
   * Unwraps the KEK of `indexName` with the provider of the envelope's slot, and checks it
   * against the envelope's KEK check value. Returns the caller's own copy: the caller zeroes it
   * ({@link withKey}). A cache hit costs a copy of the cached KEK; {@link withKek} and
   * {@link lease} borrow the cached KEK instead.
   * @throws EnvelopeNotFoundError; UnwrapFailedError (wrong key, tampered or moved envelope);
   * KekMismatchError (a supplied KEK that is not the index's); the provider's errors.
   */
  unwrap(indexName: string, options: UnwrapOptions = NO_OPTIONS): Promise<Kek> {
    const cache = this.#cache;
    if (cache !== undefined && options.kek === undefined && !cache.readEveryCall) {
      // The hot path, kept out of an async function. The name is checked before the lookup: a
      // key is only unambiguous for a valid index name (no NUL), whatever the tenant.
      const key = fastKey(indexName, options.tenant);
      const entry = key === undefined ? undefined : cache.get(key);
      if (entry !== undefined) {
        this.#telemetry.hit(indexName, entry);
        return Promise.resolve(Kek.fromBytes(entry.kek.expose()));
      }
      const joined = key === undefined || options.signal !== undefined ? undefined : cache.join(key);
      if (joined !== undefined) return this.#joined(indexName, joined).then(this.#copyAndRelease);
    } else if (cache !== undefined && options.kek === undefined) {
      return this.#acquireFresh(indexName, options, this.#copyAndRelease);
    }
    return this.#unwrapSlow(indexName, options);
  }

  /**
   * Runs `fn` with the KEK of `indexName` *borrowed* from the cache, without a copy: the
   * cheapest way to use a KEK per request. Resolves to what `fn` returns (or resolves to).
   *
   * Contract: the KEK is valid while `fn` runs and, if `fn` returns a promise, until it settles;
   * it must not be kept or zeroed by `fn`. An eviction, expiry or invalidation meanwhile defers
   * the zeroing until `fn` is done, so `fn` never sees the KEK zeroed or changed under it. With
   * the cache off (or a supplied KEK), `fn` gets a KEK of its own that is zeroed afterwards.
   *
   * @example
   * const plaintext = await client.withKek('orders', (kek) => decryptString(token, resolve(kek)));
   * @throws as {@link unwrap}, and whatever `fn` throws.
   */
  withKek<T>(
    indexName: string,
    fn: (kek: Kek) => T | PromiseLike<T>,
    options: UnwrapOptions = NO_OPTIONS,
  ): Promise<T> {
    const cache = this.#cache;
    if (cache !== undefined && options.kek === undefined && !cache.readEveryCall) {
      const key = fastKey(indexName, options.tenant);
      const entry = key === undefined ? undefined : cache.get(key);
      if (entry !== undefined) {
        this.#telemetry.hit(indexName, entry);
        return runLeased(cache, cache.acquire(entry), fn);
      }
      const joined = key === undefined || options.signal !== undefined ? undefined : cache.join(key);
      if (joined !== undefined) {
        return this.#joined(indexName, joined).then((leased) => callLeased(cache, leased, fn));
      }
    } else if (cache !== undefined && options.kek === undefined) {
      return this.#acquireFresh(indexName, options, (leased) => callLeased(cache, leased, fn));
    }
    return this.#withKekSlow(indexName, fn, options);
  }

  /**
   * A lease on the KEK of `indexName`: the cached KEK itself, borrowed until
   * {@link KekLease.release} (also `using lease = await client.lease(...)`). For code that needs
   * the KEK across several steps; {@link withKek} releases by itself.
   *
   * Contract: use `lease.kek` only until you release; do not keep or zero it. Eviction, expiry
   * or invalidation meanwhile defer the zeroing until the last lease on it is released. Release
   * every lease (a leaked lease keeps an evicted KEK in memory unzeroed until the process ends).
   * With the cache off (or a supplied KEK) the lease holds a KEK of its own, zeroed on release.
   * @throws as {@link unwrap}.
   */
  async lease(indexName: string, options: UnwrapOptions = NO_OPTIONS): Promise<KekLease> {
    const cache = this.#cache;
    if (cache === undefined || options.kek !== undefined) {
      const own = await this.#unwrapSlow(indexName, options);
      return new KekLease(own, () => own.zero());
    }
    const entry = await this.#acquire(parseIndexName(indexName), options);
    return new KekLease(entry.kek, () => cache.release(entry));
  }

  /** Hands a copy of a leased entry's KEK to an `unwrap` caller and ends the lease. */
  readonly #copyAndRelease = (entry: CachedKek): Kek => {
    try {
      return Kek.fromBytes(entry.kek.expose());
    } finally {
      this.#cache?.release(entry);
    }
  };

  /** A caller that joined a load in flight: counted as a coalesced miss. */
  #joined(index: string, joined: Promise<CachedKek>): Promise<CachedKek> {
    this.#telemetry.coalesced();
    if (!this.#telemetry.observed) {
      this.#telemetry.missed();
      return joined;
    }
    const started = performance.now();
    return joined.then(
      (entry) => {
        this.#telemetry.unwrapped(missEvent(index, entry, started, 'ok'));
        return entry;
      },
      (err: unknown) => {
        this.#telemetry.unwrapped(missEvent(index, undefined, started, codeOf(err)));
        throw err;
      },
    );
  }

  async #unwrapSlow(indexName: string, options: UnwrapOptions): Promise<Kek> {
    const index = parseIndexName(indexName);
    const cache = this.#cache;
    if (cache === undefined || options.kek !== undefined) {
      return this.#unwrapBlob(index, await this.store.get(index), options, true);
    }
    return this.#copyAndRelease(await this.#acquire(index, options));
  }

  async #withKekSlow<T>(indexName: string, fn: (kek: Kek) => T | PromiseLike<T>, options: UnwrapOptions) {
    const index = parseIndexName(indexName);
    const cache = this.#cache;
    if (cache === undefined || options.kek !== undefined) {
      const own = await this.#unwrapBlob(index, await this.store.get(index), options, true);
      try {
        return await fn(own);
      } finally {
        own.zero();
      }
    }
    return runLeased(cache, await this.#acquire(index, options), fn);
  }

  /**
   * A cached entry of `index` with a lease taken for the caller: a hit, a load joined, or a new
   * load. With `readEnvelope: 'every-call'` the stored envelope is read first and the cached KEK
   * used only if it came from that very envelope.
   */
  async #acquire(index: IndexName, options: UnwrapOptions): Promise<CachedKek> {
    const cache = this.#cache!;
    const key = cacheKey(index, checkTenant(options.tenant));
    if (!cache.readEveryCall) {
      const entry = cache.get(key);
      if (entry !== undefined) {
        this.#telemetry.hit(index, entry);
        return cache.acquire(entry);
      }
      const joined = cache.join(key);
      if (joined !== undefined) return this.#waitFor(index, this.#joined(index, joined), options.signal);
      // A shared load: it runs under the client's own deadline, never a caller's signal, which
      // abandons only that caller's wait.
      return this.#waitFor(
        index,
        this.#loadCounted(
          index,
          cache.load(key, () => this.#load(index, NO_OPTIONS)),
        ),
        options.signal,
      );
    }
    return this.#acquireFresh(index, options, asLeased);
  }

  /**
   * `leased` (an entry with a lease taken for this caller), or a `DeadlineExceededError` as soon
   * as the caller's `signal` aborts; the lease of an abandoned wait is released when it lands.
   */
  #waitFor(
    index: IndexName,
    leased: Promise<CachedKek>,
    signal: AbortSignal | undefined,
  ): Promise<CachedKek> {
    if (signal === undefined) return leased;
    const cache = this.#cache!;
    return new Promise<CachedKek>((resolve, reject) => {
      let waiting = true;
      const abort = () => {
        if (!waiting) return;
        waiting = false;
        reject(
          new DeadlineExceededError('the caller stopped waiting for the unwrap (signal aborted)', { index }),
        );
      };
      if (signal.aborted) abort();
      else signal.addEventListener('abort', abort, { once: true });
      leased.then(
        (entry) => {
          signal.removeEventListener('abort', abort);
          if (waiting) {
            waiting = false;
            resolve(entry);
          } else {
            cache.release(entry);
          }
        },
        (err: unknown) => {
          signal.removeEventListener('abort', abort);
          if (waiting) {
            waiting = false;
            reject(err);
          }
        },
      );
    });
  }

  /**
   * {@link #acquire} in `readEnvelope: 'every-call'` mode: reads the stored envelope and uses the
   * cached KEK only if it was unwrapped from that very envelope (else loads, single-flight).
   * Resolves to what `finish` makes of the leased entry (called in the read's own reaction on a
   * hit: no further promise).
   */
  #acquireFresh<T>(
    indexName: string,
    options: UnwrapOptions,
    finish: (leased: CachedKek) => T | PromiseLike<T>,
  ): Promise<T> {
    let index: IndexName;
    try {
      index = parseIndexName(indexName);
    } catch (err) {
      return Promise.reject(err);
    }
    const cache = this.#cache!;
    let key: string;
    try {
      key = cacheKey(index, checkTenant(options.tenant));
    } catch (err) {
      return Promise.reject(err);
    }
    if (this.store.getEncoded === undefined) {
      let read: Promise<KmsBlob>;
      try {
        read = this.store.get(index);
      } catch (err) {
        return Promise.reject(err); // a plugin store that throws instead of rejecting
      }
      return read.then((blob) =>
        this.#acquireFor(index, key, blob, undefined, cache.get(key), options).then(finish),
      );
    }
    // The stored bytes, compared with those the cached KEK came from: equal bytes are the same
    // envelope, so a hit costs the read and a comparison, no decode (and no await chain: the
    // hit is answered in the read's own reaction).
    return this.#readEncoded(index).then((encoded) => {
      const entry = cache.get(key);
      if (entry?.encoded !== undefined && bytesEqual(entry.encoded, encoded)) {
        this.#telemetry.hit(index, entry);
        return finish(cache.acquire(entry));
      }
      return this.#acquireFor(index, key, decodeStored(index, encoded), encoded, entry, options).then(finish);
    });
  }

  /**
   * The rest of {@link #acquireFresh} once the stored envelope `blob` is read (from `encoded`
   * when known), `entry` being what the cache held for `key` then.
   */
  async #acquireFor(
    index: IndexName,
    key: string,
    blob: KmsBlob,
    encoded: Uint8Array | undefined,
    entry: CachedKek | undefined,
    options: UnwrapOptions,
  ): Promise<CachedKek> {
    const cache = this.#cache!;
    if (entry !== undefined && sameEnvelope(entry.blob, blob)) {
      // The same envelope in other bytes (rewritten with a new timestamp, or loaded by a
      // refresh-ahead that read through get): compare with these from now on.
      if (encoded !== undefined) entry.encoded = ownBytes(encoded);
      this.#telemetry.hit(index, entry);
      return cache.acquire(entry);
    }
    if (entry !== undefined) cache.delete(key, 'changed');
    const joined = cache.join(key);
    const loaded = await this.#waitFor(
      index,
      joined !== undefined
        ? this.#joined(index, joined)
        : this.#loadCounted(
            index,
            cache.load(key, () => this.#loadFrom(index, blob, NO_OPTIONS, encoded)),
          ),
      options.signal,
    );
    if (sameEnvelope(loaded.blob, blob)) return loaded;
    // Joined a load of another version of the envelope. Loading again through the cache could
    // join yet another one, so unwrap the envelope this call read on its own, outside the cache:
    // an entry only this caller holds, zeroed when it releases it.
    cache.release(loaded);
    const own = await this.#loadCounted(index, this.#loadFrom(index, blob, options));
    own.leases = 1;
    own.retired = true;
    return own;
  }

  /**
   * The stored bytes of `index` for `readEnvelope: 'every-call'`. Calls made before the read is
   * sent (in the same microtask checkpoint: a burst of requests handled in one tick) share it,
   * and it is sent after every one of them started, so each still sees any change made before it
   * was called: a burst of N unwraps of one index costs one store read. They share its outcome
   * too (one store error rejects them all), and the read runs in the first caller's async
   * context (AsyncLocalStorage, tracing spans).
   */
  #readEncoded(index: IndexName): Promise<Uint8Array> {
    let read = this.#pendingReads.get(index);
    if (read === undefined) {
      const store = this.store as Required<Pick<EnvelopeStore, 'getEncoded'>>;
      // A plain promise reaction, not queueMicrotask (which carries async-hooks context).
      read = SETTLED.then(() => {
        // From now on a new caller needs a read of its own: this one may be older than its call.
        this.#pendingReads.delete(index);
        return store.getEncoded(index);
      });
      this.#pendingReads.set(index, read);
    }
    return read;
  }

  /** Telemetry of the caller that started a load. */
  async #loadCounted(index: IndexName, loading: Promise<CachedKek>): Promise<CachedKek> {
    const started = performance.now();
    try {
      const entry = await loading;
      this.#telemetry.unwrapped(missEvent(index, entry, started, 'ok'));
      return entry;
    } catch (err) {
      this.#telemetry.unwrapped(missEvent(index, undefined, started, codeOf(err)));
      throw err;
    }
  }

  /** Reads and unwraps for the cache. */
  async #load(index: IndexName, options: UnwrapOptions): Promise<CachedKek> {
    return this.#loadFrom(index, await this.store.get(index), options);
  }

  /**
   * Unwraps `blob` for the cache; re-reads the envelope once if the unwrap fails. `encoded`: the
   * stored bytes `blob` was decoded from, when known.
   */
  async #loadFrom(
    index: IndexName,
    first: KmsBlob,
    options: UnwrapOptions,
    encoded?: Uint8Array,
  ): Promise<CachedKek> {
    let blob = first;
    let unwrapped: { kek: Kek; servedBy?: string };
    try {
      unwrapped = await this.#unwrapServed(index, blob, options, true);
    } catch (err) {
      if (!(err instanceof UnwrapFailedError || err instanceof AllWrapsFailedError)) throw err;
      // The envelope may have been rotated by another process between read and unwrap.
      const again = await this.store.get(index);
      if (again.version === blob.version && again.kmsName === blob.kmsName) throw err;
      blob = again;
      encoded = undefined;
      unwrapped = await this.#unwrapServed(index, blob, options, true);
    }
    const { kek, servedBy } = unwrapped;
    return {
      kek,
      blob,
      ...(servedBy === undefined ? {} : { servedBy }),
      encoded: encoded && ownBytes(encoded),
      loadedAt: Date.now(),
      uses: 0,
      leases: 0,
      retired: false,
    };
  }

  /**
   * Drops the cached KEKs of `indexName` (every tenant), zeroing them (a KEK leased or borrowed
   * by `withKek` when its lease ends), and tells the {@link onInvalidate} listeners.
   */
  invalidate(indexName: string): void {
    this.#invalidated(parseIndexName(indexName));
  }

  /** Drops every cached KEK, zeroing them, and tells the {@link onInvalidate} listeners. */
  clearCache(): void {
    this.#invalidated(undefined);
  }

  /**
   * The cache's time to live in ms (`cache.ttlMs`, default 60 s; 0: entries never expire);
   * `undefined` with the cache off. An {@link IndexKeyring} keeps its keys no longer than this
   * by default.
   */
  get cacheTtlMs(): number | undefined {
    return this.#cache?.ttlMs;
  }

  /**
   * Calls `listener` whenever this client drops what it knows of an index's KEK: with the index
   * after a rotate or delete through this client, an {@link invalidate}, or the `invalidation`
   * feed's message that another instance changed the envelope; with `undefined` when it may be
   * any index ({@link clearCache}, the feed lost or (re)started, {@link close}). It runs whether
   * or not the client has a cache: for caches of your own that derive from a KEK
   * ({@link IndexKeyring} uses it). With `options.index`, only that index's changes and the
   * `undefined` ones reach `listener`. Listeners run synchronously, in the call or the feed
   * message that dropped the index: keep them quick. A listener that throws is reported as a
   * process warning (its error's name only) and does not stop the others.
   * @returns the function that unsubscribes `listener`.
   * @throws InvalidArgumentError for an invalid `options.index`.
   */
  onInvalidate(listener: IndexChangeListener, options: { readonly index?: string } = {}): () => void {
    if (options.index === undefined) {
      this.#listeners.add(listener);
      return () => {
        this.#listeners.delete(listener);
      };
    }
    const index = parseIndexName(options.index);
    let set = this.#indexListeners.get(index);
    if (set === undefined) {
      set = new Set();
      this.#indexListeners.set(index, set);
    }
    set.add(listener);
    return () => {
      const current = this.#indexListeners.get(index);
      current?.delete(listener);
      if (current?.size === 0) this.#indexListeners.delete(index);
    };
  }

  #invalidated(index: IndexName | undefined): void {
    if (index === undefined) this.#cache?.clear();
    else this.#cache?.invalidate(index);
    notify(this.#listeners, index);
    if (index !== undefined) {
      const set = this.#indexListeners.get(index);
      if (set !== undefined) notify(set, index);
    } else {
      for (const set of this.#indexListeners.values()) notify(set, index);
    }
  }

  /** Unwrap, cache and KMS-call numbers since the client was made. */
  stats(): UnwrapStats {
    return this.#telemetry.snapshot();
  }

  /**
   * Re-wraps the same KEK under the same or another slot: version + 1, pushed with
   * compare-and-set on the version read, so two rotators cannot lose an update (the loser gets
   * VersionConflictError and may retry). Returns the new envelope.
   */
  async rotate(indexName: string, options: RotateOptions = {}): Promise<KmsBlob> {
    const index = parseIndexName(indexName);
    const current = await this.store.get(index);
    if (
      isMultiWrap(current) ||
      options.addSlot !== undefined ||
      options.removeSlot !== undefined ||
      (options.threshold !== undefined && options.threshold !== 0)
    ) {
      return this.#rotateWraps(index, current, options);
    }
    if (options.toSlot === undefined || options.toSlot === current.kmsName) {
      const rewrapped = await this.#rewrapInSlot(index, current, options.signal);
      if (rewrapped !== undefined) return rewrapped;
    }
    const kek = await this.#unwrapBlob(index, current, options, true);
    try {
      // A schema 1 envelope is upgraded here: it gets a creation id, and the v2 binding.
      const slot = parseSlotName(options.toSlot ?? current.kmsName);
      return await this.#pushRewrapped(index, current, kek, [slot], undefined, options.signal);
    } finally {
      kek.zero();
    }
  }

  /**
   * Rotation of a multi-wrap envelope, or one that changes its slots or policy: the KEK is
   * unwrapped by the envelope's policy and wrapped again under every slot of the new set (a
   * threshold envelope gets fresh shares), version + 1, as one compare-and-set. In-KMS rewrap is
   * not used here: each slot wraps anew.
   */
  async #rotateWraps(index: IndexName, current: KmsBlob, options: RotateOptions): Promise<KmsBlob> {
    const where = { index };
    const slots = slotsOf(current);
    if (options.toSlot !== undefined) {
      // Another slot takes the primary's place; a slot that already wraps becomes the primary.
      const to = parseSlotName(options.toSlot);
      const at = slots.indexOf(to);
      if (at === -1) slots[0] = to;
      else slots.unshift(...slots.splice(at, 1));
    }
    for (const name of asList(options.removeSlot)) {
      const slot = parseSlotName(name);
      const at = slots.indexOf(slot);
      if (at === -1)
        throw new InvalidArgumentError(`slot "${slot}" has no wrap in the envelope to remove`, where);
      slots.splice(at, 1);
    }
    for (const name of asList(options.addSlot)) {
      const slot = parseSlotName(name);
      if (slots.includes(slot)) throw new InvalidArgumentError(`slot "${slot}" already wraps the KEK`, where);
      slots.push(slot);
    }
    if (slots.length === 0)
      throw new InvalidArgumentError('rotation would leave the envelope without a wrap', where);
    const threshold =
      options.threshold === undefined
        ? current.threshold
        : options.threshold === 0
          ? undefined
          : options.threshold;
    const kek = await this.#unwrapBlob(index, current, options, true);
    try {
      return await this.#pushRewrapped(
        index,
        current,
        kek,
        slots.map((slot) => parseSlotName(slot)),
        threshold,
        options.signal,
      );
    } finally {
      kek.zero();
    }
  }

  /**
   * Wraps `kek` under `slots` as the next version of `current` (same creation, version + 1) and
   * pushes it by compare-and-set on `current`. Returns the new envelope.
   */
  async #pushRewrapped(
    index: IndexName,
    current: KmsBlob,
    kek: Kek,
    slots: readonly SlotName[],
    threshold: number | undefined,
    signal: AbortSignal | undefined,
  ): Promise<KmsBlob> {
    const next = await this.#wrapAll(kek, index, slots, threshold, current.encryptionContext, signal, {
      version: current.version + 1,
      createdAt: current.createdAt,
      updatedAt: Math.max(this.#now(), current.createdAt),
      creationId: current.creationId ?? newCreationId(),
    });
    await this.#pushRotated(index, current, next);
    return next;
  }

  /**
   * Break-glass recovery: opens the envelope's wrap for an offline-only slot (`recipient`) with
   * its private key, checks the KEK against the envelope's KEK check (and
   * `expectedKekCheck`, when given), gathers the other shares online for a threshold envelope,
   * and wraps the KEK again under `toSlots` as the next version, by compare-and-set. Returns the
   * new envelope. Never part of the request path: an operator holds the private key.
   * @throws InvalidArgumentError (no such wrap, no KEK check); KekMismatchError (the wrap does not
   * open to the KEK the envelope records, or the check is not the expected one); the providers'
   * errors.
   */
  async recover(indexName: string, options: RecoverOptions): Promise<KmsBlob> {
    const index = parseIndexName(indexName);
    const current = await this.store.get(index);
    await this.#admitGeneration(index, current, true);
    const where = { index };
    if (current.kekCheck === undefined) {
      throw new InvalidArgumentError(
        'the envelope has no KEK check, so a recovered KEK could not be told from a forged one',
        where,
      );
    }
    if (options.expectedKekCheck !== undefined && !bytesEqual(options.expectedKekCheck, current.kekCheck)) {
      throw new KekMismatchError(
        "the envelope's KEK check is not the expected one: it was replaced since it was recorded",
        where,
      );
    }
    const entries = wrapsOf(current);
    let entry: WrapEntry | undefined;
    let provider: KmsProvider | undefined;
    for (const candidate of entries) {
      if (options.slot !== undefined && candidate.kmsName !== options.slot) continue;
      const p = await this.#provider(parseSlotName(candidate.kmsName), index).catch((err) => {
        if (options.slot !== undefined) throw err;
        return undefined;
      });
      if (p?.unwrapOffline !== undefined && p.id === candidate.provider) {
        entry = candidate;
        provider = p;
        break;
      }
      if (options.slot !== undefined) {
        throw new InvalidArgumentError(
          `slot "${options.slot}" is not an offline (recipient) slot of provider "${candidate.provider}"`,
          where,
        );
      }
    }
    if (entry === undefined || provider?.unwrapOffline === undefined) {
      throw new InvalidArgumentError(
        options.slot === undefined
          ? 'the envelope has no wrap of an offline (recipient) slot configured here'
          : `the envelope has no wrap of slot "${options.slot}"`,
        where,
      );
    }
    const context = wrapBindingOf(index, entry.kmsName as SlotName, current, entry.share, entries.length);
    const opened = await provider.unwrapOffline(entry, context, options.privateKey);
    let kek: Kek;
    if (current.threshold === undefined) {
      if (!kekMatchesCheck(opened, current.kekCheck)) {
        opened.zero();
        this.#telemetry.tampered({
          index,
          version: current.version,
          slots: [entry.kmsName],
          providers: [entry.provider],
          reason: 'kek-check',
        });
        throw new KekMismatchError("the recovered KEK does not match the envelope's KEK check", {
          ...where,
          slot: entry.kmsName,
          provider: entry.provider,
        });
      }
      kek = opened;
    } else {
      kek = (
        await unwrapWraps(index, current, this.#unwrapperFor(index), {
          signal: options.signal,
          deadlineMs: this.#deadlineMs,
          opened: { entry, kek: opened },
        })
      ).kek;
    }
    try {
      const slots = (options.toSlots ?? slotsOf(current)).map((slot) => parseSlotName(slot));
      const threshold =
        current.threshold !== undefined && slots.length >= current.threshold ? current.threshold : undefined;
      if (current.threshold !== undefined && threshold === undefined) {
        throw new InvalidArgumentError(
          `the envelope needs ${current.threshold} of its wraps: give at least ${current.threshold} slots to re-wrap under`,
          where,
        );
      }
      return await this.#pushRewrapped(index, current, kek, slots, threshold, options.signal);
    } finally {
      kek.zero();
    }
  }

  /** Compare-and-set of a rotation: on the version and the creation id read. */
  async #pushRotated(index: IndexName, current: KmsBlob, next: KmsBlob): Promise<void> {
    await this.store.push(index, next, {
      expectedVersion: current.version,
      expectedCreationId: current.creationId ?? NO_CREATION_ID,
    });
    this.#invalidated(index);
    this.#raiseHighWater(index, next);
  }

  /**
   * Rotation within the envelope's slot by a provider that can re-wrap inside its KMS (the
   * plaintext KEK never leaves it); `undefined` when the provider cannot. The envelope read is
   * admitted first exactly as for an unwrap (slot policy, rollback), since the client never sees
   * the KEK here to check it.
   */
  async #rewrapInSlot(
    index: IndexName,
    current: KmsBlob,
    signal: AbortSignal | undefined,
  ): Promise<KmsBlob | undefined> {
    const slot = parseSlotName(current.kmsName);
    const provider = this.#providers.get(slot) ?? (await this.#provider(slot, index));
    if (provider.rewrap === undefined || provider.id !== current.provider) return undefined;
    // Admitted only here: a rotate without rewrap admits through its unwrap, once.
    await this.#admit(index, current, true);
    const rewrap = provider.rewrap.bind(provider);
    const next: Omit<KmsBlob, 'keyId' | 'region' | 'wrappedKek'> = {
      ...current,
      version: current.version + 1,
      updatedAt: Math.max(this.#now(), current.createdAt),
      schemaVersion: KMS_BLOB_SCHEMA_VERSION,
      creationId: current.creationId ?? newCreationId(),
    };
    const from = wrapBindingOf(index, slot, current);
    const to = wrapBindingOf(index, slot, next);
    const wrapped = await this.#caller.run(
      { slot, provider: provider.id, index, operation: 'rewrap' },
      (deadline) => rewrap(current, { ...from, signal: deadline }, { ...to, signal: deadline }),
      signal,
    );
    const rotated: KmsBlob = {
      ...next,
      keyId: wrapped.keyId,
      region: wrapped.region,
      wrappedKek: new Uint8Array(wrapped.wrappedKek),
    };
    await this.#pushRotated(index, current, rotated);
    return rotated;
  }

  /**
   * Unwraps the KEK and reports what was checked, without returning the key.
   * @throws as {@link unwrap}.
   */
  async verify(indexName: string, options: UnwrapOptions = {}): Promise<VerifyReport> {
    const index = parseIndexName(indexName);
    const blob = await this.store.get(index);
    // Every wrap of a multi-wrap envelope is tried, so each one's outcome is known.
    const { kek, outcomes } = await this.#unwrapServed(index, blob, options, true, true);
    kek.zero();
    return {
      index,
      slot: blob.kmsName,
      provider: blob.provider,
      version: blob.version,
      kekChecked: blob.kekCheck !== undefined,
      ...(outcomes === undefined ? {} : { wraps: outcomes }),
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
    return this.#wrapAll(
      kek,
      index,
      slotsOption(options, index),
      options.threshold,
      options.encryptionContext ?? {},
      options.signal,
      {
        version: options.version,
        createdAt,
        updatedAt: Math.max(now, createdAt),
        creationId: options.creationId ?? newCreationId(),
      },
    );
  }

  /**
   * Unwraps the KEK of an envelope that was read or prepared (not necessarily the stored one),
   * checked against its KEK check value. The slot rules apply as for {@link unwrap}, and an
   * envelope older than one this client has seen is refused; the client's high-water mark is not
   * raised (the envelope may never be stored). The caller zeroes the returned KEK.
   */
  async unwrapEnvelope(indexName: string, blob: KmsBlob, options: UnwrapOptions = {}): Promise<Kek> {
    const index = parseIndexName(indexName);
    if (blob.indexName !== index) {
      throw new InvalidArgumentError('the envelope is bound to another index', { index, slot: blob.kmsName });
    }
    return this.#unwrapBlob(index, blob, options);
  }

  /**
   * Deletes everything the index owns: its DEK and meta records (DEK records, KEK-check records,
   * the active DEK, a pending KEK rotation, KDF parameters; when the store keeps records) and then
   * its envelope, and drops its cached KEK. Idempotent: deleting a missing index is a no-op, and
   * running it again after an interruption finishes it. Values encrypted under the index's DEKs
   * can no longer be decrypted afterwards.
   *
   * Records go first: while the envelope exists no one can create the index again, so a re-creation
   * can never have its new records removed by this delete. `{ keepRecords: true }` deletes only
   * the envelope (to push a saved envelope back later, which makes the records readable again);
   * `IndexKeyring.createIndex` refuses an index whose records were kept.
   */
  async delete(indexName: string, options: { readonly keepRecords?: boolean } = {}): Promise<void> {
    const index = parseIndexName(indexName);
    const store = this.store as EnvelopeStore & {
      listRecords?(index: IndexName, kind: 'dek' | 'meta'): Promise<Map<string, Uint8Array>>;
      deleteRecord?(index: IndexName, kind: 'dek' | 'meta', id: string): Promise<void>;
    };
    if (options.keepRecords !== true && typeof store.listRecords === 'function' && store.deleteRecord) {
      for (const kind of ['dek', 'meta'] as const) {
        const ids = [...(await store.listRecords(index, kind)).keys()];
        for (let i = 0; i < ids.length; i += 64) {
          await Promise.all(ids.slice(i, i + 64).map((id) => store.deleteRecord!(index, kind, id)));
        }
      }
    }
    await this.store.delete(index);
    this.#invalidated(index);
    // A creation made after this starts again at version 1, with a creation id of its own.
    this.#highWater.delete(index);
  }

  /** Closes the providers and the store (a caller-supplied Redis client stays open). */
  async close(): Promise<void> {
    this.#invalidated(undefined);
    this.#providers.clear();
    this.#caller.shutdown();
    await this.#feed?.close();
    await this.kms.close();
    await this.store.close();
  }

  async #provider(slot: string, index: IndexName): Promise<KmsProvider> {
    try {
      const provider = await this.kms.provider(slot);
      // Remembered so the unwrap path skips awaiting the registry's promise.
      this.#providers.set(slot, provider);
      return provider;
    } catch (err) {
      if (err instanceof ConfigError && err.index === undefined) {
        throw new ConfigError(err.detail, { index, slot, provider: err.provider, cause: err });
      }
      throw err;
    }
  }

  /**
   * Wraps `kek` into a new envelope under `slots` (the first is the primary) with `threshold`;
   * one slot without a threshold makes a single-wrap envelope ({@link #wrapInto}). The slots wrap
   * in parallel and all must succeed. A multi-wrap envelope always gets a KEK check: it is what
   * tells a good wrap from a forged one.
   */
  async #wrapAll(
    kek: Kek,
    index: IndexName,
    slots: readonly SlotName[],
    threshold: number | undefined,
    encryptionContext: Readonly<Record<string, string>>,
    signal: AbortSignal | undefined,
    generation: { version: number; createdAt: number; updatedAt: number; creationId: Uint8Array },
  ): Promise<KmsBlob> {
    if (slots.length === 1 && threshold === undefined) {
      return this.#wrapInto(kek, index, slots[0]!, encryptionContext, signal, generation);
    }
    checkPolicy(slots, threshold, index);
    const providers = await Promise.all(slots.map((slot) => this.#allowedProvider(index, slot)));
    refuseOfflinePrimary(providers[0]!, index, slots[0]!);
    for (const [i, provider] of providers.entries()) {
      if (provider.id === 'none') {
        throw new InvalidArgumentError(
          'a slot of provider "none" wraps nothing and cannot be one of several',
          {
            index,
            slot: slots[i],
          },
        );
      }
    }
    const online = providers.filter((provider) => provider.unwrapOffline === undefined).length;
    if (threshold !== undefined && online < threshold) {
      throw new InvalidArgumentError(
        `a threshold of ${threshold} needs at least ${threshold} slots that unwrap online (${online} here)`,
        { index },
      );
    }
    const shape = {
      encryptionContext,
      version: generation.version,
      creationId: generation.creationId,
      threshold,
    };
    const shares = threshold === undefined ? undefined : await splitKek(kek, slots.length, threshold);
    try {
      const wrapped = await Promise.all(
        slots.map((slot, i) => {
          const provider = providers[i]!;
          const context = wrapBindingOf(index, slot, shape, i + 1, slots.length);
          return this.#caller.run(
            { slot, provider: provider.id, index, operation: 'wrap' },
            (deadline) => provider.wrap(shares?.[i] ?? kek, { ...context, signal: deadline }),
            signal,
          );
        }),
      );
      const wraps: KmsWrap[] = wrapped.map((w, i) => ({
        kmsName: slots[i]!,
        provider: providers[i]!.id,
        keyId: w.keyId,
        region: w.region,
        wrappedKek: new Uint8Array(w.wrappedKek),
      }));
      const primary = wraps[0]!;
      return {
        kmsName: primary.kmsName,
        provider: primary.provider,
        keyId: primary.keyId,
        region: primary.region,
        wrappedKek: primary.wrappedKek,
        indexName: index,
        encryptionContext: { ...encryptionContext },
        schemaVersion: threshold === undefined ? KMS_BLOB_SCHEMA_VERSION : KMS_BLOB_THRESHOLD_SCHEMA_VERSION,
        kekCheck: kekCheckValue(kek),
        ...generation,
        creationId: new Uint8Array(generation.creationId),
        wraps: wraps.slice(1),
        threshold,
      };
    } finally {
      for (const share of shares ?? []) share.zero();
    }
  }

  /** What {@link unwrapWraps} needs, for unwraps of `index`. */
  #unwrapperFor(index: IndexName): WrapUnwrapper {
    return {
      admit: (entry) => this.#unwrapProvider(index, entry.kmsName, entry.provider),
      isOpen: (slot) => this.#caller.isOpen(slot),
      unwrap: (entry, provider, context, signal) =>
        this.#callUnwrap(
          { slot: entry.kmsName, provider: provider.id, index, operation: 'unwrap' },
          provider,
          entry,
          context,
          signal,
        ),
      telemetry: this.#telemetry,
    };
  }

  /**
   * One provider unwrap through the KMS call policy (deadline, retries, breaker); `suppliedKek`
   * for provider `none`.
   */
  #callUnwrap(
    target: KmsCallTarget,
    provider: KmsProvider,
    wrapped: WrappedKek,
    context: WrapContext,
    signal: AbortSignal | undefined,
    suppliedKek?: Kek,
  ): Promise<Kek> {
    return this.#caller.run(
      target,
      async (deadline) => {
        const unwrapped = await provider.unwrap(wrapped, {
          ...context,
          signal: deadline,
          ...(suppliedKek ? { suppliedKek } : {}),
        });
        // Too late: the caller has already been told the deadline passed. Do not leak the key.
        if (deadline.aborted) unwrapped.zero();
        return unwrapped;
      },
      signal,
    );
  }

  async #wrapInto(
    kek: Kek,
    index: IndexName,
    slot: SlotName,
    encryptionContext: Readonly<Record<string, string>>,
    signal: AbortSignal | undefined,
    generation: { version: number; createdAt: number; updatedAt: number; creationId: Uint8Array },
  ): Promise<KmsBlob> {
    const provider = await this.#allowedProvider(index, slot);
    refuseOfflinePrimary(provider, index, slot);
    const context: WrapContext = {
      index,
      slot,
      encryptionContext,
      version: generation.version,
      creationId: generation.creationId,
    };
    const wrapped = await this.#caller.run(
      { slot, provider: provider.id, index, operation: 'wrap' },
      (deadline) => provider.wrap(kek, { ...context, signal: deadline }),
      signal,
    );
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
      ...generation,
      creationId: new Uint8Array(generation.creationId),
    };
  }

  /**
   * The provider of `slot` if the reader's configuration lets it serve `index`: the slot's
   * `indexes` patterns match, and a slot whose wrap needs only a public key sets
   * `allowPublicKeyWrap`. Checked before any KMS call.
   * @throws SlotNotAllowedError; ConfigError for an unknown slot.
   */
  async #allowedProvider(index: IndexName, slot: string): Promise<KmsProvider> {
    const where = { index, slot };
    let config: ReturnType<KmsRegistry['slot']>;
    try {
      config = this.kms.slot(slot);
    } catch (err) {
      if (err instanceof ConfigError) throw new ConfigError(err.detail, { ...where, cause: err });
      throw err;
    }
    if (!slotServesIndex(config, index)) {
      throw new SlotNotAllowedError("the slot is not configured to serve this index (its 'indexes')", {
        ...where,
        provider: config.provider,
      });
    }
    const provider = this.#providers.get(slot) ?? (await this.#provider(slot, index));
    // A slot that unwraps only offline is never trusted on the request path (#unwrapProvider),
    // so wrapping to it needs no opt-in.
    if (
      provider.publicKeyWrap === true &&
      provider.unwrapOffline === undefined &&
      config.allowPublicKeyWrap !== true
    ) {
      throw new SlotNotAllowedError(
        'the slot wraps with a public key, so anyone with that key could make its envelopes; set allowPublicKeyWrap: true on the slot to use it',
        { ...where, provider: provider.id },
      );
    }
    return provider;
  }

  /**
   * Admits `blob` for an unwrap of `index` before any KMS call: the slot it names must be allowed
   * ({@link #allowedProvider}) and use the envelope's provider; a `stored` envelope must not be
   * older than this client's high-water mark or the caller's `minVersion`.
   */
  async #admit(index: IndexName, blob: KmsBlob, stored: boolean): Promise<KmsProvider> {
    const provider = await this.#unwrapProvider(index, blob.kmsName, blob.provider);
    await this.#admitGeneration(index, blob, stored);
    return provider;
  }

  /**
   * The provider that may unwrap a wrap of `slot` made by `providerId` for `index`: allowed for
   * the index ({@link #allowedProvider}), the same provider, and not an offline-only slot (its
   * wrap needs only a public key, so anyone could have made it: the public-key forgery of the
   * threat model). No KMS call.
   * @throws SlotNotAllowedError; UnwrapFailedError for another provider; ConfigError.
   */
  async #unwrapProvider(index: IndexName, slot: string, providerId: string): Promise<KmsProvider> {
    const where = { index, slot, provider: providerId };
    const provider = await this.#allowedProvider(index, slot);
    if (provider.id !== providerId) {
      throw new UnwrapFailedError(
        `envelope was wrapped by provider "${providerId}" but the slot uses "${provider.id}"`,
        where,
      );
    }
    if (provider.unwrapOffline !== undefined) {
      throw new SlotNotAllowedError(
        'the slot unwraps only offline, with its private key (recover): its wrap needs only a public key, so it is never trusted on the request path',
        where,
      );
    }
    return provider;
  }

  /**
   * The rollback rules for an unwrap of `blob`: not older than this client's high-water mark of
   * the same creation, and (`stored`) not below the caller's `minVersion`.
   * @throws RollbackError
   */
  async #admitGeneration(index: IndexName, blob: KmsBlob, stored: boolean): Promise<void> {
    const where = { index, slot: blob.kmsName, provider: blob.provider };
    const mark = this.#highWater.get(index);
    // Lower than seen, of the same creation (or of none: a schema 1 envelope cannot be a newer
    // creation), is an old envelope replayed. Another creation id is the index created again.
    if (
      mark !== undefined &&
      blob.version < mark.version &&
      (blob.creationId === undefined || sameCreation(blob.creationId, mark.creationId))
    ) {
      throw new RollbackError(
        `the stored envelope is version ${blob.version}, older than version ${mark.version} already seen`,
        where,
      );
    }
    if (stored && this.#minVersion !== undefined) {
      const min = await this.#minVersion(index);
      if (min !== undefined && blob.version < min) {
        throw new RollbackError(
          `the stored envelope is version ${blob.version}, below the minimum version ${min}`,
          where,
        );
      }
    }
  }

  /** Remembers `blob` as the newest envelope of `index` seen, unless a newer one was. */
  #raiseHighWater(index: IndexName, blob: KmsBlob): void {
    const mark = this.#highWater.get(index);
    if (
      mark === undefined ||
      blob.version > mark.version ||
      !sameCreation(blob.creationId, mark.creationId)
    ) {
      this.#highWater.set(index, { version: blob.version, creationId: blob.creationId });
    }
  }

  /**
   * Unwraps `blob` of `index` after {@link #admit}; `stored`: it was read from the store, so it
   * raises the high-water mark once it unwrapped and checked.
   */
  async #unwrapBlob(index: IndexName, blob: KmsBlob, options: UnwrapOptions, stored = false): Promise<Kek> {
    return (await this.#unwrapServed(index, blob, options, stored)).kek;
  }

  /**
   * {@link #unwrapBlob}, and which slot served: for a multi-wrap envelope the wrap (or the shares'
   * slots joined by `+`) that {@link unwrapWraps} used, and, with `exhaustive` (verify), every
   * wrap's outcome.
   */
  async #unwrapServed(
    index: IndexName,
    blob: KmsBlob,
    options: UnwrapOptions,
    stored: boolean,
    exhaustive = false,
  ): Promise<{ kek: Kek; servedBy?: string; outcomes?: readonly WrapOutcome[] }> {
    if (!isMultiWrap(blob)) return { kek: await this.#unwrapSingle(index, blob, options, stored) };
    if (options.kek !== undefined) throw new InvalidArgumentError(SUPPLIED_KEK_ONLY_NONE, { index });
    await this.#admitGeneration(index, blob, stored);
    const { kek, served, outcomes } = await unwrapWraps(index, blob, this.#unwrapperFor(index), {
      signal: options.signal,
      deadlineMs: this.#deadlineMs,
      exhaustive,
    });
    if (stored) this.#raiseHighWater(index, blob);
    return { kek, servedBy: served.map((wrap) => wrap.kmsName).join('+'), outcomes };
  }

  /** Unwraps a single-wrap envelope with its slot's provider. */
  async #unwrapSingle(
    index: IndexName,
    blob: KmsBlob,
    options: UnwrapOptions,
    stored: boolean,
  ): Promise<Kek> {
    const where = { index, slot: blob.kmsName, provider: blob.provider };
    const provider = await this.#admit(index, blob, stored);
    if (options.kek !== undefined && blob.provider !== 'none') {
      throw new InvalidArgumentError(SUPPLIED_KEK_ONLY_NONE, where);
    }
    const slot = parseSlotName(blob.kmsName);
    const target = { slot, provider: provider.id, index, operation: 'unwrap' as const };
    const context = wrapBindingOf(index, slot, blob);
    const kek =
      options.kek === undefined && hasSyncUnwrap(provider)
        ? this.#caller.runSync(target, () => provider.unwrapSync(blob, context), options.signal)
        : await this.#callUnwrap(target, provider, blob, context, options.signal, options.kek);
    if (blob.kekCheck !== undefined && !kekMatchesCheck(kek, blob.kekCheck)) {
      kek.zero();
      throw new KekMismatchError("the KEK does not match the envelope's KEK check value", where);
    }
    if (stored) this.#raiseHighWater(index, blob);
    return kek;
  }
}

const SUPPLIED_KEK_ONLY_NONE = 'a KEK can only be supplied for envelopes of provider "none"';

/** The slots of create or prepare options: `slots`, or the one `slot`. @throws InvalidArgumentError */
function slotsOption(
  options: { readonly slot?: string; readonly slots?: readonly string[] },
  index: IndexName,
): SlotName[] {
  if (options.slots !== undefined) {
    if (!Array.isArray(options.slots))
      throw new InvalidArgumentError('slots must be an array of slot names', { index });
    if (options.slot !== undefined && options.slot !== options.slots[0]) {
      throw new InvalidArgumentError('give slot or slots, not both (or slot as slots[0])', { index });
    }
    return options.slots.map((slot) => parseSlotName(slot));
  }
  if (options.slot === undefined) throw new InvalidArgumentError('a slot (or slots) is needed', { index });
  return [parseSlotName(options.slot)];
}

/** A string or list option as a list. */
function asList(value: string | readonly string[] | undefined): readonly string[] {
  return value === undefined ? [] : typeof value === 'string' ? [value] : value;
}

/**
 * Refuses an offline-only provider (`recipient`) as an envelope's primary wrap: readers try the
 * primary first, and nothing online could unwrap an envelope that has only such wraps.
 * @throws InvalidArgumentError
 */
function refuseOfflinePrimary(provider: KmsProvider, index: IndexName, slot: SlotName): void {
  if (provider.unwrapOffline !== undefined) {
    throw new InvalidArgumentError(
      'a slot that unwraps only offline (recipient) cannot be the primary wrap: list it after a slot that unwraps online',
      { index, slot, provider: provider.id },
    );
  }
}

/** A new random creation id. */
function newCreationId(): Uint8Array {
  return new Uint8Array(randomBytes(CREATION_ID_LENGTH));
}

/**
 * The cache key of an unwrap's fast path, or `undefined` when it cannot be one (the slow path
 * then validates and reports). A tenant must be a string; any string works: the key is
 * `<tenant> NUL <index>`, so a name with a NUL could alias another tenant's entry and is never
 * looked up. Any other invalid name simply misses: only valid names are ever cached. (A NUL scan
 * instead of the full name check keeps a hit at a few nanoseconds more, not tens.)
 */
function fastKey(indexName: string, tenant: string | undefined): string | undefined {
  if (typeof indexName !== 'string' || indexName.includes('\u0000')) return undefined;
  if (tenant === undefined) return indexName;
  return typeof tenant === 'string' ? cacheKey(indexName, tenant) : undefined;
}

/** `tenant`, checked to be a string when given. @throws InvalidArgumentError */
function checkTenant(tenant: unknown): string | undefined {
  if (tenant !== undefined && typeof tenant !== 'string') {
    throw new InvalidArgumentError('tenant must be a string');
  }
  return tenant as string | undefined;
}

/**
 * A compact copy of stored bytes kept in the cache: what a store returns may be a view into a
 * much larger buffer (a network read), which the cache would otherwise keep alive.
 */
function ownBytes(bytes: Uint8Array): Uint8Array {
  return new Uint8Array(bytes);
}
