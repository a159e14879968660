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
import { CircuitOpenError, KmsEnvelopeError, ProviderUnavailableError } from '../errors.js';
import type { Telemetry } from './telemetry.js';

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

/** What one call is about, for errors, events and breakers. */
export interface KmsCallTarget {
  readonly slot: string;
  readonly provider: string;
  readonly index: string;
}

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

  constructor(options: KmsCallOptions, telemetry: Telemetry) {
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
   * Runs `call(signal)` with the deadline, retries and breaker. The signal aborts at the
   * deadline (or when the caller's `signal` does); a call still running then is abandoned and
   * the caller gets a retryable ProviderUnavailableError.
   */
  async run<T>(
    target: KmsCallTarget,
    call: (signal: AbortSignal) => Promise<T>,
    signal?: AbortSignal,
  ): Promise<T> {
    const where = { index: target.index, slot: target.slot, provider: target.provider };
    const deadline = AbortSignal.timeout(this.#options.deadlineMs);
    const overall = signal ? AbortSignal.any([signal, deadline]) : deadline;
    const deadlineError = () =>
      new ProviderUnavailableError(`KMS call did not finish within ${this.#options.deadlineMs} ms`, where);
    let attempt = 0;
    const once = async (): Promise<T> => {
      attempt++;
      if (overall.aborted) throw deadlineError();
      const started = performance.now();
      let aborted: (() => void) | undefined;
      const abortedPromise = new Promise<never>((_, reject) => {
        aborted = () => reject(deadlineError());
        overall.addEventListener('abort', aborted, { once: true });
      });
      try {
        const thunk = () => Promise.race([call(overall), abortedPromise]);
        const result = this.#options.breaker
          ? ((await this.#breaker(target.slot).fire(thunk)) as T)
          : await thunk();
        this.#telemetry.kmsCall({
          ...target,
          attempt,
          durationMs: performance.now() - started,
          outcome: 'ok',
        });
        return result;
      } catch (raw) {
        let err = raw;
        if ((raw as { code?: string })?.code === 'EOPENBREAKER') {
          this.#telemetry.circuitOpen(target.slot);
          err = new CircuitOpenError('the KMS slot keeps failing; failing fast until it recovers', where);
        }
        const outcome = err instanceof KmsEnvelopeError ? err.code : 'UNKNOWN';
        this.#telemetry.kmsCall({ ...target, attempt, durationMs: performance.now() - started, outcome });
        throw err;
      } finally {
        if (aborted) overall.removeEventListener('abort', aborted);
        abortedPromise.catch(() => {});
      }
    };
    return pRetry(once, {
      retries: this.#options.retries,
      factor: 2,
      minTimeout: this.#options.minBackoffMs,
      maxTimeout: this.#options.maxBackoffMs,
      randomize: true,
      signal: overall,
      shouldRetry: ({ error }) => isRetryable(error) && !overall.aborted,
      onFailedAttempt: async ({ error }) => {
        // Honour the service's retry-after (beyond p-retry's own backoff).
        const wait = (error as { retryAfterMs?: number }).retryAfterMs;
        if (isRetryable(error) && wait !== undefined && wait > 0)
          await sleep(Math.min(wait, this.#options.maxBackoffMs * 4), overall);
      },
    }).catch((err: unknown) => {
      if (err instanceof KmsEnvelopeError) throw err;
      // p-retry's own AbortError when the deadline passes between attempts.
      if (overall.aborted) throw deadlineError();
      throw err;
    });
  }
}
