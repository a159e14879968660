/**
 * The unwrap-path benchmark, shared by `npm run bench` and `kms-envelope bench` (which runs it
 * against the configured store and slot). Creates a throwaway index, measures, deletes it.
 *
 * @module
 */
import { randomBytes } from 'node:crypto';
import { KmsEnvelopeClient } from '../client.js';
import type { KmsRegistry } from '../providers/registry.js';
import type { EnvelopeStore } from '../storage/store.js';
import { type CaseResult, runCase } from './harness.js';

/** What to benchmark against. */
export interface UnwrapBenchTarget {
  readonly store: EnvelopeStore;
  readonly kms: KmsRegistry;
  readonly slot: string;
}

/** Counts provider unwrap calls by wrapping the slot's provider. */
async function countingClient(target: UnwrapBenchTarget, cache: boolean) {
  const provider = await target.kms.provider(target.slot);
  let calls = 0;
  const counting = {
    id: provider.id,
    wrap: provider.wrap.bind(provider),
    unwrap: (...args: Parameters<typeof provider.unwrap>) => {
      calls++;
      return provider.unwrap(...args);
    },
  };
  const { KmsRegistry: Registry } = await import('../providers/registry.js');
  const kms = new Registry({
    slots: { [target.slot]: { provider: provider.id } },
    providers: { [provider.id]: () => counting },
  });
  const client = new KmsEnvelopeClient({ store: target.store, kms, ...(cache ? {} : { cache: false }) });
  return { client, calls: () => calls };
}

/**
 * Cached vs uncached unwrap, and 1,000 concurrent cold unwraps, against `target`.
 * Returns the table rows and a line about the concurrent case.
 */
export async function unwrapBench(
  target: UnwrapBenchTarget,
): Promise<{ rows: CaseResult[]; notes: string[] }> {
  const index = `kms-envelope-bench-${randomBytes(4).toString('hex')}`;
  const cached = await countingClient(target, true);
  const uncached = await countingClient(target, false);
  const notes: string[] = [];
  try {
    (await cached.client.createIndex(index, { slot: target.slot })).zero();
    (await cached.client.unwrap(index)).zero();
    const rows = [
      await runCase({
        name: 'cached unwrap(index) vs uncached unwrap (store read + KMS)',
        ours: async () => (await cached.client.unwrap(index)).zero(),
        baseline: async () => (await uncached.client.unwrap(index)).zero(),
        target: { maxRatio: 1 / 15 },
      }),
    ];
    // 1,000 concurrent cold unwraps: one provider call, total time vs one unwrap.
    const cold = await countingClient(target, true);
    const before = cold.calls();
    const oneStart = performance.now();
    (await uncached.client.unwrap(index)).zero();
    const one = performance.now() - oneStart;
    const start = performance.now();
    const keks = await Promise.all(Array.from({ length: 1000 }, () => cold.client.unwrap(index)));
    const all = performance.now() - start;
    for (const k of keks) k.zero();
    notes.push(
      `1,000 concurrent cold unwraps: ${cold.calls() - before} provider call(s), ${all.toFixed(2)} ms in all vs ${one.toFixed(2)} ms for one unwrap (${(all / one).toFixed(2)}×, target ≤ 2×)`,
    );
    await cold.client.close();
    return { rows, notes };
  } finally {
    await cached.client.delete(index);
    await cached.client.kms.close();
    await uncached.client.kms.close();
  }
}
