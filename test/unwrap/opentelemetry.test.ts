/**
 * The OpenTelemetry hook with the real OpenTelemetry metrics SDK: what the client records (unwraps
 * by cache outcome, hits, latency, KMS calls by outcome, evictions), that `meter: 'opentelemetry'`
 * uses the global meter provider, and that no recorded name, attribute or value holds key bytes.
 */
import { randomBytes } from 'node:crypto';
import { metrics } from '@opentelemetry/api';
import {
  AggregationTemporality,
  InMemoryMetricExporter,
  MeterProvider,
  PeriodicExportingMetricReader,
} from '@opentelemetry/sdk-metrics';
import { afterEach, expect, it } from 'vitest';
import { KmsEnvelopeClient } from '../../src/client.js';
import { Kek } from '../../src/keys/kek.js';
import { StorageConfig } from '../../src/storage/config.js';

function sdk() {
  const reader = new PeriodicExportingMetricReader({
    exporter: new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE),
    exportIntervalMillis: 3_600_000,
  });
  const provider = new MeterProvider({ readers: [reader] });
  /** Every data point by instrument name, as `{ attributes, value }`. */
  const collect = async () => {
    const { resourceMetrics } = await reader.collect();
    const out = new Map<string, { attributes: Record<string, unknown>; value: unknown }[]>();
    for (const scope of resourceMetrics.scopeMetrics) {
      for (const metric of scope.metrics) {
        out.set(
          metric.descriptor.name,
          metric.dataPoints.map((p) => ({ attributes: p.attributes, value: p.value })),
        );
      }
    }
    return { points: out, raw: JSON.stringify(resourceMetrics) };
  };
  return { provider, collect };
}

const master = () => `literal:${randomBytes(32).toString('base64url')}`;

afterEach(() => metrics.disable());

it('records unwraps, cache hits, latency, KMS calls and evictions on a real OpenTelemetry meter', async () => {
  const { provider, collect } = sdk();
  const client = new KmsEnvelopeClient({
    store: StorageConfig.memory(),
    kms: { slots: { dev: { provider: 'local', masterKey: master() } }, secrets: { allowLiteral: true } },
    meter: provider.getMeter('test'),
  });
  const kek = await client.createIndex('orders', { slot: 'dev' });
  for (let i = 0; i < 3; i++) (await client.unwrap('orders')).zero(); // 1 miss, 2 hits
  client.invalidate('orders');
  await expect(client.unwrap('missing')).rejects.toThrow();
  const { points, raw } = await collect();

  const unwraps = points.get('kms_envelope.unwraps') ?? [];
  expect(unwraps).toContainEqual({
    attributes: { slot: 'dev', provider: 'local', cache: 'miss', outcome: 'ok' },
    value: 1,
  });
  expect(points.get('kms_envelope.cache.hits')).toEqual([{ attributes: {}, value: 2 }]);
  const latency = points.get('kms_envelope.unwrap.duration')?.[0]?.value as { count: number };
  expect(latency.count).toBeGreaterThanOrEqual(1);
  const kmsCalls = points.get('kms_envelope.kms.calls') ?? [];
  // The create's wrap and the miss's unwrap.
  expect(kmsCalls).toContainEqual({
    attributes: { slot: 'dev', provider: 'local', outcome: 'ok' },
    value: 2,
  });
  expect(points.get('kms_envelope.cache.evictions')).toContainEqual({
    attributes: { reason: 'invalidate' },
    value: 1,
  });
  for (const form of ['hex', 'base64', 'base64url'] as const) {
    expect(raw).not.toContain(kek.expose().toString(form));
  }
  kek.zero();
  await client.close();
  await provider.shutdown();
});

it("meter: 'opentelemetry' records on the global meter provider", async () => {
  const { provider, collect } = sdk();
  metrics.setGlobalMeterProvider(provider);
  const client = new KmsEnvelopeClient({
    store: StorageConfig.memory(),
    kms: { slots: { dev: { provider: 'local', masterKey: master() } }, secrets: { allowLiteral: true } },
    meter: 'opentelemetry',
  });
  const kek = await client.createIndex('orders', { slot: 'dev', kek: Kek.generate() });
  (await client.unwrap('orders')).zero();
  (await client.unwrap('orders')).zero();
  const { points } = await collect();
  expect(points.get('kms_envelope.cache.hits')).toEqual([{ attributes: {}, value: 1 }]);
  expect(points.get('kms_envelope.unwraps')?.[0]?.attributes).toMatchObject({ cache: 'miss' });
  kek.zero();
  await client.close();
  await provider.shutdown();
});
