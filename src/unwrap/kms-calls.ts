/**
 * Calls to a KMS with a deadline, bounded retries with jittered exponential backoff (p-retry) for
 * retryable errors only, honouring a service's retry-after, and a circuit breaker per slot
 * (opossum) that fails fast while the slot keeps failing and probes again after a pause.
 * Access denied, not found, disabled keys and unwrap failures are never retried.
 *
 * @module
 */
import CircuitBreaker from 'opossum';
import pRetry from 'p-retry';
import { CircuitOpenError, DeadlineExceededError, KmsEnvelopeError } from '../errors.js';
import type { Kek } from '../keys/kek.js';
import type { KmsProvider, UnwrapContext, WrappedKek } from '../providers/provider.js';
import type { Telemetry } from './telemetry.js';
import {
  type KmsOperation,
  kmsSpanOptions,
  outcomeOf,
  SpanKindValue,
  type SpanLike,
  SpanNames,
  TraceAttribute,
  type TracerLike,
  traceAsync,
  traceSync,
} from './tracing.js';

/** Options of the KMS call policy. */
export interface KmsCallOptions {
  /** Deadline of one unwrap or wrap, retries included (default 3000 ms). */
  readonly deadlineMs?: number;
  /** Retries after the first attempt, for retryable errors (default 3). */
  readonly retries?: number;
  /** First backoff (default 50 ms); doubled each retry, randomised ×1–2, capped at `maxBackoffMs`. */
  readonly minBackoffMs?: number;
  /** Longest backoff (default 1000 ms). */
  readonly maxBackoffMs?: number;
  /** Breaker: share of failed calls (%) in the rolling window that opens it (default 50). */
  readonly breakerErrorPercentage?: number;
  /** Breaker: fewest calls in the window before it may open (default 5). */
  readonly breakerVolumeThreshold?: number;
  /** Breaker: how long it stays open before letting one probe through (default 5000 ms). */
  readonly breakerResetMs?: number;
  /** Breaker: the rolling window (default 10000 ms). */
  readonly breakerWindowMs?: number;
  /** Set false to disable the breaker. */
  readonly breaker?: boolean;
}

/**
 * A provider whose unwrap is local CPU work, with no service behind it (provider `local`): it
 * offers `unwrapSync` besides the `KmsProvider` methods. The client calls it directly: a call of
 * a few microseconds needs no deadline, cannot be throttled, and has nothing for a breaker to
 * protect, and the promise machinery would cost more than the unwrap itself.
 */
export interface SyncUnwrapProvider extends KmsProvider {
  /** As `unwrap`, synchronously; throws the same typed errors. */
  unwrapSync(wrapped: WrappedKek, context: UnwrapContext): Kek;
}

/** Whether `provider` unwraps synchronously ({@link SyncUnwrapProvider}). */
export function hasSyncUnwrap(provider: KmsProvider): provider is SyncUnwrapProvider {
  return typeof (provider as Partial<SyncUnwrapProvider>).unwrapSync === 'function';
}

/** What one call is about, for errors, events and breakers. */
export interface KmsCallTarget {
  readonly slot: string;
  readonly provider: string;
  readonly index: string;
  /** What the call does: names its span (`kms-envelope.kms.unwrap`; `.call` when absent). */
  readonly operation?: KmsOperation;
}

/**
 * Deadlines of calls in flight. Calls that start within the same few milliseconds with the same
 * deadline share one AbortController and one "expired" promise (a bucket), and one interval
 * timer expires the buckets: an AbortController, a timer or an abort listener per call would
 * each cost more than a local unwrap. A deadline fires within DEADLINE_TICK_MS of its time.
 */
const DEADLINE_TICK_MS = 5;
/** What a bucket's `expired` promise rejects with; each call turns it into its own error. */
const EXPIRED = Symbol('deadline expired');

interface DeadlineBucket {
  readonly at: number;
  readonly signal: AbortSignal;
  readonly expired: Promise<never>;
  readonly expire: () => void;
}

function newBucket(at: number): DeadlineBucket {
  const controller = new AbortController();
  let expire!: () => void;
  const expired = new Promise<never>((_, reject) => {
    expire = () => {
      controller.abort();
      reject(EXPIRED);
    };
  });
  expired.catch(() => {});
  return { at, signal: controller.signal, expired, expire };
}

class DeadlineWatch {
  readonly #buckets = new Map<number, DeadlineBucket>();
  #timer: NodeJS.Timeout | undefined;

  /** The shared bucket for a call that starts now with `deadlineMs`. */
  bucket(deadlineMs: number): DeadlineBucket {
    const slot = Math.ceil((performance.now() + deadlineMs) / DEADLINE_TICK_MS);
    let bucket = this.#buckets.get(slot);
    if (bucket === undefined) {
      bucket = newBucket(slot * DEADLINE_TICK_MS);
      this.#buckets.set(slot, bucket);
      if (this.#timer === undefined) {
        this.#timer = setInterval(() => this.#tick(), DEADLINE_TICK_MS);
        this.#timer.unref(); // never keeps the process alive by itself
      }
    }
    return bucket;
  }

  #tick(): void {
    const now = performance.now();
    for (const [slot, bucket] of this.#buckets) {
      if (bucket.at <= now) {
        this.#buckets.delete(slot);
        bucket.expire();
      }
    }
    if (this.#buckets.size === 0) {
      clearInterval(this.#timer);
      this.#timer = undefined;
    }
  }
}
const deadlines = new DeadlineWatch();

function isRetryable(err: unknown): boolean {
  return err instanceof KmsEnvelopeError && err.retryable && !(err instanceof CircuitOpenError);
}

const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener(
      'abort',
      () => {
        clearTimeout(timer);
        resolve();
      },
      { once: true },
    );
  });

/** Runs KMS calls under one policy; one breaker per slot. */
export class KmsCaller {
  readonly #options: Required<Omit<KmsCallOptions, 'breaker'>> & { breaker: boolean };
  readonly #breakers = new Map<string, CircuitBreaker<[() => Promise<unknown>], unknown>>();
  readonly #telemetry: Telemetry;
  readonly #tracer: TracerLike | undefined;

  /**
   * @param tracer where a span per call goes (see `./tracing.ts`); none when `undefined`, and
   * then tracing costs nothing.
   */
  constructor(options: KmsCallOptions, telemetry: Telemetry, tracer?: TracerLike) {
    this.#options = {
      deadlineMs: options.deadlineMs ?? 3000,
      retries: options.retries ?? 3,
      minBackoffMs: options.minBackoffMs ?? 50,
      maxBackoffMs: options.maxBackoffMs ?? 1000,
      breakerErrorPercentage: options.breakerErrorPercentage ?? 50,
      breakerVolumeThreshold: options.breakerVolumeThreshold ?? 5,
      breakerResetMs: options.breakerResetMs ?? 5000,
      breakerWindowMs: options.breakerWindowMs ?? 10_000,
      breaker: options.breaker ?? true,
    };
    this.#telemetry = telemetry;
    this.#tracer = tracer;
  }

  #breaker(slot: string): CircuitBreaker<[() => Promise<unknown>], unknown> {
    let breaker = this.#breakers.get(slot);
    if (breaker === undefined) {
      breaker = new CircuitBreaker((thunk: () => Promise<unknown>) => thunk(), {
        timeout: false, // deadlines are ours
        errorThresholdPercentage: this.#options.breakerErrorPercentage,
        volumeThreshold: this.#options.breakerVolumeThreshold,
        resetTimeout: this.#options.breakerResetMs,
        rollingCountTimeout: this.#options.breakerWindowMs,
        // Only a service that is down counts against the slot; a wrong key does not.
        errorFilter: (err: unknown) => !isRetryable(err),
      });
      this.#breakers.set(slot, breaker);
    }
    return breaker;
  }

  /** Whether the breaker of `slot` is open (failing fast). */
  isOpen(slot: string): boolean {
    return this.#breakers.get(slot)?.opened ?? false;
  }

  /** Closes the breakers' timers. */
  shutdown(): void {
    for (const breaker of this.#breakers.values()) breaker.shutdown();
    this.#breakers.clear();
  }

  /**
   * Runs a synchronous provider call ({@link SyncUnwrapProvider}): no deadline, retries or
   * breaker, only the telemetry every KMS call gets. A caller's `signal` that already fired
   * still fails the call.
   */
  runSync<T>(target: KmsCallTarget, call: () => T, signal?: AbortSignal): T {
    const tracer = this.#tracer;
    if (tracer === undefined) return this.#runSync(target, call, signal);
    return traceSync(
      tracer,
      SpanNames.kms(target.operation),
      // Local CPU work: no service is called.
      kmsSpanOptions(target, SpanKindValue.internal),
      () => this.#runSync(target, call, signal),
    );
  }

  #runSync<T>(target: KmsCallTarget, call: () => T, signal: AbortSignal | undefined): T {
    if (signal?.aborted) {
      throw new DeadlineExceededError('the KMS call was aborted before it started', {
        index: target.index,
        slot: target.slot,
        provider: target.provider,
      });
    }
    const started = performance.now();
    try {
      const result = call();
      this.#telemetry.kmsCall(target, 1, performance.now() - started, 'ok');
      return result;
    } catch (err) {
      const code = err instanceof KmsEnvelopeError ? err.code : 'UNKNOWN';
      this.#telemetry.kmsCall(target, 1, performance.now() - started, code);
      throw err;
    }
  }

  /**
   * Runs `call(signal)` with the deadline, retries and breaker. The signal aborts at the
   * deadline (or when the caller's `signal` does); a call still running then is abandoned and
   * the caller gets a retryable ProviderUnavailableError.
   *
   * The first attempt runs without the retry machinery (p-retry and `AbortSignal.timeout` /
   * `AbortSignal.any` each cost several microseconds, more than a local unwrap): one
   * AbortController and one timer per call; retries start only after a retryable failure.
   */
  run<T>(target: KmsCallTarget, call: (signal: AbortSignal) => Promise<T>, signal?: AbortSignal): Promise<T> {
    const tracer = this.#tracer;
    // Not async: without a tracer, the same promise as before and no extra frame.
    if (tracer === undefined) return this.#run(target, call, signal, undefined);
    return traceAsync(
      tracer,
      SpanNames.kms(target.operation),
      kmsSpanOptions(target, SpanKindValue.client),
      (span) => this.#run(target, call, signal, span),
    );
  }

  async #run<T>(
    target: KmsCallTarget,
    call: (signal: AbortSignal) => Promise<T>,
    signal: AbortSignal | undefined,
    span: SpanLike | undefined,
  ): Promise<T> {
    const where = { index: target.index, slot: target.slot, provider: target.provider };
    const deadlineError = () =>
      new DeadlineExceededError(`KMS call did not finish within ${this.#options.deadlineMs} ms`, where);
    // A caller's own signal needs a bucket of its own; otherwise calls share one.
    const bucket = signal === undefined ? deadlines.bucket(this.#options.deadlineMs) : newBucket(0);
    let timer: NodeJS.Timeout | undefined;
    if (signal !== undefined) {
      timer = setTimeout(bucket.expire, this.#options.deadlineMs);
      if (signal.aborted) bucket.expire();
      else signal.addEventListener('abort', bucket.expire, { once: true });
    }
    const overall = bucket.signal;
    const expired = bucket.expired;
    try {
      try {
        return await this.#attempt(target, call, overall, expired, 1, deadlineError, span);
      } catch (first) {
        if (!isRetryable(first) || overall.aborted || this.#options.retries === 0) throw first;
        await sleep(
          backoff(
            this.#options.minBackoffMs,
            (first as { retryAfterMs?: number }).retryAfterMs,
            this.#options.maxBackoffMs,
          ),
          overall,
        );
        return await pRetry(
          (n) => this.#attempt(target, call, overall, expired, n + 1, deadlineError, span),
          {
            retries: this.#options.retries - 1,
            factor: 2,
            minTimeout: this.#options.minBackoffMs * 2,
            maxTimeout: this.#options.maxBackoffMs,
            randomize: true,
            signal: overall,
            shouldRetry: ({ error }) => isRetryable(error) && !overall.aborted,
            onFailedAttempt: async ({ error }) => {
              // Honour the service's retry-after (beyond p-retry's own backoff).
              const wait = (error as { retryAfterMs?: number }).retryAfterMs;
              if (isRetryable(error) && wait !== undefined && wait > 0) {
                await sleep(Math.min(wait, this.#options.maxBackoffMs * 4), overall);
              }
            },
          },
        );
      }
    } catch (err) {
      if (err instanceof KmsEnvelopeError) throw err;
      // p-retry's own AbortError when the deadline passes between attempts.
      if (overall.aborted) throw deadlineError();
      throw err;
    } finally {
      if (signal !== undefined) {
        clearTimeout(timer);
        signal.removeEventListener('abort', bucket.expire);
      }
    }
  }

  async #attempt<T>(
    target: KmsCallTarget,
    call: (signal: AbortSignal) => Promise<T>,
    overall: AbortSignal,
    expired: Promise<never>,
    attempt: number,
    deadlineError: () => Error,
    span: SpanLike | undefined,
  ): Promise<T> {
    if (overall.aborted) throw deadlineError();
    const started = performance.now();
    span?.setAttribute(TraceAttribute.attempts, attempt);
    try {
      const thunk = () => Promise.race([call(overall), expired]);
      const result = this.#options.breaker
        ? ((await this.#breaker(target.slot).fire(thunk)) as T)
        : await thunk();
      this.#telemetry.kmsCall(target, attempt, performance.now() - started, 'ok');
      return result;
    } catch (raw) {
      let err = raw === EXPIRED ? deadlineError() : raw;
      if ((raw as { code?: string })?.code === 'EOPENBREAKER') {
        this.#telemetry.circuitOpen(target.slot);
        err = new CircuitOpenError('the KMS slot keeps failing; failing fast until it recovers', {
          index: target.index,
          slot: target.slot,
          provider: target.provider,
        });
      }
      const durationMs = performance.now() - started;
      const outcome = outcomeOf(err);
      this.#telemetry.kmsCall(target, attempt, durationMs, outcome);
      span?.addEvent?.(SpanNames.kmsAttemptFailed, {
        [TraceAttribute.attempt]: attempt,
        [TraceAttribute.outcome]: outcome,
        [TraceAttribute.durationMs]: durationMs,
      });
      throw err;
    }
  }
}

/** The first backoff: jittered ×1–2, or the service's retry-after when it said one. */
function backoff(minMs: number, retryAfterMs: number | undefined, maxMs: number): number {
  if (retryAfterMs !== undefined && retryAfterMs > 0) return Math.min(retryAfterMs, maxMs * 4);
  return Math.min(minMs * (1 + Math.random()), maxMs);
}
