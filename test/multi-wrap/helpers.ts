import { KmsEnvelopeClient, type KmsEnvelopeClientOptions } from '../../src/client.js';
import type { KmsProvider, ProviderFactory } from '../../src/providers/provider.js';
import { StorageConfig } from '../../src/storage/config.js';
import { type FaultControls, faultProvider } from '../unwrap/fault-provider.js';

/** A `local`-backed fault provider per slot, each with its own provider id and controls. */
export function faultSlots(names: readonly string[]): {
  controls: Record<string, FaultControls>;
  providers: Record<string, ProviderFactory>;
  slots: Record<string, { provider: string }>;
} {
  const controls: Record<string, FaultControls> = {};
  const providers: Record<string, ProviderFactory> = {};
  const slots: Record<string, { provider: string }> = {};
  for (const name of names) {
    const { controls: c, factory } = faultProvider();
    const id = `fault-${name}`;
    providers[id] = (config, registryOptions) => {
      const inner = factory(config, registryOptions) as KmsProvider;
      return { ...inner, id, wrap: inner.wrap, unwrap: inner.unwrap };
    };
    controls[name] = c;
    slots[name] = { provider: id };
  }
  return { controls, providers, slots };
}

/** A client over a memory store with fault slots `names` (no retries, no cache unless given). */
export function multiClient(names: readonly string[], options: Partial<KmsEnvelopeClientOptions> = {}) {
  const { controls, providers, slots } = faultSlots(names);
  const store = StorageConfig.memory();
  const kms = { slots, providers };
  const client = new KmsEnvelopeClient({
    store,
    kms,
    cache: false,
    kmsCalls: { retries: 0, minBackoffMs: 1, deadlineMs: 1000 },
    ...options,
  });
  return { client, controls, store, kms };
}

/** Awaits `promise`, expecting it to reject; returns the error. */
export async function caught(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (err) {
    return err;
  }
  throw new Error('expected a rejection');
}
