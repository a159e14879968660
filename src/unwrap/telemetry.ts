/**
 * Observability of the unwrap path without any dependency: events on `node:diagnostics_channel`,
 * counters for `client.stats()`, and an optional OpenTelemetry-style meter (any object with
 * `createCounter` / `createHistogram`, e.g. `metrics.getMeter('kms-envelope')` from
 * `@opentelemetry/api`). Events and metrics carry index, slot, provider, outcome and error code;
 * never a key byte or a plaintext.
 *
 * @module
 */
import diagnosticsChannel from 'node:diagnostics_channel';
import { createRequire } from 'node:module';
import { MissingDependencyError } from '../errors.js';

/** Channel names; subscribe with `diagnostics_channel.subscribe(name, fn)`. */
export const Channels = {
  /** `{ index, slot, provider, cache: 'hit' | 'miss', durationMs, outcome: 'ok' | code }` */
  unwrap: 'kms-envelope:unwrap',
  /** `{ index, reason: 'evict' | 'expire' | 'uses' | 'invalidate' | 'clear' }` */
  cache: 'kms-envelope:cache',
  /** `{ slot, provider, index, attempt, durationMs, outcome: 'ok' | code }` */
  kms: 'kms-envelope:kms',
  /**
   * One wrap of a multi-wrap envelope tried (or skipped) by an unwrap, a verify or a recover:
   * `{ index, slot, provider, version, share, outcome: 'ok' | 'tampered' | code, skipped, durationMs }`.
   */
  wrap: 'kms-envelope:wrap',
  /**
   * A tamper signal: a wrap (or a combination of threshold shares) that unwrapped to a KEK that
   * does not match the envelope's `kek_check`; it was refused and never used.
   * `{ index, version, slots, providers, reason: 'kek-check' | 'share' | 'combination' }`.
   */
  tamper: 'kms-envelope:tamper',
} as const;

const unwrapChannel = diagnosticsChannel.channel(Channels.unwrap);
const cacheChannel = diagnosticsChannel.channel(Channels.cache);
const kmsChannel = diagnosticsChannel.channel(Channels.kms);
const wrapChannel = diagnosticsChannel.channel(Channels.wrap);
const tamperChannel = diagnosticsChannel.channel(Channels.tamper);

/** What a cache hit event says about the cached entry (a `CachedKek`). */
export interface HitEntry {
  readonly blob: { readonly kmsName: string; readonly provider: string };
  readonly servedBy?: string | undefined;
}

/** The structural subset of an OpenTelemetry `Meter` used here. */
export interface MeterLike {
  /** Makes a counter instrument (OpenTelemetry `Meter.createCounter`). */
  createCounter(
    name: string,
    options?: { description?: string },
  ): {
    /** Adds `value` to the counter, under `attributes`. */
    add(value: number, attributes?: Record<string, string>): void;
  };
  /** Makes a histogram instrument (OpenTelemetry `Meter.createHistogram`). */
  createHistogram(
    name: string,
    options?: { description?: string; unit?: string },
  ): {
    /** Records one measurement, under `attributes`. */
    record(value: number, attributes?: Record<string, string>): void;
  };
}

/**
 * The meter named `kms-envelope` from the global OpenTelemetry meter provider, through the
 * optional peer `@opentelemetry/api` (loaded here, synchronously, only when asked for).
 * @throws MissingDependencyError when `@opentelemetry/api` is not installed.
 */
export function openTelemetryMeter(): MeterLike {
  const api = loadOpenTelemetryApi<{ metrics: { getMeter(name: string): MeterLike } }>(
    "the client's meter: 'opentelemetry'",
  );
  return api.metrics.getMeter('kms-envelope');
}

/**
 * The optional peer `@opentelemetry/api`, loaded synchronously (metrics and tracing both use it),
 * typed as the subset the caller needs.
 * @throws MissingDependencyError naming `usedBy` when it is not installed.
 */
export function loadOpenTelemetryApi<T>(usedBy: string): T {
  try {
    return createRequire(import.meta.url)('@opentelemetry/api') as T;
  } catch (cause) {
    throw new MissingDependencyError('@opentelemetry/api', usedBy, cause);
  }
}

/** Per-slot numbers, as `client.stats()` returns them. */
export interface SlotStats {
  /** KMS calls made with this slot (wraps and unwraps, each attempt of a retry counted). */
  kmsCalls: number;
  /** Failed KMS calls, by error code. */
  kmsErrors: Record<string, number>;
  /** KMS calls that were retries of a failed attempt. */
  retries: number;
  /** Calls refused at once because the slot's circuit breaker was open. */
  circuitOpenRejections: number;
  /** Unwraps of a multi-wrap envelope this slot served (alone, or with others' shares). */
  served: number;
  /** Wraps of this slot refused as tampered (KEK check mismatch, or a forged share). */
  tampered: number;
}

/** What `client.stats()` returns. */
export interface UnwrapStats {
  /** Unwrap calls (`unwrap`, `withKek`, `lease`), hits and misses alike. */
  unwraps: number;
  /** Unwraps served from the cache. */
  cacheHits: number;
  /** Unwraps that had to load the envelope and ask the KMS. */
  cacheMisses: number;
  /** Cached KEKs dropped (expiry, max uses, LRU, invalidation, `clearCache`). */
  cacheEvictions: number;
  /** Unwraps that joined a call already in flight (single-flight). */
  coalesced: number;
  /** Failed unwraps, by error code. */
  errors: Record<string, number>;
  /** Per-slot numbers, by slot name. */
  slots: Record<string, SlotStats>;
  /** Unwraps of a multi-wrap envelope served without the primary wrap. */
  failovers: number;
  /** Tamper signals: wraps or share combinations that did not match the KEK check. */
  tampered: number;
}

/** A tried or skipped wrap (see {@link Channels.wrap}). */
export interface WrapEvent {
  /** The index. */
  readonly index: string;
  /** The wrap's slot. */
  readonly slot: string;
  /** The wrap's provider. */
  readonly provider: string;
  /** The envelope's version. */
  readonly version: number;
  /** 1 for the primary, i + 2 for `wraps[i]`. */
  readonly share: number;
  /** `ok`, `tampered`, or the error code. */
  readonly outcome: string;
  /** Not tried (not admitted, or the deadline passed). */
  readonly skipped: boolean;
  /** How long the KMS call took (0 when skipped). */
  readonly durationMs: number;
}

/** A tamper signal (see {@link Channels.tamper}). */
export interface TamperEvent {
  /** The index. */
  readonly index: string;
  /** The envelope's version. */
  readonly version: number;
  /** The slots of the refused wraps. */
  readonly slots: readonly string[];
  /** Their providers, in the same order. */
  readonly providers: readonly string[];
  /**
   * `kek-check`: a wrap's KEK is not the envelope's; `share`: one share does not combine with the
   * good ones; `combination`: no k of the shares give the KEK.
   */
  readonly reason: 'kek-check' | 'share' | 'combination';
}

/** Collects the numbers and publishes the events. */
export class Telemetry {
  readonly #stats: UnwrapStats = {
    unwraps: 0,
    cacheHits: 0,
    cacheMisses: 0,
    cacheEvictions: 0,
    coalesced: 0,
    errors: {},
    slots: {},
    failovers: 0,
    tampered: 0,
  };
  readonly #meter?: {
    unwraps: ReturnType<MeterLike['createCounter']>;
    hits: ReturnType<MeterLike['createCounter']>;
    latency: ReturnType<MeterLike['createHistogram']>;
    kmsCalls: ReturnType<MeterLike['createCounter']>;
    evictions: ReturnType<MeterLike['createCounter']>;
    served: ReturnType<MeterLike['createCounter']>;
    tampered: ReturnType<MeterLike['createCounter']>;
  };

  constructor(meter?: MeterLike) {
    if (meter !== undefined) {
      this.#meter = {
        unwraps: meter.createCounter('kms_envelope.unwraps', {
          description: 'KEK unwraps that missed the cache, by slot, provider and outcome',
        }),
        hits: meter.createCounter('kms_envelope.cache.hits', {
          description: 'KEK unwraps served from the cache (the hot path: no attributes)',
        }),
        latency: meter.createHistogram('kms_envelope.unwrap.duration', {
          unit: 'ms',
          description: 'unwrap latency',
        }),
        kmsCalls: meter.createCounter('kms_envelope.kms.calls', { description: 'KMS calls by outcome' }),
        evictions: meter.createCounter('kms_envelope.cache.evictions', {
          description: 'cached KEKs dropped',
        }),
        served: meter.createCounter('kms_envelope.wraps.served', {
          description: 'multi-wrap unwraps by the slot that served them and whether it was the primary',
        }),
        tampered: meter.createCounter('kms_envelope.wraps.tampered', {
          description: 'wraps refused because they did not match the KEK check (a tamper signal)',
        }),
      };
    }
  }

  #slot(slot: string): SlotStats {
    let s = this.#stats.slots[slot];
    if (s === undefined) {
      s = { kmsCalls: 0, kmsErrors: {}, retries: 0, circuitOpenRejections: 0, served: 0, tampered: 0 };
      this.#stats.slots[slot] = s;
    }
    return s;
  }

  /** Whether anything listens for per-unwrap events (a channel subscriber or a meter). */
  get observed(): boolean {
    return this.#meter !== undefined || unwrapChannel.hasSubscribers;
  }

  /** A miss nobody observes (see {@link observed}): only counters. */
  missed(): void {
    this.#stats.unwraps++;
    this.#stats.cacheMisses++;
  }

  /**
   * A cache hit: the hot path, so counters, and an event on {@link Channels.unwrap} only while
   * someone subscribes (`hasSubscribers` is one property read). A hit is not timed: its
   * `durationMs` is 0 (timing every hit would cost two clock reads on the hottest path).
   */
  hit(index: string, entry: HitEntry): void {
    this.#stats.unwraps++;
    this.#stats.cacheHits++;
    this.#meter?.hits.add(1);
    if (unwrapChannel.hasSubscribers) {
      unwrapChannel.publish({
        index,
        slot: entry.servedBy ?? entry.blob.kmsName,
        provider: entry.blob.provider,
        cache: 'hit',
        durationMs: 0,
        outcome: 'ok',
      });
    }
  }

  unwrapped(event: {
    index: string;
    slot: string;
    provider: string;
    cache: 'hit' | 'miss';
    durationMs: number;
    outcome: string;
  }): void {
    if (event.cache === 'miss') {
      this.#stats.unwraps++;
      this.#stats.cacheMisses++;
    }
    if (event.outcome !== 'ok')
      this.#stats.errors[event.outcome] = (this.#stats.errors[event.outcome] ?? 0) + 1;
    if (unwrapChannel.hasSubscribers) unwrapChannel.publish(event);
    const attrs = { slot: event.slot, provider: event.provider, cache: event.cache, outcome: event.outcome };
    this.#meter?.unwraps.add(1, attrs);
    this.#meter?.latency.record(event.durationMs, attrs);
  }

  coalesced(): void {
    this.#stats.coalesced++;
  }

  evicted(index: string, reason: string): void {
    this.#stats.cacheEvictions++;
    if (cacheChannel.hasSubscribers) cacheChannel.publish({ index, reason });
    this.#meter?.evictions.add(1, { reason });
  }

  kmsCall(
    target: { slot: string; provider: string; index: string },
    attempt: number,
    durationMs: number,
    outcome: string,
  ): void {
    const s = this.#slot(target.slot);
    s.kmsCalls++;
    if (attempt > 1) s.retries++;
    if (outcome !== 'ok') s.kmsErrors[outcome] = (s.kmsErrors[outcome] ?? 0) + 1;
    if (kmsChannel.hasSubscribers) {
      kmsChannel.publish({
        slot: target.slot,
        provider: target.provider,
        index: target.index,
        attempt,
        durationMs,
        outcome,
      });
    }
    this.#meter?.kmsCalls.add(1, { slot: target.slot, provider: target.provider, outcome });
  }

  /** A wrap of a multi-wrap envelope tried or skipped. */
  wrapTried(event: WrapEvent): void {
    if (wrapChannel.hasSubscribers) wrapChannel.publish(event);
  }

  /** A multi-wrap unwrap served by `slots` (one, or the shares' slots); `failover`: not the primary. */
  served(slots: readonly string[], providers: readonly string[], failover: boolean): void {
    if (failover) this.#stats.failovers++;
    slots.forEach((slot, i) => {
      this.#slot(slot).served++;
      this.#meter?.served.add(1, {
        slot,
        provider: providers[i] ?? '',
        role: failover ? 'failover' : 'primary',
      });
    });
  }

  /** A tamper signal: counted per slot and in total, published, and metered. */
  tampered(event: TamperEvent): void {
    this.#stats.tampered++;
    event.slots.forEach((slot, i) => {
      this.#slot(slot).tampered++;
      this.#meter?.tampered.add(1, { slot, provider: event.providers[i] ?? '', reason: event.reason });
    });
    if (tamperChannel.hasSubscribers) tamperChannel.publish(event);
  }

  circuitOpen(slot: string): void {
    this.#slot(slot).circuitOpenRejections++;
  }

  /** A deep copy of the numbers. */
  snapshot(): UnwrapStats {
    return structuredClone(this.#stats);
  }
}
