import type { KmsEnvelopeClient } from '../../src/client.js';

/** Runs `act`, then waits until `reader` has evicted `n` more cached KEKs, or fails after `ms`. */
export async function evictions(
  reader: KmsEnvelopeClient,
  n: number,
  act: () => Promise<unknown>,
  ms = 3000,
) {
  const before = reader.stats().cacheEvictions;
  await act();
  const until = Date.now() + ms;
  while (reader.stats().cacheEvictions < before + n) {
    if (Date.now() > until) throw new Error(`no invalidation arrived within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/**
 * Whether a feed that lost its connection delivers again within `ms`: caches `index` in `reader`,
 * rotates it through `writer`, and sees whether the reader evicts it, until it does or time is up.
 */
export async function deliversAgain(
  reader: KmsEnvelopeClient,
  writer: KmsEnvelopeClient,
  index: string,
  ms: number,
): Promise<boolean> {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    (await reader.unwrap(index)).zero();
    const before = reader.stats().cacheEvictions;
    await writer.rotate(index);
    const deadline = Date.now() + 300;
    while (Date.now() < deadline && reader.stats().cacheEvictions === before) {
      await new Promise((r) => setTimeout(r, 5));
    }
    if (reader.stats().cacheEvictions > before) return true;
  }
  return false;
}
