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
  toBe(expected: unknown): void;
  toEqual(expected: unknown): void;
  toMatchObject(expected: Record<string, unknown>): void;
  toBeInstanceOf(expected: ErrorClass): void;
  toBeUndefined(): void;
  toBeLessThan(expected: number): void;
  toBeGreaterThan(expected: number): void;
  toHaveLength(expected: number): void;
  toContain(expected: string): void;
  toThrow(expected?: string | RegExp | ErrorClass): void;
  readonly not: {
    toContain(expected: string): void;
  };
}

/** The matchers on a promise that must reject. */
export interface ConformancePromiseMatchers {
  toThrow(expected?: string | RegExp | ErrorClass): Promise<void>;
  toMatchObject(expected: Record<string, unknown>): Promise<void>;
}

/** `expect(value)`. */
export type ConformanceExpect = (actual: unknown) => ConformanceMatchers & {
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
  readonly expect: ConformanceExpect;
}
