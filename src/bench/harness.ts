/**
 * A small ratio benchmark harness. Each case runs an operation of ours and a baseline in the same
 * process, interleaved round by round (so drift and frequency changes hit both alike), and reports
 * the median time per operation of each and their ratio.
 *
 * tinybench times every call separately; for sub-microsecond operations the timer's own cost
 * swamps the result, so operations are timed in batches here.
 */

/** One operation to time: sync or async. */
export type Op = () => unknown;

/**
 * What the caller does with an operation's result once it has it (after `await`), timed with
 * it: zeroing an unwrapped KEK, say. Written as `await op()` then `use(result)`, as a caller
 * would, not as a `.then(use)` (which would time one more promise than the caller pays for).
 */
export type Use = (result: never) => unknown;

export interface CaseResult {
  readonly name: string;
  readonly oursNs: number;
  readonly baselineNs: number;
  /** ours / baseline for latency cases; baseline / ours for throughput cases (≥ 1 is good). */
  readonly ratio: number;
  /**
   * `≤ 1.2×`, `≥ 0.9× throughput`, or, for a row that has no target of its own, `floor` (what
   * the machine allows at best) or `reference` (another shape of the same work, for comparison).
   */
  readonly target: string;
  readonly pass: boolean;
  readonly unit: 'latency' | 'throughput';
}

export interface CaseOptions {
  readonly name: string;
  readonly ours: Op;
  readonly baseline: Op;
  /** What a caller does with a result of `ours` / `baseline` (see {@link Use}). */
  readonly useOurs?: Use;
  readonly useBaseline?: Use;
  /** 'latency': pass when ours/baseline ≤ max. 'throughput': pass when baseline/ours time ≥ min. */
  readonly target: { readonly maxRatio: number } | { readonly minThroughput: number };
  /** Operations per timed batch (default: sized to ~5 ms). */
  readonly batch?: number;
  /** Rounds of (ours, baseline) batches (default 21). */
  readonly rounds?: number;
}

/** The median of `values`. */
export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

const nothing: Use = () => undefined;

async function timeBatch(op: Op, n: number, use: Use = nothing): Promise<number> {
  const first = op();
  const isAsync = first instanceof Promise;
  use((isAsync ? await first : first) as never);
  const start = process.hrtime.bigint();
  if (isAsync) {
    for (let i = 0; i < n; i++) use((await op()) as never);
  } else {
    for (let i = 0; i < n; i++) use(op() as never);
  }
  return Number(process.hrtime.bigint() - start) / n;
}

async function sizeBatch(op: Op, use?: Use): Promise<number> {
  let n = 1;
  for (;;) {
    const per = await timeBatch(op, n, use);
    if (per * n > 5e6 || n >= 1 << 20) return Math.max(1, Math.ceil(5e6 / Math.max(per, 1)));
    n *= 4;
  }
}

/** An operation that starts `n` calls of `fn` at once (in one tick) and waits for all of them. */
export function inFlight<T>(n: number, fn: () => Promise<T>): () => Promise<T[]> {
  return () => Promise.all(Array.from({ length: n }, fn));
}

/** Runs one case and returns its result. */
export async function runCase(options: CaseOptions): Promise<CaseResult> {
  // Warm both up (JIT, caches, connections) before anything is timed.
  const { ours: oursOp, baseline: baselineOp, useOurs, useBaseline } = options;
  for (const [op, use] of [
    [oursOp, useOurs],
    [baselineOp, useBaseline],
  ] as const) {
    const until = Date.now() + 300;
    while (Date.now() < until) await timeBatch(op, 16, use);
  }
  const batch =
    options.batch ?? Math.min(await sizeBatch(oursOp, useOurs), await sizeBatch(baselineOp, useBaseline));
  const rounds = options.rounds ?? 21;
  const ours: number[] = [];
  const baseline: number[] = [];
  for (let i = 0; i < rounds; i++) {
    // Alternate which goes first, so neither always runs on a warmer cache.
    if (i % 2 === 0) {
      ours.push(await timeBatch(oursOp, batch, useOurs));
      baseline.push(await timeBatch(baselineOp, batch, useBaseline));
    } else {
      baseline.push(await timeBatch(baselineOp, batch, useBaseline));
      ours.push(await timeBatch(oursOp, batch, useOurs));
    }
  }
  const oursNs = median(ours);
  const baselineNs = median(baseline);
  if ('maxRatio' in options.target) {
    const ratio = oursNs / baselineNs;
    return {
      name: options.name,
      oursNs,
      baselineNs,
      ratio,
      target: `≤ ${Number(options.target.maxRatio.toFixed(3))}×`,
      pass: ratio <= options.target.maxRatio,
      unit: 'latency',
    };
  }
  const ratio = baselineNs / oursNs;
  return {
    name: options.name,
    oursNs,
    baselineNs,
    ratio,
    target: `≥ ${options.target.minThroughput}× throughput`,
    pass: ratio >= options.target.minThroughput,
    unit: 'throughput',
  };
}

function isUntargeted(row: CaseResult): boolean {
  return row.target === 'floor' || row.target === 'reference';
}

/** `row` as a row without a target (see {@link CaseResult.target}): shown, never MISSED. */
export function asReference(row: CaseResult, kind: 'floor' | 'reference' = 'reference'): CaseResult {
  return { ...row, target: kind, pass: true };
}

function fmtNs(ns: number): string {
  return ns >= 1e6
    ? `${(ns / 1e6).toFixed(2)} ms`
    : ns >= 1e3
      ? `${(ns / 1e3).toFixed(2)} µs`
      : `${ns.toFixed(0)} ns`;
}

/** Formats results as a Markdown table. */
export function formatTable(results: readonly CaseResult[]): string {
  const rows = results.map(
    (r) =>
      `| ${r.name} | ${fmtNs(r.oursNs)} | ${fmtNs(r.baselineNs)} | ${r.ratio.toFixed(2)}× | ${r.target} | ${isUntargeted(r) ? '' : r.pass ? 'ok' : 'MISSED'} |`,
  );
  return [
    '| case | ours / op | baseline / op | ratio | target | |',
    '|---|---|---|---|---|---|',
    ...rows,
  ].join('\n');
}
