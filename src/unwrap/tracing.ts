/**
 * OpenTelemetry-style tracing of KMS calls and store operations, without any dependency: the
 * client takes any object shaped like an OpenTelemetry `Tracer` ({@link TracerLike}, e.g.
 * `trace.getTracer('kms-envelope')` from `@opentelemetry/api`), or `'opentelemetry'` for the
 * global tracer provider's tracer through the optional peer `@opentelemetry/api`
 * ({@link openTelemetryTracer}).
 *
 * Spans (see {@link SpanNames}):
 * - `kms-envelope.kms.wrap` / `.unwrap` / `.rewrap`: one span per KMS call, retries and backoff
 *   included (a call, not an attempt, is what a request waits for). `kms_envelope.attempts` says
 *   how many attempts it took; each failed attempt is an event `kms-envelope.kms.attempt_failed`
 *   with its number, outcome and duration. Started as the active span where the tracer can
 *   (`startActiveSpan`), so spans of the cloud SDK's own HTTP instrumentation nest under it.
 *   Only a cache miss (or a create, rotate, verify) calls the KMS: a cache hit makes no span.
 * - `kms-envelope.store.get` / `.create` / `.push` / `.delete`: one span per store operation of
 *   the envelope (record reads and writes of the keyring are not traced).
 *
 * Attributes are those of the metrics, namespaced: `kms_envelope.slot`, `kms_envelope.provider`,
 * `kms_envelope.index`, `kms_envelope.outcome` (`ok` or the error code), `kms_envelope.store`
 * (the store's kind), `error.type` on failure. Never a key byte, a wrapped KEK, a plaintext, or a
 * store's description (a path or URL).
 *
 * Errors: a typed error ({@link KmsEnvelopeError}, whose messages carry no key material by
 * design) is recorded as an exception with its code, name, message and stack, but not its
 * `cause` (a cloud SDK's error, which kms-envelope does not control); any other error is recorded
 * by its class name only. The span status is ERROR with the code as its message; a success
 * leaves the status unset, as OpenTelemetry asks of instrumentation libraries.
 *
 * With no tracer nothing here runs: the callers test for `undefined` once.
 *
 * @module
 */
import { KmsEnvelopeError } from '../errors.js';
import { loadOpenTelemetryApi } from './telemetry.js';

/** A span attribute value, as OpenTelemetry takes it. */
export type TraceAttributeValue = string | number | boolean;
/** Span attributes. */
export type TraceAttributes = Record<string, TraceAttributeValue>;

/** The structural subset of an OpenTelemetry `Span` used here. */
export interface SpanLike {
  /** Sets one attribute. */
  setAttribute(key: string, value: TraceAttributeValue): unknown;
  /** Sets the status (`code` 2 is an error). */
  setStatus(status: { code: number; message?: string }): unknown;
  /** Adds a timed event (a failed attempt of a retried call). */
  addEvent?(name: string, attributes?: TraceAttributes): unknown;
  /** Records an error: our typed errors with code, name, message and stack, never a cause. */
  recordException?(exception: { name: string; code?: string; message?: string; stack?: string }): unknown;
  /** Ends the span. */
  end(): void;
}

/** Options of a new span, as OpenTelemetry's `SpanOptions` has them. */
export interface SpanOptionsLike {
  /** OpenTelemetry's `SpanKind` (0 internal, 2 client). */
  kind?: number;
  /** The span's first attributes. */
  attributes?: TraceAttributes;
}

/**
 * The structural subset of an OpenTelemetry `Tracer` used here: `startSpan`, and
 * `startActiveSpan` when the tracer has it (then the span is the active one while the traced
 * call runs, so spans started inside nest under it).
 */
export interface TracerLike {
  /** Starts a span (not made active). */
  startSpan(name: string, options?: SpanOptionsLike): SpanLike;
  /** Starts a span and runs `fn` with it as the active span. */
  startActiveSpan?(name: string, options: SpanOptionsLike, fn: (span: SpanLike) => unknown): unknown;
}

/** Span names. */
export const SpanNames = {
  /** A KMS call: `kms-envelope.kms.wrap`, `.unwrap`, `.rewrap` (`.call` when unnamed). */
  kms: (operation: KmsOperation | undefined) => `kms-envelope.kms.${operation ?? 'call'}`,
  /** The event of a failed attempt inside a retried KMS call's span. */
  kmsAttemptFailed: 'kms-envelope.kms.attempt_failed',
  /** An envelope read (`get`, or `getEncoded` with `kms_envelope.store.encoded`). */
  storeGet: 'kms-envelope.store.get',
  /** A strict create. */
  storeCreate: 'kms-envelope.store.create',
  /** A push (upsert, or compare-and-set with `kms_envelope.store.expected_version`). */
  storePush: 'kms-envelope.store.push',
  /** A delete. */
  storeDelete: 'kms-envelope.store.delete',
} as const;

/** What a KMS call does, for its span's name. */
export type KmsOperation = 'wrap' | 'unwrap' | 'rewrap';

/** Attribute keys. */
export const TraceAttribute = {
  /** The KMS slot. */
  slot: 'kms_envelope.slot',
  /** The provider id. */
  provider: 'kms_envelope.provider',
  /** The index. */
  index: 'kms_envelope.index',
  /** `ok`, or the error code. */
  outcome: 'kms_envelope.outcome',
  /** How many attempts a KMS call took. */
  attempts: 'kms_envelope.attempts',
  /** On a failed-attempt event: which attempt. */
  attempt: 'kms_envelope.attempt',
  /** On a failed-attempt event: how long it took. */
  durationMs: 'kms_envelope.duration_ms',
  /** The store's kind (`memory`, `disk`, `redis`, `postgres`, …). */
  store: 'kms_envelope.store',
  /** On `store.get`: the raw stored bytes were read (`getEncoded`, the every-call cache). */
  encoded: 'kms_envelope.store.encoded',
  /** On `store.push`: a compare-and-set on this expected version. */
  expectedVersion: 'kms_envelope.store.expected_version',
  /** On failure: the error code, or a plain class name. */
  errorType: 'error.type',
} as const;

/** OpenTelemetry's `SpanKind` values used here. */
export const SpanKindValue = { internal: 0, client: 2 } as const;
/** OpenTelemetry's `SpanStatusCode.ERROR`. */
const STATUS_ERROR = 2;

/**
 * The tracer named `kms-envelope` from the global OpenTelemetry tracer provider, through the
 * optional peer `@opentelemetry/api` (loaded here, synchronously, only when asked for). Spans go
 * wherever the application's tracer provider sends them; with none registered they are no-ops.
 * @throws MissingDependencyError when `@opentelemetry/api` is not installed.
 */
export function openTelemetryTracer(): TracerLike {
  const api = loadOpenTelemetryApi<{ trace: { getTracer(name: string): TracerLike } }>(
    "the client's tracing: 'opentelemetry'",
  );
  return api.trace.getTracer('kms-envelope');
}

/** The tracer of a client's `tracing` option: `undefined` (off), a tracer, or the global one. */
export function resolveTracer(option: TracerLike | 'opentelemetry' | undefined): TracerLike | undefined {
  return option === 'opentelemetry' ? openTelemetryTracer() : option;
}

/** The outcome attribute of an error: its code when it is one of ours, else `UNKNOWN`. */
export function outcomeOf(err: unknown): string {
  return err instanceof KmsEnvelopeError ? err.code : 'UNKNOWN';
}

/** A class name that is safe to record (an identifier), or `Error`. */
function errorType(err: unknown): string {
  if (err instanceof KmsEnvelopeError) return err.code;
  const name = (err as { constructor?: { name?: unknown } } | null | undefined)?.constructor?.name;
  return typeof name === 'string' && /^[A-Za-z_$][\w$]{0,63}$/.test(name) ? name : 'Error';
}

/** Ends `span` as failed by `err`, recording only what may be recorded (see the module notes). */
export function failSpan(span: SpanLike, err: unknown): void {
  const outcome = outcomeOf(err);
  const type = errorType(err);
  span.setAttribute(TraceAttribute.outcome, outcome);
  span.setAttribute(TraceAttribute.errorType, type);
  if (err instanceof KmsEnvelopeError) {
    // A plain object: the exporter sees these four fields and never the error's `cause`.
    span.recordException?.({ name: err.name, code: err.code, message: err.message, stack: err.stack ?? '' });
  } else {
    span.recordException?.({ name: type });
  }
  span.setStatus({ code: STATUS_ERROR, message: outcome });
}

/** Starts a span (the active one where the tracer can) and runs `body` with it. */
function withSpan<R>(
  tracer: TracerLike,
  name: string,
  options: SpanOptionsLike,
  body: (span: SpanLike) => R,
): R {
  if (typeof tracer.startActiveSpan === 'function') return tracer.startActiveSpan(name, options, body) as R;
  return body(tracer.startSpan(name, options));
}

/**
 * Runs `fn` in a span named `name`: ended with `kms_envelope.outcome` = `ok` when the promise
 * resolves, failed ({@link failSpan}) when it rejects (or `fn` throws), then rethrown.
 */
export function traceAsync<T>(
  tracer: TracerLike,
  name: string,
  options: SpanOptionsLike,
  fn: (span: SpanLike) => Promise<T>,
): Promise<T> {
  return withSpan(tracer, name, options, (span) => {
    let running: Promise<T>;
    try {
      running = fn(span);
    } catch (err) {
      running = Promise.reject(err);
    }
    return running.then(
      (value) => {
        span.setAttribute(TraceAttribute.outcome, 'ok');
        span.end();
        return value;
      },
      (err: unknown) => {
        failSpan(span, err);
        span.end();
        throw err;
      },
    );
  });
}

/** As {@link traceAsync}, for a synchronous `fn`. */
export function traceSync<T>(tracer: TracerLike, name: string, options: SpanOptionsLike, fn: () => T): T {
  return withSpan(tracer, name, options, (span) => {
    try {
      const value = fn();
      span.setAttribute(TraceAttribute.outcome, 'ok');
      return value;
    } catch (err) {
      failSpan(span, err);
      throw err;
    } finally {
      span.end();
    }
  });
}

/** The attributes of a KMS call's span. */
export function kmsSpanOptions(
  target: { readonly slot: string; readonly provider: string; readonly index: string },
  kind: number,
): SpanOptionsLike {
  return {
    kind,
    attributes: {
      [TraceAttribute.slot]: target.slot,
      [TraceAttribute.provider]: target.provider,
      [TraceAttribute.index]: target.index,
    },
  };
}
