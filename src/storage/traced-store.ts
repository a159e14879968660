import type { KmsBlob } from '../envelope/kms-blob.js';
import type { IndexName } from '../names.js';
import {
  SpanKindValue,
  SpanNames,
  type SpanOptionsLike,
  TraceAttribute,
  type TraceAttributes,
  type TracerLike,
  traceAsync,
} from '../unwrap/tracing.js';
import type { EnvelopeStore, PushOptions } from './store.js';

/**
 * `store` with a span around each envelope operation (`kms-envelope.store.get`, `.create`,
 * `.push`, `.delete`; `getEncoded` is a `.get` with `kms_envelope.store.encoded`), attributes
 * `kms_envelope.index`, `kms_envelope.store` (its kind) and the outcome (see `unwrap/tracing.ts`).
 *
 * Everything else (`kind`, `description`, `close`, the record methods, a plugin's own members)
 * is the store's own, called on the store itself, so the view behaves exactly like the store:
 * same optional methods, same `instanceof`, private fields intact. A span never carries the
 * envelope, its wrapped KEK, or the store's description.
 */
export function tracedStore<S extends EnvelopeStore>(store: S, tracer: TracerLike): S {
  const options = (index: IndexName, extra?: TraceAttributes): SpanOptionsLike => ({
    kind: SpanKindValue.client,
    attributes: { [TraceAttribute.index]: index, [TraceAttribute.store]: store.kind, ...extra },
  });
  const traced: Partial<Record<keyof EnvelopeStore, unknown>> = {
    get: (index: IndexName) => traceAsync(tracer, SpanNames.storeGet, options(index), () => store.get(index)),
    create: (index: IndexName, blob: KmsBlob) =>
      traceAsync(tracer, SpanNames.storeCreate, options(index), () => store.create(index, blob)),
    push: (index: IndexName, blob: KmsBlob, push?: PushOptions) =>
      traceAsync(
        tracer,
        SpanNames.storePush,
        options(
          index,
          push?.expectedVersion === undefined
            ? undefined
            : { [TraceAttribute.expectedVersion]: push.expectedVersion },
        ),
        () => store.push(index, blob, push),
      ),
    delete: (index: IndexName) =>
      traceAsync(tracer, SpanNames.storeDelete, options(index), () => store.delete(index)),
  };
  if (typeof store.getEncoded === 'function') {
    const getEncoded = store.getEncoded.bind(store);
    traced.getEncoded = (index: IndexName) =>
      traceAsync(tracer, SpanNames.storeGet, options(index, { [TraceAttribute.encoded]: true }), () =>
        getEncoded(index),
      );
  }
  const bound = new Map<PropertyKey, unknown>();
  return new Proxy(store, {
    get(target, property) {
      if (Object.hasOwn(traced, property)) return traced[property as keyof EnvelopeStore];
      const value: unknown = Reflect.get(target, property, target);
      if (typeof value !== 'function') return value;
      // Called on the store itself: its methods may use private fields, which a proxy lacks.
      let method = bound.get(property);
      if (method === undefined || (method as { original?: unknown }).original !== value) {
        method = Object.assign((value as (...args: unknown[]) => unknown).bind(target), { original: value });
        bound.set(property, method);
      }
      return method;
    },
  });
}
