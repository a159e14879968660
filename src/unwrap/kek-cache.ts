/**
 * The per-request cache of unwrapped KEKs: per (tenant, index), remembering the envelope it came
 * from, with a time to live (default 60 s), a maximum number of uses, a maximum number of entries
 * (LRU, via lru-cache), explicit invalidation, optional refresh-ahead, and single-flight loading
 * (N concurrent misses of one index make one KMS call). Errors are never cached.
 *
 * Cached KEKs are shared, never handed out to be kept: a caller borrows one through a *lease*
 * ({@link KekCache.acquire} / {@link KekCache.release}). A KEK that leaves the cache for any reason
 * (expiry, eviction, maximum uses, invalidation, replacement) is zeroed at once when nobody holds a
 * lease on it, else as soon as the last lease is released: no holder ever sees it zeroed or changed
 * under it, and no KEK outlives its last holder unzeroed.
 *
 * @module
 */
import { LRUCache } from 'lru-cache';
import type { KmsBlob } from '../envelope/kms-blob.js';
import type { Kek } from '../keys/kek.js';

/** Options of the KEK cache. */
export interface KekCacheOptions {
  /** Time to live of a cached KEK (default 60,000 ms). */
  readonly ttlMs?: number;
  /** Uses after which a cached KEK is dropped and unwrapped again (default unlimited). */
  readonly maxUses?: number;
  /** Most cached KEKs; the least recently used goes first (default 1,000). */
  readonly maxEntries?: number;
  /** Reload in the background when a hit finds less than this left to live (default 0: off). */
  readonly refreshAheadMs?: number;
  /**
   * When the envelope is read from the store:
   * - `'on-miss'` (default): only to load a KEK; an envelope that another process rotated is
   *   picked up no later than the TTL (a rotation through this client invalidates at once).
   * - `'every-call'`: on every unwrap; the cached KEK is used only while the stored envelope is
   *   still the one it was unwrapped from, so a rotation anywhere is seen by the next call. Costs
   *   one store read per call (no KMS call while the envelope is unchanged); calls for one index
   *   in the same tick share one read, sent after all of them started.
   */
  readonly readEnvelope?: 'on-miss' | 'every-call';
}

/** One cached KEK and what it was unwrapped from. */
export interface CachedKek {
  /** The shared KEK: borrow it under a lease, never keep it. */
  readonly kek: Kek;
  /** The envelope the KEK was unwrapped from. */
  readonly blob: KmsBlob;
  /**
   * The slot that served the unwrap (for a threshold envelope the shares' slots joined by `+`);
   * the envelope's `kms_name` when absent.
   */
  readonly servedBy?: string;
  /**
   * The stored bytes `blob` was decoded from, when the loader had them: `readEnvelope:
   * 'every-call'` compares the bytes it reads with these and decodes only when they differ.
   */
  encoded?: Uint8Array;
  readonly loadedAt: number;
  /** Uses so far (hits and the loads that handed it out). */
  uses: number;
  /** Leases held right now. */
  leases: number;
  /** Set when the entry left the cache; the KEK is zeroed once `leases` is 0. */
  retired: boolean;
}

/** Loads a KEK on a miss. */
export type KekLoader = () => Promise<CachedKek>;

/** Cache key of an index in a tenant's partition. */
export function cacheKey(index: string, tenant: string | undefined): string {
  return tenant === undefined ? index : `${tenant}\u0000${index}`;
}

/**
 * The index part of a cache key: after the last NUL, since a valid index name has none (a
 * tenant may).
 */
export function indexOfKey(key: string): string {
  const sep = key.lastIndexOf('\u0000');
  return sep < 0 ? key : key.slice(sep + 1);
}

/** A load in flight and how many callers wait for it (each gets a lease when it lands). */
interface Flight {
  readonly promise: Promise<CachedKek>;
  waiters: number;
  /** Set by invalidate / clear while loading: the result goes to the waiters, not the cache. */
  stale: boolean;
}

/** Whether two envelopes unwrap to the same KEK the same way (everything the unwrap binds). */
export function sameEnvelope(a: KmsBlob, b: KmsBlob): boolean {
  return (
    a.version === b.version &&
    a.schemaVersion === b.schemaVersion &&
    (a.creationId === undefined
      ? b.creationId === undefined
      : b.creationId !== undefined && bytesEqual(a.creationId, b.creationId)) &&
    a.kmsName === b.kmsName &&
    a.provider === b.provider &&
    a.keyId === b.keyId &&
    a.region === b.region &&
    a.indexName === b.indexName &&
    bytesEqual(a.wrappedKek, b.wrappedKek) &&
    (a.kekCheck === undefined
      ? b.kekCheck === undefined
      : b.kekCheck !== undefined && bytesEqual(a.kekCheck, b.kekCheck)) &&
    sameContext(a.encryptionContext, b.encryptionContext) &&
    a.threshold === b.threshold &&
    sameWraps(a.wraps, b.wraps)
  );
}

/** Whether two envelopes have the same further wraps, in the same order. */
function sameWraps(a: KmsBlob['wraps'], b: KmsBlob['wraps']): boolean {
  const x = a ?? [];
  const y = b ?? [];
  if (x.length !== y.length) return false;
  return x.every((w, i) => {
    const v = y[i]!;
    return (
      w.kmsName === v.kmsName &&
      w.provider === v.provider &&
      w.keyId === v.keyId &&
      w.region === v.region &&
      bytesEqual(w.wrappedKek, v.wrappedKek)
    );
  });
}

/** Whether two byte strings are equal (envelope bytes: public, no constant time needed). */
export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  return Buffer.compare(a, b) === 0;
}

function sameContext(a: Readonly<Record<string, string>>, b: Readonly<Record<string, string>>): boolean {
  let n = 0;
  for (const key in a) {
    if (a[key] !== b[key]) return false;
    n++;
  }
  for (const _ in b) n--;
  return n === 0;
}

/** The cache. `onEvict` hears every KEK that leaves it. */
export class KekCache {
  readonly ttlMs: number;
  /** See {@link KekCacheOptions.readEnvelope}. */
  readonly readEveryCall: boolean;
  readonly #maxUses: number;
  readonly #refreshAheadMs: number;
  readonly #lru: LRUCache<string, CachedKek>;
  readonly #inflight = new Map<string, Flight>();
  readonly #refresh: ((key: string) => KekLoader) | undefined;
  #reason: string | undefined;

  /**
   * @param onEvict hears every KEK that leaves the cache (index and reason).
   * @param refresh the loader of a key, for refresh-ahead.
   */
  constructor(
    options: KekCacheOptions,
    onEvict: (index: string, reason: string) => void,
    refresh?: (key: string) => KekLoader,
  ) {
    this.ttlMs = options.ttlMs ?? 60_000;
    this.#maxUses = options.maxUses ?? Number.POSITIVE_INFINITY;
    this.#refreshAheadMs = options.refreshAheadMs ?? 0;
    this.readEveryCall = options.readEnvelope === 'every-call';
    this.#refresh = refresh;
    this.#lru = new LRUCache<string, CachedKek>({
      max: options.maxEntries ?? 1000,
      ttl: this.ttlMs,
      // Expired entries are purged (and zeroed) on time even if nobody asks for them again; the
      // timer this costs is paid on a miss, never on a hit.
      ttlAutopurge: true,
      dispose: (entry, key, reason) => {
        entry.retired = true;
        if (entry.leases === 0) entry.kek.zero();
        onEvict(indexOfKey(key), this.#reason ?? reason);
      },
    });
  }

  /**
   * The cached entry of `key`, counting a use; `undefined` on a miss (expired, used up or absent).
   * The entry is only safe to touch synchronously: {@link acquire} it to hold the KEK longer.
   * When refresh-ahead is on and the entry is close to expiry, it reloads in the background.
   */
  get(key: string): CachedKek | undefined {
    const entry = this.#lru.get(key);
    if (entry === undefined) return undefined;
    if (++entry.uses > this.#maxUses) {
      this.delete(key, 'uses');
      return undefined;
    }
    if (this.#refreshAheadMs > 0) this.#maybeRefresh(key);
    return entry;
  }

  #maybeRefresh(key: string): void {
    if (this.#refresh === undefined || this.#inflight.has(key)) return;
    if (this.#lru.getRemainingTTL(key) < this.#refreshAheadMs) {
      void this.load(key, this.#refresh(key), false).catch(() => {});
    }
  }

  /** Takes a lease on `entry`: its KEK stays intact until the matching {@link release}. */
  acquire(entry: CachedKek): CachedKek {
    entry.leases++;
    return entry;
  }

  /** Ends a lease; the last lease on an entry that left the cache zeroes its KEK. */
  release(entry: CachedKek): void {
    if (--entry.leases === 0 && entry.retired) entry.kek.zero();
  }

  /**
   * Loads `key` once however many callers ask at the same time (single-flight). The promise
   * resolves to the entry with a lease taken for this caller ({@link release} it when done),
   * unless `waiter` is false (a background refresh, which takes none).
   */
  load(key: string, load: KekLoader, waiter = true): Promise<CachedKek> {
    let flight = this.#inflight.get(key);
    if (flight === undefined) {
      const started: Flight = {
        waiters: 0,
        stale: false,
        promise: load().then(
          (entry) => {
            if (this.#inflight.get(key) === started) this.#inflight.delete(key);
            // Every caller waiting gets its lease now, before anything else can run, so an
            // eviction between here and a waiter's continuation defers the zeroing.
            entry.leases += started.waiters;
            entry.uses += started.waiters;
            if (started.stale) {
              // Invalidated or cleared while loading (a rotate, a delete, a close): the waiters
              // get the KEK they asked for, but it is not cached, and is zeroed after them.
              entry.retired = true;
              if (entry.leases === 0) entry.kek.zero();
            } else {
              this.#lru.set(key, entry);
            }
            return entry;
          },
          (err: unknown) => {
            if (this.#inflight.get(key) === started) this.#inflight.delete(key); // errors are not cached
            throw err;
          },
        ),
      };
      flight = started;
      this.#inflight.set(key, flight);
    }
    if (waiter) flight.waiters++;
    return flight.promise;
  }

  /**
   * Joins the load of `key` in flight, if there is one: resolves like {@link load} (with a lease
   * for this caller). `undefined` when nothing is loading.
   */
  join(key: string): Promise<CachedKek> | undefined {
    const flight = this.#inflight.get(key);
    if (flight === undefined) return undefined;
    flight.waiters++;
    return flight.promise;
  }

  /** Whether a load of `key` is in flight. */
  loading(key: string): boolean {
    return this.#inflight.has(key);
  }

  /** Drops one entry (zeroed once no lease holds it). */
  delete(key: string, reason: string): void {
    this.#reason = reason;
    try {
      this.#lru.delete(key);
    } finally {
      this.#reason = undefined;
    }
  }

  /**
   * Drops every tenant's entry of `index`; a load of it in flight will not be cached (the next
   * call starts a new one).
   */
  invalidate(index: string): void {
    for (const key of [...this.#lru.keys()]) if (indexOfKey(key) === index) this.delete(key, 'invalidate');
    for (const [key, flight] of [...this.#inflight]) {
      if (indexOfKey(key) === index) this.#abandon(key, flight);
    }
  }

  /** Drops everything (each KEK zeroed once no lease holds it); loads in flight are not cached. */
  clear(): void {
    for (const [key, flight] of [...this.#inflight]) this.#abandon(key, flight);
    this.#reason = 'clear';
    try {
      this.#lru.clear();
    } finally {
      this.#reason = undefined;
    }
  }

  #abandon(key: string, flight: Flight): void {
    flight.stale = true;
    this.#inflight.delete(key);
  }

  get size(): number {
    return this.#lru.size;
  }
}
