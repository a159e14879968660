/**
 * The structural shape of a test framework's `describe`, `it` and `expect` that the conformance
 * suites ({@link runProviderConformance}, {@link runStoreConformance}) register their cases with,
 * so that `kms-envelope/testing` imports no test framework: pass vitest's or jest's own
 * (`{ describe, it, expect }`).
 *
 * @module
 */

/** A class the `toThrow` and `toBeInstanceOf` matchers compare an error with. */
// biome-ignore lint/suspicious/noExplicitAny: vitest's and jest's own Constructable take any[].
export type ErrorClass = new (...args: any[]) => unknown;

/** The matchers the suites use, as vitest and jest both spell them. */
export interface ConformanceMatchers {
  /** Same value (`Object.is`). */
  toBe(expected: unknown): void;
  /** Deeply equal. */
  toEqual(expected: unknown): void;
  /** Has at least these properties, deeply equal. */
  toMatchObject(expected: Record<string, unknown>): void;
  /** An instance of the class. */
  toBeInstanceOf(expected: ErrorClass): void;
  /** `undefined`. */
  toBeUndefined(): void;
  /** A number below `expected`. */
  toBeLessThan(expected: number): void;
  /** A number above `expected`. */
  toBeGreaterThan(expected: number): void;
  /** Has this `length`. */
  toHaveLength(expected: number): void;
  /** A string or array that contains `expected`. */
  toContain(expected: string): void;
  /** A function that throws (a message part, a pattern or a class). */
  toThrow(expected?: string | RegExp | ErrorClass): void;
  /** The negated matchers the suites use. */
  readonly not: {
    /** Does not contain `expected`. */
    toContain(expected: string): void;
  };
}

/** The matchers on a promise that must reject. */
export interface ConformancePromiseMatchers {
  /** Rejects with a matching error (a message part, a pattern or a class). */
  toThrow(expected?: string | RegExp | ErrorClass): Promise<void>;
  /** Rejects with an error that has these properties. */
  toMatchObject(expected: Record<string, unknown>): Promise<void>;
}

/** `expect(value)`. */
export type ConformanceExpect = (actual: unknown) => ConformanceMatchers & {
  /** The matchers of a promise that must reject. */
  readonly rejects: ConformancePromiseMatchers;
};

/**
 * What a conformance suite needs from the test framework: `{ describe, it, expect }` from vitest
 * (`import { describe, expect, it } from 'vitest'`) or from jest (`@jest/globals`).
 */
export interface ConformanceTestApi {
  /** Groups cases under a name; `body` registers them synchronously. */
  describe(name: string, body: () => void): void;
  /** One case; the suites' cases are async and clean up after themselves. */
  it(name: string, body: () => Promise<void>): void;
  /** The framework's `expect`. */
  readonly expect: ConformanceExpect;
}
