/**
 * Borrowing a cached KEK instead of copying it: a {@link KekLease} handle, and the helper that
 * runs a callback under a lease. The cache defers zeroing an evicted KEK until its last lease is
 * released (see `kek-cache.ts`).
 *
 * @module
 */
import { InvalidArgumentError } from '../errors.js';
import type { Kek } from '../keys/kek.js';
import type { CachedKek, KekCache } from './kek-cache.js';

// `Symbol.dispose` exists from Node 20.4 (for `using`); the library's lib target predates it.
const dispose: symbol = (Symbol as unknown as { dispose?: symbol }).dispose ?? Symbol.for('nodejs.dispose');

/**
 * A borrowed KEK, from `client.lease(index)`. `kek` stays valid (never zeroed or changed) until
 * {@link release}; after that it must not be used. Release exactly once (a second release is a
 * no-op); `using lease = await client.lease(...)` releases at the end of the block.
 */
export class KekLease {
  #kek: Kek | undefined;
  readonly #release: () => void;

  /** @internal made by the client. */
  constructor(kek: Kek, release: () => void) {
    this.#kek = kek;
    this.#release = release;
  }

  /**
   * The borrowed KEK. Do not keep it past {@link release}, and do not zero it.
   * @throws InvalidArgumentError after release.
   */
  get kek(): Kek {
    if (this.#kek === undefined) throw new InvalidArgumentError('this KEK lease was released');
    return this.#kek;
  }

  /** Whether {@link release} was called. */
  get released(): boolean {
    return this.#kek === undefined;
  }

  /** Ends the lease: the KEK may be zeroed from now on. Idempotent. */
  release(): void {
    if (this.#kek === undefined) return;
    this.#kek = undefined;
    this.#release();
  }

  /** Releases (for `using`). */
  [dispose](): void {
    this.release();
  }
}

/**
 * Runs `fn` with the leased entry's KEK and releases the lease when `fn` returns, throws, or (if
 * it returns a promise) settles. A synchronous `fn` runs before this returns.
 */
export function runLeased<T>(
  cache: KekCache,
  entry: CachedKek,
  fn: (kek: Kek) => T | PromiseLike<T>,
): Promise<T> {
  try {
    return Promise.resolve(callLeased(cache, entry, fn));
  } catch (err) {
    return Promise.reject(err);
  }
}

/**
 * As {@link runLeased}, but returns a synchronous `fn`'s value as is (and throws what it throws):
 * for continuations, where returning a promise would cost extra microtask turns.
 */
export function callLeased<T>(
  cache: KekCache,
  entry: CachedKek,
  fn: (kek: Kek) => T | PromiseLike<T>,
): T | Promise<T> {
  let result: T | PromiseLike<T>;
  try {
    result = fn(entry.kek);
  } catch (err) {
    cache.release(entry);
    throw err;
  }
  if (result !== null && typeof (result as PromiseLike<T>)?.then === 'function') {
    return Promise.resolve(result).then(
      (value) => {
        cache.release(entry);
        return value;
      },
      (err: unknown) => {
        cache.release(entry);
        throw err;
      },
    );
  }
  cache.release(entry);
  return result as T;
}
