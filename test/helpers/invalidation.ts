import type { KmsEnvelopeClient } from '../../src/client.js';
import { StoreUnavailableError } from '../../src/errors.js';
import type { InvalidationFeed } from '../../src/unwrap/invalidation.js';

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
 * With `outage`, a `StoreUnavailableError` (a failover in progress) is a round to try again.
 */
export async function deliversAgain(
  reader: KmsEnvelopeClient,
  writer: KmsEnvelopeClient,
  index: string,
  ms: number,
  outage = false,
): Promise<boolean> {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    try {
      (await reader.unwrap(index)).zero();
      const before = reader.stats().cacheEvictions;
      await writer.rotate(index);
      const deadline = Date.now() + 300;
      while (Date.now() < deadline && reader.stats().cacheEvictions === before) {
        await new Promise((r) => setTimeout(r, 5));
      }
      if (reader.stats().cacheEvictions > before) return true;
    } catch (err) {
      if (!outage || !(err instanceof StoreUnavailableError)) throw err;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  return false;
}

/** `feed`, with every `lost` reason it reports recorded in `lost` (in order). */
export function recordingLosses(feed: InvalidationFeed): { feed: InvalidationFeed; lost: string[] } {
  const lost: string[] = [];
  return {
    lost,
    feed: {
      start: (listener) =>
        feed.start({
          changed: (index) => listener.changed(index),
          lost: (reason) => {
            lost.push(reason);
            listener.lost(reason);
          },
        }),
      close: () => feed.close(),
    },
  };
}
