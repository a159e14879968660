/**
 * The unwrap-path benchmark, shared by `npm run bench` and `kms-envelope bench` (which runs it
 * against the configured store and slot). Creates a throwaway index, measures, deletes it.
 *
 * @module
 */
import { randomBytes } from 'node:crypto';
import { KmsEnvelopeClient, type KmsEnvelopeClientOptions } from '../client.js';
import type { Kek } from '../keys/kek.js';
import { parseIndexName } from '../names.js';
import type { KmsProvider } from '../providers/provider.js';
import { KmsRegistry } from '../providers/registry.js';
import type { EnvelopeStore } from '../storage/store.js';
import { hasSyncUnwrap } from '../unwrap/kms-calls.js';
import { type CaseResult, inFlight, median, runCase } from './harness.js';

/** What to benchmark against. */
export interface UnwrapBenchTarget {
  readonly store: EnvelopeStore;
  readonly kms: KmsRegistry;
  readonly slot: string;
}

/** Options of {@link unwrapBench}. */
export interface UnwrapBenchOptions {
  /**
   * Also measure `readEnvelope: 'every-call'` unwraps, 1 and 64 in flight, against the store's
   * own raw read of the envelope (`getEncoded`: for Redis a plain GET, for disk a file read).
   * Meaningful for a store behind a network or a disk; skipped for the memory store.
   */
  readonly storeReads?: boolean;
}

/** One request in flight: ours and the baseline alternate every 20 requests, many rounds. */
export const ONE_IN_FLIGHT = { batch: 20, rounds: 151 } as const;

/**
 * Every-call unwraps vs the store's raw reads of the same envelope, 1 and 64 in flight (the 64 in
 * one tick, as a burst of requests: the unwraps share one read, the raw reads are 64).
 */
async function storeReadCases(target: UnwrapBenchTarget, index: string): Promise<CaseResult[]> {
  const store = target.store;
  if (store.getEncoded === undefined) return [];
  const raw = () => store.getEncoded!(parseIndexName(index));
  const fresh = await countingClient(target, { cache: { readEnvelope: 'every-call' } });
  try {
    (await fresh.client.unwrap(index)).zero();
    return [
      await runCase({
        name: `every-call unwrap(index), 1 in flight, vs a raw ${store.kind} read of the envelope`,
        ours: () => fresh.client.unwrap(index),
        useOurs: zero,
        baseline: raw,
        target: { maxRatio: 1.1 },
        ...ONE_IN_FLIGHT,
      }),
      await runCase({
        name: `every-call unwrap(index), 64 in flight, vs 64 raw ${store.kind} reads of the envelope`,
        ours: inFlight(64, () => fresh.client.unwrap(index).then(zero)),
        baseline: inFlight(64, raw),
        target: { minThroughput: 0.9 },
        rounds: 11,
      }),
    ];
  } finally {
    await fresh.client.kms.close();
  }
}

/** A client whose slot's provider counts its unwrap calls. */
export interface CountingClient {
  readonly client: KmsEnvelopeClient;
  calls(): number;
}

/**
 * A client over `target` whose provider counts unwrap calls. The counting wrapper keeps the
 * provider's synchronous unwrap when it has one, so the client takes the same path as without it.
 */
export async function countingClient(
  target: UnwrapBenchTarget,
  options: Partial<KmsEnvelopeClientOptions> = {},
): Promise<CountingClient> {
  const provider = await target.kms.provider(target.slot);
  let calls = 0;
  const counting: KmsProvider & { unwrapSync?: unknown } = {
    id: provider.id,
    wrap: provider.wrap.bind(provider),
    unwrap: (...args: Parameters<typeof provider.unwrap>) => {
      calls++;
      return provider.unwrap(...args);
    },
  };
  if (hasSyncUnwrap(provider)) {
    counting.unwrapSync = (...args: Parameters<typeof provider.unwrapSync>) => {
      calls++;
      return provider.unwrapSync(...args);
    };
  }
  const kms = new KmsRegistry({
    slots: { [target.slot]: { provider: provider.id } },
    providers: { [provider.id]: () => counting },
  });
  const client = new KmsEnvelopeClient({ store: target.store, kms, ...options });
  return { client, calls: () => calls };
}

const zero = (kek: Kek) => kek.zero();
/** What a request does with a borrowed KEK in the benchmark: touch it. */
const touch = (kek: Kek) => kek.length;

/**
 * N concurrent cold unwraps (cache cleared first) against one cold unwrap on the same client,
 * interleaved round by round; medians. Also checks that every round made exactly one provider
 * call. `unwrapOne` is what each caller does.
 */
export async function concurrentColdCase(
  name: string,
  cold: CountingClient,
  unwrapOne: (client: KmsEnvelopeClient) => Promise<unknown>,
  options: { readonly callers?: number; readonly rounds?: number } = {},
): Promise<{ row: CaseResult; callsPerRound: number[] }> {
  const callers = options.callers ?? 1000;
  const rounds = options.rounds ?? 21;
  const one: number[] = [];
  const all: number[] = [];
  const callsPerRound: number[] = [];
  const timeOne = async () => {
    cold.client.clearCache();
    const start = process.hrtime.bigint();
    await unwrapOne(cold.client);
    one.push(Number(process.hrtime.bigint() - start));
  };
  const timeAll = async () => {
    cold.client.clearCache();
    const before = cold.calls();
    const start = process.hrtime.bigint();
    await Promise.all(Array.from({ length: callers }, () => unwrapOne(cold.client)));
    all.push(Number(process.hrtime.bigint() - start));
    callsPerRound.push(cold.calls() - before);
  };
  // Warm up both paths, then alternate which goes first.
  for (let i = 0; i < 5; i++) {
    await timeOne();
    await timeAll();
  }
  one.length = 0;
  all.length = 0;
  callsPerRound.length = 0;
  for (let i = 0; i < rounds; i++) {
    if (i % 2 === 0) {
      await timeOne();
      await timeAll();
    } else {
      await timeAll();
      await timeOne();
    }
  }
  const oursNs = median(all);
  const baselineNs = median(one);
  const ratio = oursNs / baselineNs;
  return {
    row: { name, oursNs, baselineNs, ratio, target: '≤ 2×', pass: ratio <= 2, unit: 'latency' },
    callsPerRound,
  };
}

/**
 * The floor of N concurrent callers in JavaScript: N promises that wait on one shared promise,
 * joined by `Promise.all`, with nothing else done. Compared with one cold unwrap, this is the
 * least the concurrent case can cost.
 */
export async function promiseFloorNs(callers = 1000, rounds = 21): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < rounds + 5; i++) {
    let resolve!: (value: number) => void;
    const shared = new Promise<number>((r) => {
      resolve = r;
    });
    const start = process.hrtime.bigint();
    const all = Promise.all(Array.from({ length: callers }, () => shared.then(touchNumber)));
    resolve(1);
    await all;
    if (i >= 5) times.push(Number(process.hrtime.bigint() - start));
  }
  return median(times);
}
const touchNumber = (n: number) => n + 1;

/**
 * Cached vs uncached unwrap, and 1,000 concurrent cold unwraps, against `target`.
 * Returns the table rows and notes about them.
 */
export async function unwrapBench(
  target: UnwrapBenchTarget,
  options: UnwrapBenchOptions = {},
): Promise<{ rows: CaseResult[]; notes: string[] }> {
  const index = `kms-envelope-bench-${randomBytes(4).toString('hex')}`;
  const cached = await countingClient(target);
  const uncached = await countingClient(target, { cache: false });
  const cold = await countingClient(target);
  const notes: string[] = [];
  try {
    (await cached.client.createIndex(index, { slot: target.slot })).zero();
    (await cached.client.unwrap(index)).zero();
    // Each unwrap caller zeroes its own copy once it is done: `kek.zero()` after the await.
    const uncachedUnwrap = () => uncached.client.unwrap(index);
    const borrowed = await runCase({
      name: 'cached withKek(index, fn) (borrowed KEK) vs uncached unwrap (store read + KMS)',
      ours: () => cached.client.withKek(index, touch),
      baseline: uncachedUnwrap,
      useBaseline: zero,
      target: { maxRatio: 1 / 15 },
    });
    const copied = await runCase({
      name: 'cached unwrap(index) vs uncached unwrap (store read + KMS), own copy zeroed',
      ours: () => cached.client.unwrap(index),
      useOurs: zero,
      baseline: uncachedUnwrap,
      useBaseline: zero,
      target: { maxRatio: 1 / 15 },
    });
    const rows = [borrowed, copied];
    for (const [what, row] of [
      ['withKek', borrowed],
      ['unwrap (copy)', copied],
    ] as const) {
      notes.push(
        `cached ${what}: ${(row.oursNs / 1000).toFixed(3)} µs per call (target ≤ 0.2 µs: ${row.oursNs <= 200 ? 'ok' : 'MISSED'}), ${(row.baselineNs / row.oursNs).toFixed(1)}× faster than uncached (target ≥ 15×)`,
      );
    }
    // 1,000 concurrent cold unwraps: one provider call, total time vs one cold unwrap.
    const copies = await concurrentColdCase(
      '1,000 concurrent cold unwrap(index) vs one cold unwrap',
      cold,
      (client) => client.unwrap(index).then(zero),
    );
    const leases = await concurrentColdCase(
      '1,000 concurrent cold withKek(index, fn) vs one cold withKek',
      cold,
      (client) => client.withKek(index, touch),
    );
    rows.push(copies.row, leases.row);
    const floor = await promiseFloorNs();
    rows.push({
      name: 'floor: 1,000 promises on one shared promise + Promise.all, vs one cold withKek',
      oursNs: floor,
      baselineNs: leases.row.baselineNs,
      ratio: floor / leases.row.baselineNs,
      target: 'floor',
      pass: true,
      unit: 'latency',
    });
    if (options.storeReads) rows.push(...(await storeReadCases(target, index)));
    const calls = [...copies.callsPerRound, ...leases.callsPerRound];
    const exact = calls.every((n) => n === 1);
    notes.push(
      `1,000 concurrent cold unwraps: ${exact ? 1 : Math.max(...calls)} provider call(s) per round in every one of ${calls.length} rounds${exact ? '' : ' (NOT exactly 1: single-flight broken)'}; ${(copies.row.oursNs / 1e6).toFixed(3)} ms for 1,000 vs ${(copies.row.baselineNs / 1e6).toFixed(3)} ms for one unwrap (${copies.row.ratio.toFixed(2)}×, target ≤ 2×); JavaScript's own floor for 1,000 waiting promises is ${(floor / 1e6).toFixed(3)} ms`,
    );
    return { rows, notes };
  } finally {
    await cached.client.delete(index);
    for (const c of [cached, uncached, cold]) await c.client.kms.close();
  }
}
