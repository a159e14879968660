/**
 * Tracing with the real OpenTelemetry tracing SDK: the spans of KMS calls (one per call, attempts
 * as events) and of store operations, their attributes and nesting, what an error records (a
 * typed error's message, never its cause; only the class of anything else), `'opentelemetry'`
 * through the global tracer provider, and that no span holds key bytes in any encoding.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { context, SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  type ReadableSpan,
  SimpleSpanProcessor,
} from '@opentelemetry/sdk-trace-base';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createLocalProvider } from '../../providers/local.js';
import { KmsEnvelopeClient } from '../../src/client.js';
import type { KmsBlob } from '../../src/envelope/kms-blob.js';
import {
  EnvelopeNotFoundError,
  ProviderUnavailableError,
  UnwrapFailedError,
  VersionConflictError,
} from '../../src/errors.js';
import { Kek } from '../../src/keys/kek.js';
import { parseIndexName, parseSlotName } from '../../src/names.js';
import type { WrappedKek } from '../../src/providers/provider.js';
import { StorageConfig } from '../../src/storage/config.js';
import { DiskStore } from '../../src/storage/disk.js';
import { tracedStore } from '../../src/storage/traced-store.js';
import { KmsCaller } from '../../src/unwrap/kms-calls.js';
import { Telemetry } from '../../src/unwrap/telemetry.js';
import { openTelemetryTracer, type SpanLike, type TracerLike } from '../../src/unwrap/tracing.js';

const exporter = new InMemorySpanExporter();
const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
const tracer: TracerLike = provider.getTracer('test');
const contextManager = new AsyncLocalStorageContextManager();

beforeAll(() => {
  context.setGlobalContextManager(contextManager.enable());
});
afterAll(() => {
  context.disable();
});
afterEach(() => {
  exporter.reset();
  trace.disable();
});

const spans = (name?: string) =>
  exporter.getFinishedSpans().filter((span) => name === undefined || span.name === name);
const only = (name: string): ReadableSpan => {
  const found = spans(name);
  expect(found, name).toHaveLength(1);
  return found[0]!;
};
const parentOf = (span: ReadableSpan) => span.parentSpanContext?.spanId;
/** Everything a span exports, as text. */
const exported = () =>
  JSON.stringify(
    spans().map((s) => ({ name: s.name, attributes: s.attributes, events: s.events, status: s.status })),
  );

const index = parseIndexName('orders');
const slot = parseSlotName('dev');
const target = { slot, provider: 'local', index, operation: 'unwrap' as const };
/** A caller tracing to `t` (`null`: no tracer). */
const caller = (t: TracerLike | null = tracer) =>
  new KmsCaller(
    { retries: 2, minBackoffMs: 1, maxBackoffMs: 2, breaker: false },
    new Telemetry(),
    t ?? undefined,
  );

describe('KMS call spans', () => {
  it('one CLIENT span per call named after its operation, with slot, provider, index, outcome, attempts', async () => {
    expect(await caller().run(target, async () => 42)).toBe(42);
    const span = only('kms-envelope.kms.unwrap');
    expect(span.kind).toBe(SpanKind.CLIENT);
    expect(span.attributes).toEqual({
      'kms_envelope.slot': 'dev',
      'kms_envelope.provider': 'local',
      'kms_envelope.index': 'orders',
      'kms_envelope.outcome': 'ok',
      'kms_envelope.attempts': 1,
    });
    expect(span.status.code).toBe(SpanStatusCode.UNSET);
    expect(span.events).toEqual([]);
    await caller().run({ ...target, operation: 'wrap' }, async () => 1);
    await caller().run({ slot, provider: 'local', index }, async () => 1);
    expect(spans().map((s) => s.name)).toEqual([
      'kms-envelope.kms.unwrap',
      'kms-envelope.kms.wrap',
      'kms-envelope.kms.call',
    ]);
  });

  it('retries stay in the one span: an event per failed attempt, attempts counts them', async () => {
    let n = 0;
    const result = await caller().run(target, async () => {
      if (++n < 3) throw new ProviderUnavailableError('injected: unavailable');
      return 'ok';
    });
    expect(result).toBe('ok');
    const span = only('kms-envelope.kms.unwrap');
    expect(span.attributes['kms_envelope.attempts']).toBe(3);
    expect(span.attributes['kms_envelope.outcome']).toBe('ok');
    expect(span.events.map((e) => e.name)).toEqual([
      'kms-envelope.kms.attempt_failed',
      'kms-envelope.kms.attempt_failed',
    ]);
    expect(span.events.map((e) => e.attributes?.['kms_envelope.attempt'])).toEqual([1, 2]);
    expect(span.events[0]?.attributes?.['kms_envelope.outcome']).toBe('KMS_ENVELOPE_UNAVAILABLE');
    expect(typeof span.events[0]?.attributes?.['kms_envelope.duration_ms']).toBe('number');
  });

  it('a typed error: status ERROR with its code, the exception with its message but never its cause', async () => {
    const secretInCause = randomBytes(16).toString('hex');
    const err = await caller()
      .run(target, async () => {
        throw new UnwrapFailedError('the wrapped KEK did not authenticate', {
          ...target,
          cause: new Error(`SDK said ${secretInCause}`),
        });
      })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UnwrapFailedError);
    const span = only('kms-envelope.kms.unwrap');
    expect(span.status).toEqual({ code: SpanStatusCode.ERROR, message: 'KMS_ENVELOPE_UNWRAP_FAILED' });
    expect(span.attributes['kms_envelope.outcome']).toBe('KMS_ENVELOPE_UNWRAP_FAILED');
    expect(span.attributes['error.type']).toBe('KMS_ENVELOPE_UNWRAP_FAILED');
    const exception = span.events.find((e) => e.name === 'exception');
    expect(exception?.attributes?.['exception.message']).toBe((err as Error).message);
    expect(exception?.attributes?.['exception.type']).toBe('KMS_ENVELOPE_UNWRAP_FAILED');
    // Not retried (not retryable): one attempt.
    expect(span.attributes['kms_envelope.attempts']).toBe(1);
    expect(exported()).not.toContain(secretInCause);
  });

  it('any other error is recorded by its class name only: its message may hold anything', async () => {
    const secret = randomBytes(32);
    for (const thrown of [
      new TypeError(`bad key ${secret.toString('hex')}`),
      Object.assign(Object.create(null), { message: secret.toString('base64') }),
      `raw string ${secret.toString('base64url')}`,
    ]) {
      await expect(
        caller().run(target, async () => {
          throw thrown;
        }),
      ).rejects.toBe(thrown);
    }
    const [typeError, nullProto, text] = spans('kms-envelope.kms.unwrap');
    expect(typeError?.attributes['error.type']).toBe('TypeError');
    expect(nullProto?.attributes['error.type']).toBe('Error');
    expect(text?.attributes['error.type']).toBe('String');
    for (const span of [typeError, nullProto, text]) {
      expect(span?.attributes['kms_envelope.outcome']).toBe('UNKNOWN');
      expect(span?.status).toEqual({ code: SpanStatusCode.ERROR, message: 'UNKNOWN' });
    }
    for (const form of ['hex', 'base64', 'base64url'] as const) {
      expect(exported()).not.toContain(secret.toString(form));
    }
  });

  it('runSync (a local unwrap) gets an INTERNAL span, failures included', () => {
    expect(caller().runSync(target, () => 7)).toBe(7);
    expect(() =>
      caller().runSync(target, () => {
        throw new UnwrapFailedError('tampered', target);
      }),
    ).toThrow(UnwrapFailedError);
    const [ok, failed] = spans('kms-envelope.kms.unwrap');
    expect(ok?.kind).toBe(SpanKind.INTERNAL);
    expect(ok?.attributes['kms_envelope.outcome']).toBe('ok');
    expect(failed?.attributes['kms_envelope.outcome']).toBe('KMS_ENVELOPE_UNWRAP_FAILED');
    expect(failed?.status.code).toBe(SpanStatusCode.ERROR);
  });

  it('nests under the caller’s active span, and what the provider starts nests under it', async () => {
    const outer = provider.getTracer('app');
    await outer.startActiveSpan('request', async (request) => {
      await caller().run(target, async () => {
        outer.startSpan('sdk.http').end(); // as a cloud SDK's HTTP instrumentation would
        return 1;
      });
      request.end();
    });
    const kms = only('kms-envelope.kms.unwrap');
    expect(parentOf(kms)).toBe(only('request').spanContext().spanId);
    expect(parentOf(only('sdk.http'))).toBe(kms.spanContext().spanId);
  });

  it('a tracer with only startSpan works too (no nesting of what runs inside)', async () => {
    const started: { name: string; ended: boolean; attributes: Record<string, unknown> }[] = [];
    const minimal: TracerLike = {
      startSpan(name, options) {
        const record = { name, ended: false, attributes: { ...options?.attributes } };
        started.push(record);
        const span: SpanLike = {
          setAttribute: (key, value) => {
            record.attributes[key] = value;
          },
          setStatus: () => {},
          end: () => {
            record.ended = true;
          },
        };
        return span;
      },
    };
    await caller(minimal).run(target, async () => 1);
    await expect(
      caller(minimal).run(target, async () => {
        throw new ProviderUnavailableError('down');
      }),
    ).rejects.toThrow(ProviderUnavailableError);
    expect(started).toHaveLength(2);
    expect(started.every((s) => s.ended)).toBe(true);
    expect(started[1]?.attributes['kms_envelope.outcome']).toBe('KMS_ENVELOPE_UNAVAILABLE');
  });

  it('without a tracer: no span, same results and errors (even with a global provider set)', async () => {
    trace.setGlobalTracerProvider(provider);
    expect(await caller(null).run(target, async () => 5)).toBe(5);
    expect(caller(null).runSync(target, () => 6)).toBe(6);
    await expect(
      caller(null).run(target, async () => {
        throw new UnwrapFailedError('x', target);
      }),
    ).rejects.toThrow(UnwrapFailedError);
    expect(spans()).toEqual([]);
  });

  it("openTelemetryTracer() is the global provider's tracer named kms-envelope", async () => {
    trace.setGlobalTracerProvider(provider);
    await caller(openTelemetryTracer()).run(target, async () => 1);
    expect(only('kms-envelope.kms.unwrap').instrumentationScope.name).toBe('kms-envelope');
  });
});

describe('store spans', () => {
  const blobOf = async () => {
    const local = createLocalProvider({ masterKey: randomBytes(32), keyId: 'k' });
    const kek = Kek.generate();
    const wrapped = await local.wrap(kek, { index, slot, encryptionContext: {} });
    kek.zero();
    return envelopeOf(wrapped, {});
  };

  it('get, create, push (with its expected version) and delete, with index, store kind and outcome', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ke-traced-'));
    const inner = StorageConfig.disk(dir);
    const store = tracedStore(inner, tracer);
    const blob = await blobOf();
    await store.create(index, blob);
    expect((await store.get(index)).version).toBe(1);
    await store.push(index, { ...blob, version: 2 }, { expectedVersion: 1 });
    await expect(store.push(index, { ...blob, version: 3 }, { expectedVersion: 1 })).rejects.toThrow(
      VersionConflictError,
    );
    await store.delete(index);
    await expect(store.get(index)).rejects.toThrow(EnvelopeNotFoundError);
    expect(spans().map((s) => s.name)).toEqual([
      'kms-envelope.store.create',
      'kms-envelope.store.get',
      'kms-envelope.store.push',
      'kms-envelope.store.push',
      'kms-envelope.store.delete',
      'kms-envelope.store.get',
    ]);
    const [create, get, push, conflict, , missing] = spans();
    expect(create?.kind).toBe(SpanKind.CLIENT);
    expect(get?.attributes).toEqual({
      'kms_envelope.index': 'orders',
      'kms_envelope.store': 'disk',
      'kms_envelope.outcome': 'ok',
    });
    expect(push?.attributes['kms_envelope.store.expected_version']).toBe(1);
    expect(conflict?.attributes['kms_envelope.outcome']).toBe('KMS_ENVELOPE_VERSION_CONFLICT');
    expect(missing?.status).toEqual({ code: SpanStatusCode.ERROR, message: 'KMS_ENVELOPE_NOT_FOUND' });
    // The store's description (a path) and the envelope's bytes are never recorded.
    expect(exported()).not.toContain(dir);
    for (const form of ['hex', 'base64', 'base64url'] as const) {
      expect(exported()).not.toContain(Buffer.from(blob.wrappedKek).toString(form));
    }
  });

  it('the traced view is the store: same kind, instanceof, optional and record methods, private fields', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ke-traced-'));
    const inner = StorageConfig.disk(dir);
    const store = tracedStore(inner, tracer);
    expect(store).toBeInstanceOf(DiskStore);
    expect(store.kind).toBe('disk');
    expect(store.description).toBe(inner.description);
    await store.create(index, await blobOf());
    // getEncoded is a traced get of the raw bytes.
    expect((await store.getEncoded!(index)).length).toBeGreaterThan(0);
    expect(spans().at(-1)?.attributes['kms_envelope.store.encoded']).toBe(true);
    // Record methods pass through, untraced, and work on the store's private state.
    await inner.putRecord(index, 'meta', 'r1', new Uint8Array([1, 2]));
    expect(await store.getRecord(index, 'meta', 'r1')).toEqual(new Uint8Array([1, 2]));
    expect(store.getRecord).toBe(store.getRecord); // one bound function, not a new one per read
    expect(spans().map((s) => s.name)).toEqual(['kms-envelope.store.create', 'kms-envelope.store.get']);
    // A store without getEncoded stays without it (the client then reads with get).
    const memory = StorageConfig.memory();
    const tracedMemory = tracedStore({ ...memoryLike(memory), getEncoded: undefined }, tracer);
    expect(tracedMemory.getEncoded).toBeUndefined();
    await store.close();
  });
});

/** A schema 1 envelope of `orders` around `wrapped`. */
function envelopeOf(wrapped: WrappedKek, encryptionContext: Record<string, string>): KmsBlob {
  return {
    kmsName: slot,
    provider: 'local',
    keyId: wrapped.keyId,
    region: wrapped.region,
    wrappedKek: new Uint8Array(wrapped.wrappedKek),
    indexName: index,
    encryptionContext,
    schemaVersion: 1,
    version: 1,
    createdAt: 1,
    updatedAt: 1,
    kekCheck: undefined,
  };
}

/** A plain-object store delegating to `store` (a plugin store without getEncoded). */
function memoryLike(store: ReturnType<typeof StorageConfig.memory>) {
  return {
    kind: 'plugin',
    description: 'plugin:test',
    create: store.create.bind(store),
    push: store.push.bind(store),
    get: store.get.bind(store),
    delete: store.delete.bind(store),
    close: store.close.bind(store),
  };
}

describe('no key bytes in any span', () => {
  it('a wrap and an unwrap of the local provider through the traced caller and store', async () => {
    const masterKey = randomBytes(32);
    const local = createLocalProvider({ masterKey, keyId: 'dev-master' });
    const store = tracedStore(StorageConfig.memory(), tracer);
    const calls = caller();
    const kek = Kek.generate();
    const context = { index, slot, encryptionContext: { tenant: 't1' } };
    const wrapped = await calls.run({ ...target, operation: 'wrap' }, (signal) =>
      local.wrap(kek, { ...context, signal }),
    );
    const blob = envelopeOf(wrapped, context.encryptionContext);
    await store.create(index, blob);
    const read = await store.get(index);
    const unwrapped = await calls.run(target, (signal) => local.unwrap(read, { ...context, signal }));
    expect(unwrapped.equals(kek)).toBe(true);
    expect(spans().map((s) => s.name)).toEqual([
      'kms-envelope.kms.wrap',
      'kms-envelope.store.create',
      'kms-envelope.store.get',
      'kms-envelope.kms.unwrap',
    ]);
    const text = exported();
    for (const bytes of [kek.expose(), masterKey, Buffer.from(wrapped.wrappedKek)]) {
      for (const form of ['hex', 'base64', 'base64url'] as const) {
        expect(text).not.toContain(bytes.toString(form));
      }
    }
    kek.zero();
    unwrapped.zero();
  });
});

describe('through KmsEnvelopeClient', () => {
  it('createIndex, a miss, a hit, a rotate and a delete: their spans, and no key bytes', async () => {
    const masterKey = randomBytes(32);
    const client = new KmsEnvelopeClient({
      store: StorageConfig.memory(),
      kms: {
        slots: { dev: { provider: 'local', masterKey: `literal:${masterKey.toString('base64url')}` } },
        secrets: { allowLiteral: true },
      },
      tracing: tracer,
    });
    const kek = await client.createIndex('orders', { slot: 'dev' });
    expect(spans().map((s) => s.name)).toEqual(['kms-envelope.kms.wrap', 'kms-envelope.store.create']);
    exporter.reset();
    (await client.unwrap('orders')).zero(); // miss: a store read and a KMS unwrap
    expect(spans().map((s) => s.name)).toEqual(['kms-envelope.store.get', 'kms-envelope.kms.unwrap']);
    expect(only('kms-envelope.kms.unwrap').attributes).toMatchObject({
      'kms_envelope.slot': 'dev',
      'kms_envelope.provider': 'local',
      'kms_envelope.index': 'orders',
      'kms_envelope.outcome': 'ok',
    });
    exporter.reset();
    (await client.unwrap('orders')).zero(); // hit: no I/O, no span
    expect(spans()).toEqual([]);
    await client.rotate('orders');
    await expect(client.unwrap('missing')).rejects.toThrow(EnvelopeNotFoundError);
    await client.delete('orders');
    const names = spans().map((s) => s.name);
    expect(names).toContain('kms-envelope.store.push');
    expect(names).toContain('kms-envelope.store.delete');
    expect(spans('kms-envelope.store.get').some((s) => s.status.code === SpanStatusCode.ERROR)).toBe(true);
    const text = exported();
    for (const bytes of [kek.expose(), masterKey]) {
      for (const form of ['hex', 'base64', 'base64url'] as const)
        expect(text).not.toContain(bytes.toString(form));
    }
    kek.zero();
    await client.close();
  });
});
