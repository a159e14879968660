import { randomBytes } from 'node:crypto';
import { createLocalProvider } from '../../providers/local.js';
import { KmsEnvelopeClient, type KmsEnvelopeClientOptions } from '../../src/client.js';
import { ProviderUnavailableError } from '../../src/errors.js';
import type { KmsProvider, ProviderFactory } from '../../src/providers/provider.js';
import { StorageConfig } from '../../src/storage/config.js';

/** A `local` provider with injected faults: failures, latency, and a call counter. */
export interface FaultControls {
  unwrapCalls: number;
  wrapCalls: number;
  /** Fail every call, every other call, or none. */
  fail: 'none' | 'all' | 'alternate';
  /** The error to fail with (default a retryable ProviderUnavailableError). */
  error: () => Error;
  /** Latency of each call, honouring the deadline signal. */
  delayMs: number;
  /** The deadline signal each unwrap call got, and when it started (performance.now()). */
  readonly unwrapSignals: (AbortSignal | undefined)[];
  readonly unwrapTimes: number[];
}

export function faultProvider(): { controls: FaultControls; factory: ProviderFactory } {
  const inner = createLocalProvider({ masterKey: randomBytes(32), keyId: 'fault-key' });
  const controls: FaultControls = {
    unwrapCalls: 0,
    wrapCalls: 0,
    fail: 'none',
    error: () => new ProviderUnavailableError('injected: service unavailable'),
    delayMs: 0,
    unwrapSignals: [],
    unwrapTimes: [],
  };
  let n = 0;
  const maybeFail = async (signal: AbortSignal | undefined) => {
    if (controls.delayMs > 0) {
      await new Promise<void>((resolve, reject) => {
        const t = setTimeout(resolve, controls.delayMs);
        signal?.addEventListener('abort', () => {
          clearTimeout(t);
          reject(new ProviderUnavailableError('injected: aborted'));
        });
      });
    }
    n++;
    if (controls.fail === 'all' || (controls.fail === 'alternate' && n % 2 === 1)) throw controls.error();
  };
  const provider: KmsProvider = {
    id: 'fault',
    async wrap(kek, ctx) {
      controls.wrapCalls++;
      return inner.wrap(kek, ctx);
    },
    async unwrap(wrapped, ctx) {
      controls.unwrapCalls++;
      controls.unwrapSignals.push(ctx.signal);
      controls.unwrapTimes.push(performance.now());
      await maybeFail(ctx.signal);
      return inner.unwrap(wrapped, ctx);
    },
  };
  return { controls, factory: () => provider };
}

/**
 * A client over a memory store whose slots `a` and `b` use one fault provider (no retries unless
 * `options` says so).
 */
export function faultClient(options: Partial<KmsEnvelopeClientOptions> = {}) {
  const { controls, factory } = faultProvider();
  const store = StorageConfig.memory();
  const kms = {
    slots: { a: { provider: 'fault' }, b: { provider: 'fault' } },
    providers: { fault: factory },
  };
  const client = new KmsEnvelopeClient({ store, kms, kmsCalls: { retries: 0, minBackoffMs: 1 }, ...options });
  return { client, controls, store, kms };
}
