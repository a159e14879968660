/**
 * The provider conformance suite (src/testing/provider-conformance.ts; imported here through the entry point
 * `kms-envelope/testing` for plugin authors), bound to vitest for this repository's tests.
 */
import { describe, expect, it } from 'vitest';
import { type ProviderFixture, runProviderConformance as runWith } from '../../src/testing/index.js';

export type { ProviderFaults, ProviderFixture } from '../../src/testing/index.js';

/** Registers the conformance tests for one provider (with vitest). */
export function runProviderConformance(
  name: string,
  makeFixture: () => Promise<ProviderFixture>,
  capabilities: { readonly faults?: boolean; readonly suppliesKek?: boolean } = {},
): void {
  runWith({ describe, it, expect }, name, makeFixture, capabilities);
}
