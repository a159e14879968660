/**
 * How many KMS calls a fleet makes: a small simulation behind the worked figure of
 * docs/deployment.md. Each instance serves requests for indexes drawn from a Zipf distribution
 * (a few hot indexes, a long tail) and unwraps an index with the KMS at most once per cache TTL
 * (a miss); everything else is a cache hit. Deterministic (seeded), no I/O.
 *
 * `node .bench-build/bench/fleet-sim.js [instances] [indexes] [requestsPerSecond] [zipfS]`
 * (after `npm run bench` built it), or `npx tsx bench/fleet-sim.ts …`.
 */

/** mulberry32: a small seeded PRNG, so every run gives the same figures. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Inverse-CDF sampler of ranks 0..n-1 with P(k) ∝ 1/(k+1)^s. */
function zipf(n: number, s: number, random: () => number): () => number {
  const cdf = new Float64Array(n);
  let sum = 0;
  for (let k = 0; k < n; k++) {
    sum += 1 / (k + 1) ** s;
    cdf[k] = sum;
  }
  return () => {
    const u = random() * sum;
    let lo = 0;
    let hi = n - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (cdf[mid]! < u) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  };
}

export interface FleetFigures {
  readonly instances: number;
  readonly indexes: number;
  readonly requestsPerSecond: number;
  readonly ttlSeconds: number;
  /** Distinct indexes one instance unwraps per TTL window (its KMS calls per TTL), mean. */
  readonly kmsCallsPerInstancePerTtl: number;
  /** The fleet's KMS calls per second, mean. */
  readonly fleetKmsCallsPerSecond: number;
  /** The worst case: every instance touches every index once per TTL. */
  readonly worstFleetKmsCallsPerSecond: number;
  /** Share of requests served from the cache. */
  readonly hitRate: number;
}

/** Simulates `windows` TTL windows of one instance (instances are alike) and scales up. */
export function simulateFleet(
  instances: number,
  indexes: number,
  requestsPerSecond: number,
  ttlSeconds: number,
  s = 1.1,
  windows = 5,
): FleetFigures {
  const next = zipf(indexes, s, prng(42));
  const perWindow = requestsPerSecond * ttlSeconds;
  let misses = 0;
  for (let w = 0; w < windows; w++) {
    const seen = new Uint8Array(indexes);
    for (let r = 0; r < perWindow; r++) {
      const k = next();
      if (seen[k] === 0) {
        seen[k] = 1;
        misses++;
      }
    }
  }
  const perTtl = misses / windows;
  return {
    instances,
    indexes,
    requestsPerSecond,
    ttlSeconds,
    kmsCallsPerInstancePerTtl: perTtl,
    fleetKmsCallsPerSecond: (perTtl * instances) / ttlSeconds,
    worstFleetKmsCallsPerSecond: (indexes * instances) / ttlSeconds,
    hitRate: 1 - perTtl / perWindow,
  };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const [instances = 100, indexes = 10_000, rps = 500, s = 1.1] = process.argv.slice(2).map(Number);
  console.log('| TTL | KMS calls / instance / TTL | fleet KMS calls / s | worst case / s | hit rate |');
  console.log('|---|---|---|---|---|');
  for (const ttl of [60, 300, 900]) {
    const f = simulateFleet(instances, indexes, rps, ttl, s);
    console.log(
      `| ${ttl} s | ${f.kmsCallsPerInstancePerTtl.toFixed(0)} | ${f.fleetKmsCallsPerSecond.toFixed(0)} | ${f.worstFleetKmsCallsPerSecond.toFixed(0)} | ${(100 * f.hitRate).toFixed(2)}% |`,
    );
  }
}
