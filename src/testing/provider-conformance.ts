/**
 * The conformance suite of a KMS provider, for the built-in providers and for plugin authors'
 * own: run through the client over a memory store so that the KEK check and the envelope binding
 * take part (round trip and rotate, relabelled or copied envelopes, wrong key, truncated and
 * tampered wrapped KEKs, and with a fixture that can inject faults: deadline, disabled key, KMS
 * down, access denied, not found, throttling). It registers its cases with the test framework
 * the caller passes ({@link ConformanceTestApi}: vitest's or jest's `{ describe, it, expect }`),
 * so this module imports none.
 *
 * @example
 * ```ts
 * import { describe, expect, it } from 'vitest';
 * import { runProviderConformance } from 'kms-envelope/testing';
 * runProviderConformance({ describe, it, expect }, 'my-kms', async () => ({ kms, wrongKeyKms }));
 * ```
 *
 * @module
 */
import { KmsEnvelopeClient } from '../client.js';
import type { KmsBlob } from '../envelope/kms-blob.js';
import {
  AccessDeniedError,
  DeadlineExceededError,
  KekMismatchError,
  KeyDisabledError,
  KeyNotFoundError,
  ProviderUnavailableError,
  UnwrapFailedError,
} from '../errors.js';
import { Kek } from '../keys/kek.js';
import { parseIndexName } from '../names.js';
import type { KmsRegistryOptions } from '../providers/registry.js';
import { StorageConfig } from '../storage/config.js';
import type { ConformanceTestApi } from './test-api.js';

/** How a provider's test file sets up the suite. */
export interface ProviderFixture {
  /** Registry options with two slots of this provider, `a` and `b`, under the same key. */
  readonly kms: KmsRegistryOptions;
  /** The same slot names, but configured with a different key (the "wrong key"). */
  readonly wrongKeyKms: KmsRegistryOptions;
  /** True for provider `none`: the caller supplies the KEK on every unwrap. */
  readonly suppliesKek?: boolean;
  /** Stops servers the fixture started. */
  readonly cleanup?: () => Promise<void>;
  /**
   * Fault injection into the KMS behind slot `a` (a fake server's controls). Providers with no
   * remote service (`none`, `local`) have none: nothing can be disabled, throttled or slow, and
   * the fault cases are not registered for them.
   */
  readonly faults?: ProviderFaults;
}

/** Controls of the KMS behind a fixture's slots. */
export interface ProviderFaults {
  /** Disables the key (or secret) of slot `a`, or enables it again. */
  setKeyDisabled(disabled: boolean): void | Promise<void>;
  /** The next `count` KMS calls answer "throttled" (the service's own throttling error). */
  throttleNext(count: number): void;
  /** Every KMS call answers `ms` later (0: no delay). */
  delay(ms: number): void;
  /** KMS calls the server has received so far. */
  calls(): number;
  /** Stops the KMS server (it refuses connections from then on); cleanup copes with it. */
  stop(): Promise<void>;
  /** The next KMS call answers "access denied" (the service's own error), then all is normal. */
  denyNext(): void;
  /** The next KMS call answers "key not found" (the service's own error), then all is normal. */
  notFoundNext(): void;
}

/** Client options for the fault cases: no cache, fast retries, no breaker. */
const faultClientOptions = {
  cache: false as const,
  kmsCalls: { deadlineMs: 1500, retries: 2, minBackoffMs: 5, maxBackoffMs: 20, breaker: false },
};

function flipBit(bytes: Uint8Array, bit: number): Uint8Array {
  const out = new Uint8Array(bytes);
  const at = Math.floor(bit / 8) % out.length;
  out[at] = (out[at] ?? 0) ^ (1 << (bit % 8));
  return out;
}

/**
 * Registers the provider conformance cases under `provider conformance: <name>`. `makeFixture`
 * is called once per case; each case calls its `cleanup`. `capabilities.faults` registers the
 * fault cases (the fixture must then have `faults`); `capabilities.suppliesKek` is for a
 * provider that stores no wrapped KEK (like `none`), whose binding cases do not apply.
 */
export function runProviderConformance(
  test: ConformanceTestApi,
  name: string,
  makeFixture: () => Promise<ProviderFixture>,
  capabilities: { readonly faults?: boolean; readonly suppliesKek?: boolean } = {},
): void {
  const { describe, it, expect } = test;
  const keyless = capabilities.suppliesKek === true;
  describe(`provider conformance: ${name}`, () => {
    async function setup() {
      const fixture = await makeFixture();
      const store = StorageConfig.memory();
      const client = new KmsEnvelopeClient({ store, kms: fixture.kms });
      const kek = await client.createIndex('idx-1', { slot: 'a', encryptionContext: { tenant: 't1' } });
      const opts = fixture.suppliesKek ? { kek } : {};
      const blob = await client.getEnvelope('idx-1');
      return { fixture, store, client, kek, opts, blob };
    }

    async function expectUnwrapFails(
      fixture: ProviderFixture,
      store: ReturnType<typeof StorageConfig.memory>,
      index: string,
      blob: KmsBlob,
      kek: Kek,
      kms = fixture.kms,
    ) {
      await store.push(parseIndexName(index), blob);
      const client = new KmsEnvelopeClient({ store, kms });
      await expect(client.unwrap(index, fixture.suppliesKek ? { kek } : {})).rejects.toThrow(
        UnwrapFailedError,
      );
      await client.close();
    }

    it('round trip: unwrap gives the created KEK; rotate keeps it with version + 1', async () => {
      const { fixture, client, kek, opts, blob } = await setup();
      const unwrapped = await client.unwrap('idx-1', opts);
      expect(unwrapped.equals(kek)).toBe(true);
      const rotated = await client.rotate('idx-1', opts);
      expect(rotated.version).toBe(blob.version + 1);
      if (!fixture.suppliesKek)
        expect(Buffer.from(rotated.wrappedKek).equals(Buffer.from(blob.wrappedKek))).toBe(false);
      expect((await client.unwrap('idx-1', opts)).equals(kek)).toBe(true);
      await client.close();
      await fixture.cleanup?.();
    });

    it('an envelope copied onto another index fails to unwrap', async () => {
      const { fixture, store, kek, blob } = await setup();
      // For `none`, the caller supplies the other index's own KEK, as it would.
      const otherKek = fixture.suppliesKek ? Kek.generate() : kek;
      await expectUnwrapFails(fixture, store, 'idx-2', { ...blob, indexName: 'idx-2' }, otherKek);
      await fixture.cleanup?.();
    });

    // Not for `none`: it stores no wrapped KEK and binds nothing but the KEK check value.
    if (!keyless)
      it('an envelope relabelled with another slot of the same key fails to unwrap', async () => {
        const { fixture, store, kek, blob } = await setup();
        await expectUnwrapFails(fixture, store, 'idx-1', { ...blob, kmsName: 'b' }, kek);
        await fixture.cleanup?.();
      });

    // Not for `none`: it stores no wrapped KEK and binds nothing but the KEK check value.
    if (!keyless)
      it('an envelope whose encryption context was changed fails to unwrap', async () => {
        const { fixture, store, kek, blob } = await setup();
        await expectUnwrapFails(
          fixture,
          store,
          'idx-1',
          { ...blob, encryptionContext: { tenant: 't2' } },
          kek,
        );
        await fixture.cleanup?.();
      });

    it('the wrong key fails with UnwrapFailedError', async () => {
      const { fixture, store, blob } = await setup();
      if (fixture.suppliesKek) {
        const client = new KmsEnvelopeClient({ store, kms: fixture.kms });
        await expect(client.unwrap('idx-1', { kek: Kek.generate() })).rejects.toThrow(KekMismatchError);
      } else {
        await expectUnwrapFails(fixture, store, 'idx-1', blob, Kek.generate(), fixture.wrongKeyKms);
      }
      await fixture.cleanup?.();
    });

    // Not for `none`: it stores no wrapped KEK and binds nothing but the KEK check value.
    if (!keyless)
      it('a truncated or extended wrapped KEK fails with UnwrapFailedError', async () => {
        const { fixture, store, kek, blob } = await setup();
        const bytes = blob.wrappedKek;
        for (const wrappedKek of [
          bytes.subarray(0, bytes.length >> 1),
          bytes.subarray(0, 1),
          bytes.subarray(0, bytes.length - 1),
          Uint8Array.of(...bytes, 0),
        ]) {
          await expectUnwrapFails(fixture, store, 'idx-1', { ...blob, wrappedKek }, kek);
        }
        await fixture.cleanup?.();
      });

    // Not for `none`: it stores no wrapped KEK and binds nothing but the KEK check value.
    if (!keyless)
      it('the wrong key, asked for real: an envelope relabelled with the wrong key’s id fails at the KMS', async () => {
        const { fixture, store, kek, blob } = await setup();
        // What a wrap under the wrong key records, so the provider's own key check passes and the
        // KMS (or the cipher) itself must refuse the genuine ciphertext.
        const probe = new KmsEnvelopeClient({ store: StorageConfig.memory(), kms: fixture.wrongKeyKms });
        (await probe.createIndex('probe', { slot: 'a' })).zero();
        const wrongKeyId = (await probe.getEnvelope('probe')).keyId;
        await probe.close();
        await expectUnwrapFails(
          fixture,
          store,
          'idx-1',
          { ...blob, keyId: wrongKeyId },
          kek,
          fixture.wrongKeyKms,
        );
        await fixture.cleanup?.();
      });

    it('a tampered wrapped KEK or KEK check value fails', async () => {
      const { fixture, store, kek, blob } = await setup();
      if (blob.wrappedKek.length > 0) {
        for (const bit of [0, 7, 8 * 12 + 3, blob.wrappedKek.length * 8 - 1]) {
          await expectUnwrapFails(
            fixture,
            store,
            'idx-1',
            { ...blob, wrappedKek: flipBit(blob.wrappedKek, bit) },
            kek,
          );
        }
      }
      await expectUnwrapFails(
        fixture,
        store,
        'idx-1',
        { ...blob, kekCheck: flipBit(blob.kekCheck!, 5) },
        kek,
      );
      await fixture.cleanup?.();
    });

    // Registered only for providers whose fixture can inject faults (see ProviderFixture.faults).
    if (capabilities.faults)
      describe('faults of the KMS', () => {
        async function faultSetup() {
          const fixture = await makeFixture();
          if (fixture.faults === undefined) throw new Error('fixture has no faults');
          const store = StorageConfig.memory();
          const client = new KmsEnvelopeClient({ store, kms: fixture.kms, ...faultClientOptions });
          const kek = await client.createIndex('idx-1', { slot: 'a' });
          return { fixture, faults: fixture.faults, client, kek };
        }

        it('a slow KMS: the unwrap fails closed at its deadline with DeadlineExceededError', async () => {
          const { fixture, faults, client } = await faultSetup();
          faults.delay(5000);
          const started = performance.now();
          await expect(client.unwrap('idx-1')).rejects.toThrow(DeadlineExceededError);
          // The deadline is 1.5 s; the KMS would have answered after 5 s.
          expect(performance.now() - started).toBeLessThan(4000);
          faults.delay(0);
          await client.close();
          await fixture.cleanup?.();
        });

        it('a disabled key fails with KeyDisabledError, is not retried, and works again once enabled', async () => {
          const { fixture, faults, client, kek } = await faultSetup();
          await faults.setKeyDisabled(true);
          const before = faults.calls();
          const err = await client.unwrap('idx-1').catch((e: unknown) => e);
          expect(err).toBeInstanceOf(KeyDisabledError);
          expect((err as KeyDisabledError).retryable).toBe(false);
          expect((err as Error).message).toContain('idx-1');
          expect(faults.calls() - before).toBe(1);
          await faults.setKeyDisabled(false);
          expect((await client.unwrap('idx-1')).equals(kek)).toBe(true);
          await client.close();
          await fixture.cleanup?.();
        });

        it('a KMS that is down: a retryable ProviderUnavailableError, within the deadline', async () => {
          const { fixture, faults, client } = await faultSetup();
          await faults.stop();
          const err = await client.unwrap('idx-1').catch((e: unknown) => e);
          expect(err).toBeInstanceOf(ProviderUnavailableError);
          expect((err as ProviderUnavailableError).retryable).toBe(true);
          expect((err as Error).message).toContain('idx-1');
          await client.close();
          await fixture.cleanup?.();
        });

        it('access denied and key not found are surfaced at once: exactly one KMS call, not retried', async () => {
          const { fixture, faults, client } = await faultSetup();
          for (const [inject, expected] of [
            [faults.denyNext, AccessDeniedError],
            [faults.notFoundNext, KeyNotFoundError],
          ] as const) {
            const before = faults.calls();
            inject(); // one refusal only: a retry would succeed, so retrying fails this test
            const err = await client.unwrap('idx-1').catch((e: unknown) => e);
            expect(err).toBeInstanceOf(expected);
            expect(faults.calls() - before).toBe(1);
          }
          await client.close();
          await fixture.cleanup?.();
        });

        it('throttling is retried with backoff, then surfaced as a retryable error', async () => {
          const { fixture, faults, client, kek } = await faultSetup();
          let before = faults.calls();
          faults.throttleNext(2);
          expect((await client.unwrap('idx-1')).equals(kek)).toBe(true);
          expect(faults.calls() - before).toBe(3);
          before = faults.calls();
          faults.throttleNext(100);
          const err = await client.unwrap('idx-1').catch((e: unknown) => e);
          expect(err).toBeInstanceOf(ProviderUnavailableError);
          expect((err as ProviderUnavailableError).retryable).toBe(true);
          expect(faults.calls() - before).toBe(3); // first attempt + 2 retries
          faults.throttleNext(0);
          await client.close();
          await fixture.cleanup?.();
        });
      });
  });
}
