import { describe, expect, it } from 'vitest';
import { KmsEnvelopeClient, type KmsEnvelopeClientOptions } from '../../src/client.js';
import {
  AccessDeniedError,
  CircuitOpenError,
  DeadlineExceededError,
  KeyDisabledError,
  KeyNotFoundError,
  ProviderUnavailableError,
  UnwrapFailedError,
} from '../../src/errors.js';
import { StorageConfig } from '../../src/storage/config.js';
import { faultProvider } from './fault-provider.js';

async function setup(options: Partial<KmsEnvelopeClientOptions> = {}) {
  const { controls, factory } = faultProvider();
  const client = new KmsEnvelopeClient({
    store: StorageConfig.memory(),
    kms: { slots: { a: { provider: 'fault' } }, providers: { fault: factory } },
    cache: false,
    ...options,
  });
  const kek = await client.createIndex('idx', { slot: 'a' });
  return { client, controls, kek };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('KMS calls: deadline, retries, circuit breaker', () => {
  it('50% failures: retried with backoff until they succeed', async () => {
    const { client, controls, kek } = await setup({
      kmsCalls: { retries: 3, minBackoffMs: 5, breaker: false },
    });
    controls.fail = 'alternate';
    for (let i = 0; i < 10; i++) expect((await client.unwrap('idx')).equals(kek)).toBe(true);
    expect(controls.unwrapCalls).toBe(20);
    expect(client.stats().slots.a).toMatchObject({
      retries: 10,
      kmsErrors: { KMS_ENVELOPE_UNAVAILABLE: 10 },
    });
  });

  it('100% failures: fail closed with a typed, retryable error within the deadline', async () => {
    const { client, controls } = await setup({
      kmsCalls: { retries: 50, minBackoffMs: 20, deadlineMs: 300, breaker: false },
    });
    controls.fail = 'all';
    const started = performance.now();
    const err = await client.unwrap('idx').catch((e: unknown) => e);
    const elapsed = performance.now() - started;
    expect(err).toBeInstanceOf(ProviderUnavailableError);
    expect((err as ProviderUnavailableError).retryable).toBe(true);
    expect((err as Error).message).toMatch(/index "idx".*slot "a".*provider "fault"/);
    expect(elapsed).toBeLessThan(600);
    expect(controls.unwrapCalls).toBeGreaterThan(2);
  });

  it('a slow KMS is cut at the deadline, and the provider’s call is told to stop (its signal aborts)', async () => {
    const { client, controls } = await setup({ kmsCalls: { retries: 0, deadlineMs: 150 } });
    controls.delayMs = 2000;
    const started = performance.now();
    await expect(client.unwrap('idx')).rejects.toThrow(DeadlineExceededError);
    expect(performance.now() - started).toBeLessThan(1500);
    // The signal the provider got is the deadline's: it has fired, so the SDK call was aborted.
    expect(controls.unwrapSignals).toHaveLength(1);
    expect(controls.unwrapSignals[0]?.aborted).toBe(true);
  });

  it('retries wait at least the minimum backoff between attempts', async () => {
    const { client, controls } = await setup({
      kmsCalls: { retries: 3, minBackoffMs: 40, maxBackoffMs: 200, deadlineMs: 5000, breaker: false },
    });
    controls.fail = 'all';
    await expect(client.unwrap('idx')).rejects.toThrow(ProviderUnavailableError);
    expect(controls.unwrapTimes).toHaveLength(4);
    const gaps = controls.unwrapTimes.slice(1).map((t, i) => t - controls.unwrapTimes[i]!);
    for (const gap of gaps) expect(gap).toBeGreaterThanOrEqual(38); // timers may fire ~1 ms early
  });

  it('not found, disabled keys, access denied and unwrap failures are never retried', async () => {
    const { client, controls } = await setup({ kmsCalls: { retries: 5, minBackoffMs: 1 } });
    controls.fail = 'all';
    for (const make of [
      () => new KeyNotFoundError('injected: no such key'),
      () => new KeyDisabledError('injected: disabled'),
      () => new AccessDeniedError('injected: denied'),
      () => new UnwrapFailedError('injected: bad tag'),
    ]) {
      const before = controls.unwrapCalls;
      controls.error = make;
      await expect(client.unwrap('idx')).rejects.toThrow(make().constructor as new () => Error);
      expect(controls.unwrapCalls - before).toBe(1);
    }
  });

  it('the caller’s own signal aborts too', async () => {
    const { client, controls } = await setup({ kmsCalls: { retries: 0, deadlineMs: 5000 } });
    controls.delayMs = 2000;
    const started = performance.now();
    await expect(client.unwrap('idx', { signal: AbortSignal.timeout(100) })).rejects.toThrow(
      ProviderUnavailableError,
    );
    expect(performance.now() - started).toBeLessThan(500);
  });

  it('access denied and unwrap failures are never retried', async () => {
    const { client, controls } = await setup({ kmsCalls: { retries: 5, minBackoffMs: 1 } });
    controls.fail = 'all';
    controls.error = () => new AccessDeniedError('injected: denied');
    await expect(client.unwrap('idx')).rejects.toThrow(AccessDeniedError);
    expect(controls.unwrapCalls).toBe(1);
    controls.error = () => new UnwrapFailedError('injected: bad tag');
    await expect(client.unwrap('idx')).rejects.toThrow(UnwrapFailedError);
    expect(controls.unwrapCalls).toBe(2);
  });

  it('a retry-after from the service is honoured', async () => {
    const { client, controls } = await setup({ kmsCalls: { retries: 1, minBackoffMs: 1, breaker: false } });
    controls.fail = 'alternate';
    controls.error = () => new ProviderUnavailableError('injected: throttled', { retryAfterMs: 250 });
    const started = performance.now();
    await client.unwrap('idx');
    expect(performance.now() - started).toBeGreaterThanOrEqual(240);
  });

  it('the breaker opens while a slot keeps failing (failing fast), then probes and recovers', async () => {
    const { client, controls, kek } = await setup({
      kmsCalls: { retries: 0, breakerVolumeThreshold: 4, breakerErrorPercentage: 50, breakerResetMs: 300 },
    });
    controls.fail = 'all';
    for (let i = 0; i < 4; i++) await expect(client.unwrap('idx')).rejects.toThrow(ProviderUnavailableError);
    const calls = controls.unwrapCalls;
    const err = await client.unwrap('idx').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CircuitOpenError);
    expect(controls.unwrapCalls).toBe(calls); // failed fast, the KMS was not called
    expect(client.stats().slots.a?.circuitOpenRejections).toBeGreaterThanOrEqual(1);
    controls.fail = 'none';
    await sleep(350);
    expect((await client.unwrap('idx')).equals(kek)).toBe(true); // the probe
    expect((await client.unwrap('idx')).equals(kek)).toBe(true);
    await client.close();
  });
});
