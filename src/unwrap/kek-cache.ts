/**
 * The per-request cache of unwrapped KEKs: per (tenant, index), remembering the envelope version
 * and slot it came from, with a time to live (default 60 s), a maximum number of uses, a maximum
 * number of entries (LRU, via lru-cache), explicit invalidation, optional refresh-ahead, and
 * single-flight loading (N concurrent misses of one index make one KMS call). A KEK that leaves
 * the cache for any reason is zeroed. Errors are never cached.
 *
 * @module
 */
import { LRUCache } from 'lru-cache';
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
}

/** One cached KEK. */
export interface CachedKek {
  readonly kek: Kek;
  readonly version: number;
  readonly slot: string;
  readonly provider: string;
  readonly loadedAt: number;
  uses: number;
}

/** Loads a KEK on a miss. */
export type KekLoader = () => Promise<CachedKek>;

/** Cache key of an index in a tenant's partition. */
export function cacheKey(index: string, tenant: string | undefined): string {
  return tenant === undefined ? index : `${tenant}\u0000${index}`;
}

function indexOf(key: string): string {
  const sep = key.indexOf('\u0000');
  return sep < 0 ? key : key.slice(sep + 1);
}

/** The cache. `onEvict` hears every KEK that leaves it (already zeroed). */
export class KekCache {
  readonly ttlMs: number;
  readonly #maxUses: number;
  readonly #refreshAheadMs: number;
  readonly #lru: LRUCache<string, CachedKek>;
  readonly #inflight = new Map<string, Promise<CachedKek>>();
  #reason: string | undefined;

  constructor(options: KekCacheOptions, onEvict: (index: string, reason: string) => void) {
    this.ttlMs = options.ttlMs ?? 60_000;
    this.#maxUses = options.maxUses ?? Number.POSITIVE_INFINITY;
    this.#refreshAheadMs = options.refreshAheadMs ?? 0;
    this.#lru = new LRUCache<string, CachedKek>({
      max: options.maxEntries ?? 1000,
      ttl: this.ttlMs,
      // Expired entries are purged (and zeroed) on time even if nobody asks for them again; the
      // timer this costs is paid on a miss, never on a hit.
      ttlAutopurge: true,
      dispose: (entry, key, reason) => {
        entry.kek.zero();
        onEvict(
          indexOf(key),
          this.#reason ?? (reason === 'expire' ? 'expire' : reason === 'evict' ? 'evict' : reason),
        );
      },
    });
  }

  /**
   * The cached KEK of `key`, counting a use; `undefined` on a miss (expired, used up or absent).
   * When refresh-ahead is on and the entry is close to expiry, `load` runs in the background.
   */
  get(key: string, load?: KekLoader): CachedKek | undefined {
    const entry = this.#lru.get(key);
    if (entry === undefined) return undefined;
    entry.uses++;
    if (entry.uses > this.#maxUses) {
      this.delete(key, 'uses');
      return undefined;
    }
    if (this.#refreshAheadMs > 0 && load !== undefined && !this.#inflight.has(key)) {
      if (this.#lru.getRemainingTTL(key) < this.#refreshAheadMs) void this.load(key, load).catch(() => {});
    }
    return entry;
  }

  /** Loads `key` once however many callers ask at the same time (single-flight). */
  load(key: string, load: KekLoader): Promise<CachedKek> {
    let pending = this.#inflight.get(key);
    if (pending === undefined) {
      pending = load().then(
        (entry) => {
          this.#inflight.delete(key);
          this.#lru.set(key, entry);
          return entry;
        },
        (err: unknown) => {
          this.#inflight.delete(key); // errors are not cached
          throw err;
        },
      );
      this.#inflight.set(key, pending);
    }
    return pending;
  }

  /** Whether a load of `key` is in flight. */
  loading(key: string): boolean {
    return this.#inflight.has(key);
  }

  /** Drops one entry (zeroed). */
  delete(key: string, reason: string): void {
    this.#reason = reason;
    try {
      this.#lru.delete(key);
    } finally {
      this.#reason = undefined;
    }
  }

  /** Drops every tenant's entry of `index`. */
  invalidate(index: string): void {
    for (const key of [...this.#lru.keys()]) if (indexOf(key) === index) this.delete(key, 'invalidate');
  }

  /** Drops everything (zeroed). */
  clear(): void {
    this.#reason = 'clear';
    try {
      this.#lru.clear();
    } finally {
      this.#reason = undefined;
    }
  }

  get size(): number {
    return this.#lru.size;
  }
}
