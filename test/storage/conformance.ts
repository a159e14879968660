/**
 * The store conformance suite (now in `src/testing/store-conformance.ts`, exported from
 * `kms-envelope/testing` for plugin authors), bound to vitest for this repository's tests.
 */
import { describe, expect, it } from 'vitest';
import { runStoreConformance as runWith, type StoreFixture } from '../../src/testing/index.js';

export type { StoreFixture } from '../../src/testing/index.js';

/** Registers the conformance tests for one store (with vitest). */
export function runStoreConformance(name: string, makeFixture: () => Promise<StoreFixture>): void {
  runWith({ describe, it, expect }, name, makeFixture);
}
