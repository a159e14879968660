import diagnosticsChannel from 'node:diagnostics_channel';
import { describe, expect, it } from 'vitest';
import { decodeKmsBlob, encodeKmsBlob } from '../../src/envelope/codec.js';
import type { KmsBlob } from '../../src/envelope/kms-blob.js';
import { wrapBindingOf } from '../../src/envelope/wraps.js';
import {
  AccessDeniedError,
  AllWrapsFailedError,
  DeadlineExceededError,
  InvalidArgumentError,
  KekMismatchError,
  KmsEnvelopeError,
  ProviderUnavailableError,
  ThrottledError,
  UnwrapFailedError,
  VersionConflictError,
} from '../../src/errors.js';
import { Kek } from '../../src/keys/kek.js';
import { parseIndexName, parseSlotName } from '../../src/names.js';
import { Channels } from '../../src/unwrap/telemetry.js';
import { findSecret } from '../helpers/find-secret.js';
import { caught, multiClient } from './helpers.js';

const IDX = parseIndexName('orders');

/**
 * Replaces slot b's wrap (share 2 of 3) with one that really unwraps (right binding, b's key) but
 * to a KEK of the writer's choice, as an Encrypt holder of b's key could.
 */
async function forgeSecondary(
  client: ReturnType<typeof multiClient>['client'],
  store: ReturnType<typeof multiClient>['store'],
  blob: KmsBlob,
) {
  const provider = await client.kms.provider('b');
  const forged = await provider.wrap(Kek.generate(), wrapBindingOf(IDX, parseSlotName('b'), blob, 2, 3));
  await overwrite(store, {
    ...blob,
    wraps: [{ ...blob.wraps![0]!, wrappedKek: new Uint8Array(forged.wrappedKek) }, blob.wraps![1]!],
  });
}

/** Pushes `blob` over what is stored, as a store writer could. */
async function overwrite(store: ReturnType<typeof multiClient>['store'], blob: KmsBlob) {
  await store.delete(IDX);
  await store.create(IDX, blob);
}

describe('multi-wrap envelopes: create and unwrap (anyOf)', () => {
  it('wraps the KEK under every slot, primary first; the envelope round-trips and unwraps', async () => {
    const { client, controls } = multiClient(['a', 'b', 'c']);
    const kek = await client.createIndex('orders', { slots: ['a', 'b', 'c'] });
    const blob = await client.getEnvelope('orders');
    expect(blob.kmsName).toBe('a');
    expect(blob.provider).toBe('fault-a');
    expect(blob.wraps?.map((w) => [w.kmsName, w.provider])).toEqual([
      ['b', 'fault-b'],
      ['c', 'fault-c'],
    ]);
    expect(blob.schemaVersion).toBe(2);
    expect(blob.threshold).toBeUndefined();
    expect(blob.kekCheck).toBeDefined();
    expect(decodeKmsBlob(encodeKmsBlob(blob))).toEqual(blob);
    const again = await client.unwrap('orders');
    expect(again.equals(kek)).toBe(true);
    // The primary served: no other KMS was called.
    expect([controls.a!.unwrapCalls, controls.b!.unwrapCalls, controls.c!.unwrapCalls]).toEqual([1, 0, 0]);
    expect(client.stats().slots.a?.served).toBe(1);
    expect(client.stats().failovers).toBe(0);
    await client.close();
  });

  it('a single slot still makes a single-wrap envelope, and slot/slots are checked', async () => {
    const { client } = multiClient(['a', 'b']);
    (await client.createIndex('one', { slots: ['a'] })).zero();
    expect((await client.getEnvelope('one')).wraps).toBeUndefined();
    for (const options of [
      { slots: ['a', 'a'] },
      { slots: [] as string[] },
      { slots: ['a', 'b'], threshold: 3 },
      { slots: ['a', 'b'], threshold: 1 },
      { slots: ['a', 'b'], threshold: 1.5 },
      { slot: 'b', slots: ['a', 'b'] },
      { slots: ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i'] },
      {},
    ]) {
      expect(await caught(client.createIndex('bad', options))).toBeInstanceOf(InvalidArgumentError);
    }
    await expect(client.getEnvelope('bad')).rejects.toThrow(/no envelope|not found/i);
    await client.close();
  });

  it('primary down: the next wrap serves within the deadline; the served slot is in stats and events', async () => {
    const { client, controls } = multiClient(['a', 'b', 'c'], { cache: {} });
    const kek = await client.createIndex('orders', { slots: ['a', 'b', 'c'] });
    controls.a!.fail = 'all';
    const wraps: unknown[] = [];
    const unwraps: unknown[] = [];
    const onWrap = (e: unknown) => wraps.push(e);
    const onUnwrap = (e: unknown) => unwraps.push(e);
    diagnosticsChannel.subscribe(Channels.wrap, onWrap);
    diagnosticsChannel.subscribe(Channels.unwrap, onUnwrap);
    try {
      const got = await client.unwrap('orders');
      expect(got.equals(kek)).toBe(true);
    } finally {
      diagnosticsChannel.unsubscribe(Channels.wrap, onWrap);
      diagnosticsChannel.unsubscribe(Channels.unwrap, onUnwrap);
    }
    expect(controls.b!.unwrapCalls).toBe(1);
    expect(controls.c!.unwrapCalls).toBe(0);
    const stats = client.stats();
    expect(stats.failovers).toBe(1);
    expect(stats.slots.b?.served).toBe(1);
    expect(wraps).toEqual([
      expect.objectContaining({ slot: 'a', share: 1, outcome: 'KMS_ENVELOPE_UNAVAILABLE', skipped: false }),
      expect.objectContaining({ slot: 'b', share: 2, outcome: 'ok', skipped: false }),
    ]);
    expect(unwraps).toContainEqual(expect.objectContaining({ index: 'orders', slot: 'b', outcome: 'ok' }));
    await client.close();
  });

  it('a hanging primary leaves time for the next wrap: the whole unwrap stays within one deadline', async () => {
    const { client, controls } = multiClient(['a', 'b'], {
      kmsCalls: { retries: 0, deadlineMs: 400, breaker: false },
    });
    const kek = await client.createIndex('orders', { slots: ['a', 'b'] });
    controls.a!.delayMs = 10_000;
    const started = performance.now();
    const got = await client.unwrap('orders');
    const took = performance.now() - started;
    expect(got.equals(kek)).toBe(true);
    expect(took).toBeLessThan(400); // the primary got half the deadline, b the rest
    expect(controls.b!.unwrapCalls).toBe(1);
    // Both hang: the unwrap ends at the deadline, with each wrap's typed error.
    controls.b!.delayMs = 10_000;
    const t0 = performance.now();
    const err = await caught(client.unwrap('orders'));
    expect(performance.now() - t0).toBeLessThan(1000);
    expect(err).toBeInstanceOf(AllWrapsFailedError);
    expect((err as AllWrapsFailedError).retryable).toBe(true);
    await client.close();
  });

  it('the breaker keeps a dead primary out of later calls', async () => {
    const { client, controls } = multiClient(['a', 'b'], {
      kmsCalls: { retries: 0, breakerVolumeThreshold: 2, breakerResetMs: 60_000 },
    });
    const kek = await client.createIndex('orders', { slots: ['a', 'b'] });
    controls.a!.fail = 'all';
    for (let i = 0; i < 3; i++) (await client.unwrap('orders')).zero();
    const callsWhenOpen = controls.a!.unwrapCalls;
    expect(callsWhenOpen).toBeLessThanOrEqual(3);
    for (let i = 0; i < 5; i++) {
      const got = await client.unwrap('orders');
      expect(got.equals(kek)).toBe(true);
      got.zero();
    }
    expect(controls.a!.unwrapCalls).toBe(callsWhenOpen); // skipped: its breaker is open
    expect(controls.b!.unwrapCalls).toBe(8);
    await client.close();
  });

  it('all wraps down: AllWrapsFailedError names each slot with its typed error, no key bytes', async () => {
    const { client, controls } = multiClient(['a', 'b', 'c']);
    const kek = await client.createIndex('orders', { slots: ['a', 'b', 'c'] });
    controls.a!.fail = 'all';
    controls.b!.fail = 'all';
    controls.b!.error = () => new ThrottledError('injected: throttled');
    controls.c!.fail = 'all';
    controls.c!.error = () => new AccessDeniedError('injected: denied');
    const err = (await caught(client.unwrap('orders'))) as AllWrapsFailedError;
    expect(err).toBeInstanceOf(AllWrapsFailedError);
    expect(err.code).toBe('KMS_ENVELOPE_ALL_WRAPS_FAILED');
    expect(err.failures.map((f) => [f.slot, f.error.constructor])).toEqual([
      ['a', ProviderUnavailableError],
      ['b', ThrottledError],
      ['c', AccessDeniedError],
    ]);
    expect(err.message).toMatch(
      /a: KMS_ENVELOPE_UNAVAILABLE.*b: KMS_ENVELOPE_THROTTLED.*c: KMS_ENVELOPE_ACCESS_DENIED/,
    );
    expect(err.retryable).toBe(true);
    expect(findSecret(err, kek.expose())).toBeUndefined();
    await client.close();
  });

  it('wraps of slots the reader does not admit are never tried, and say why', async () => {
    const { client, controls, store, kms } = multiClient(['a', 'b', 'c']);
    const kek = await client.createIndex('orders', { slots: ['a', 'b', 'c'] });
    // Another reader: b serves only other indexes, c is not configured at all.
    const { KmsEnvelopeClient } = await import('../../src/client.js');
    const reader = new KmsEnvelopeClient({
      store,
      cache: false,
      kms: {
        slots: { a: kms.slots.a!, b: { ...kms.slots.b!, indexes: ['public-*'] } },
        providers: kms.providers,
      },
      kmsCalls: { retries: 0 },
    });
    controls.a!.fail = 'all';
    const err = (await caught(reader.unwrap('orders'))) as AllWrapsFailedError;
    expect(err.failures.map((f) => [f.slot, f.error.code])).toEqual([
      ['a', 'KMS_ENVELOPE_UNAVAILABLE'],
      ['b', 'KMS_ENVELOPE_SLOT_NOT_ALLOWED'],
      ['c', 'KMS_ENVELOPE_CONFIG'],
    ]);
    expect(controls.b!.unwrapCalls).toBe(0);
    expect(controls.c!.unwrapCalls).toBe(0);
    controls.a!.fail = 'none';
    expect((await reader.unwrap('orders')).equals(kek)).toBe(true);
    await reader.close();
    await client.close();
  });
});

describe('multi-wrap envelopes: a store writer', () => {
  it('a secondary wrap of another KEK is refused as a tamper signal, even though another wrap serves', async () => {
    const { client, controls, store } = multiClient(['a', 'b', 'c']);
    const kek = await client.createIndex('orders', { slots: ['a', 'b', 'c'] });
    const blob = await client.getEnvelope('orders');
    await forgeSecondary(client, store, blob);
    controls.a!.fail = 'all';
    const tampers: unknown[] = [];
    const onTamper = (e: unknown) => tampers.push(e);
    diagnosticsChannel.subscribe(Channels.tamper, onTamper);
    try {
      const got = await client.unwrap('orders');
      expect(got.equals(kek)).toBe(true); // served by c, never by the forged b
    } finally {
      diagnosticsChannel.unsubscribe(Channels.tamper, onTamper);
    }
    expect(tampers).toEqual([
      { index: 'orders', version: 1, slots: ['b'], providers: ['fault-b'], reason: 'kek-check' },
    ]);
    expect(client.stats().tampered).toBe(1);
    expect(client.stats().slots.b?.tampered).toBe(1);
    expect(client.stats().slots.c?.served).toBe(1);
    // verify reports the forged wrap while the envelope still unwraps.
    controls.a!.fail = 'none';
    const report = await client.verify('orders');
    expect(report.wraps?.map((w) => [w.slot, w.ok, w.error?.code])).toEqual([
      ['a', true, undefined],
      ['b', false, 'KMS_ENVELOPE_KEK_MISMATCH'],
      ['c', true, undefined],
    ]);
    // Only the forged wrap left: refused.
    controls.a!.fail = 'all';
    controls.c!.fail = 'all';
    const err = (await caught(client.unwrap('orders'))) as AllWrapsFailedError;
    expect(err.failures.find((f) => f.slot === 'b')?.error).toBeInstanceOf(KekMismatchError);
    await client.close();
  });

  it('a wrap moved to another slot, index or version does not unwrap; a changed KEK check refuses every wrap', async () => {
    const { client, controls, store } = multiClient(['a', 'b', 'c']);
    (await client.createIndex('orders', { slots: ['a', 'b', 'c'] })).zero();
    const blob = await client.getEnvelope('orders');
    controls.a!.fail = 'all';
    // b's bytes under c's name, c's under b's.
    const [b, c] = blob.wraps!;
    await overwrite(store, {
      ...blob,
      wraps: [
        { ...b!, wrappedKek: c!.wrappedKek },
        { ...c!, wrappedKek: b!.wrappedKek },
      ],
    });
    let err = (await caught(client.unwrap('orders'))) as AllWrapsFailedError;
    expect(err.failures.slice(1).map((f) => f.error.constructor)).toEqual([
      UnwrapFailedError,
      UnwrapFailedError,
    ]);
    // Version bumped by the writer: the binding fails.
    await overwrite(store, { ...blob, version: 2 });
    err = (await caught(client.unwrap('orders'))) as AllWrapsFailedError;
    expect(err.failures.slice(1).every((f) => f.error instanceof UnwrapFailedError)).toBe(true);
    // Another KEK check: nothing matches.
    controls.a!.fail = 'none';
    await overwrite(store, { ...blob, kekCheck: new Uint8Array(blob.kekCheck!.length).fill(7) });
    err = (await caught(client.unwrap('orders'))) as AllWrapsFailedError;
    expect(err.failures.map((f) => f.error.code)).toEqual(Array(3).fill('KMS_ENVELOPE_KEK_MISMATCH'));
    // No KEK check at all: the codec refuses such an envelope.
    expect(() => encodeKmsBlob({ ...blob, kekCheck: undefined })).toThrow(/kek_check/);
    await client.close();
  });

  it('old single-wrap envelopes still read, and a schema 3 field set on an old reader is refused', async () => {
    const { client } = multiClient(['a', 'b']);
    const kek = await client.createIndex('old', { slot: 'a' });
    const blob = await client.getEnvelope('old');
    expect(blob.wraps).toBeUndefined();
    expect(blob.schemaVersion).toBe(2);
    expect((await client.unwrap('old')).equals(kek)).toBe(true);
    // Threshold without the schema: refused by the codec.
    expect(() => encodeKmsBlob({ ...blob, threshold: 2, schemaVersion: 2 })).toThrow(/threshold/);
    await client.close();
  });
});

describe('threshold envelopes (k of n, Shamir)', () => {
  it('2-of-3: any two unwrap; one down works, two down fails; no single wrap holds the KEK', async () => {
    const { client, controls } = multiClient(['a', 'b', 'c']);
    const kek = await client.createIndex('orders', { slots: ['a', 'b', 'c'], threshold: 2 });
    const blob = await client.getEnvelope('orders');
    expect(blob.schemaVersion).toBe(3);
    expect(blob.threshold).toBe(2);
    expect((await client.unwrap('orders')).equals(kek)).toBe(true);
    expect([controls.a!.unwrapCalls, controls.b!.unwrapCalls, controls.c!.unwrapCalls]).toEqual([1, 1, 0]);
    for (const down of ['a', 'b', 'c'] as const) {
      for (const name of ['a', 'b', 'c'] as const) controls[name]!.fail = name === down ? 'all' : 'none';
      const got = await client.unwrap('orders');
      expect(got.equals(kek)).toBe(true);
      got.zero();
    }
    controls.a!.fail = 'all';
    controls.b!.fail = 'all';
    controls.c!.fail = 'none';
    const err = (await caught(client.unwrap('orders'))) as AllWrapsFailedError;
    expect(err).toBeInstanceOf(AllWrapsFailedError);
    expect(err.message).toMatch(/fewer than 2 shares/);
    expect(err.failures.map((f) => f.slot)).toEqual(['a', 'b']);
    // A share's wrap is bound to the policy: opened as a single wrap (threshold removed), it fails.
    controls.a!.fail = 'none';
    controls.b!.fail = 'none';
    const { store } = { store: client.store };
    const single = { ...blob, threshold: undefined, schemaVersion: 2 };
    await store.delete(IDX);
    await store.create(IDX, single);
    const e2 = (await caught(client.unwrap('orders'))) as AllWrapsFailedError;
    expect(e2.failures.every((f) => f.error instanceof UnwrapFailedError)).toBe(true);
    await client.close();
  });

  it('a forged share is detected and reported, and the other shares still recover the KEK', async () => {
    const { client, controls, store } = multiClient(['a', 'b', 'c']);
    const kek = await client.createIndex('orders', { slots: ['a', 'b', 'c'], threshold: 2 });
    const blob = await client.getEnvelope('orders');
    await forgeSecondary(client, store, blob);
    const tampers: Array<{ slots: string[]; reason: string }> = [];
    const onTamper = (e: unknown) => tampers.push(e as { slots: string[]; reason: string });
    diagnosticsChannel.subscribe(Channels.tamper, onTamper);
    try {
      const got = await client.unwrap('orders');
      expect(got.equals(kek)).toBe(true);
    } finally {
      diagnosticsChannel.unsubscribe(Channels.tamper, onTamper);
    }
    expect(tampers).toEqual([expect.objectContaining({ slots: ['b'], reason: 'share' })]);
    expect(client.stats().slots.b?.tampered).toBe(1);
    // With c down, a and the forged b cannot make the KEK: refused, both named.
    controls.c!.fail = 'all';
    const err = (await caught(client.unwrap('orders'))) as AllWrapsFailedError;
    expect(err.failures.map((f) => [f.slot, f.error.code])).toEqual([
      ['a', 'KMS_ENVELOPE_KEK_MISMATCH'],
      ['b', 'KMS_ENVELOPE_KEK_MISMATCH'],
      ['c', 'KMS_ENVELOPE_UNAVAILABLE'],
    ]);
    await client.close();
  });

  it('a share moved to another position does not unwrap (its share number is bound)', async () => {
    const { client, store } = multiClient(['a', 'b', 'c']);
    (await client.createIndex('orders', { slots: ['a', 'b', 'c'], threshold: 3 })).zero();
    const blob = await client.getEnvelope('orders');
    await overwrite(store, { ...blob, wraps: [blob.wraps![1]!, blob.wraps![0]!] });
    const err = (await caught(client.unwrap('orders'))) as AllWrapsFailedError;
    expect(err.failures.map((f) => [f.slot, f.error.constructor])).toEqual([
      ['c', UnwrapFailedError],
      ['b', UnwrapFailedError],
    ]);
    await client.close();
  });
});

describe('rotation of multi-wrap envelopes', () => {
  it('rotate re-wraps every wrap as one compare-and-set; addSlot and removeSlot change the set', async () => {
    const { client, controls } = multiClient(['a', 'b', 'c', 'd']);
    const kek = await client.createIndex('orders', { slots: ['a', 'b'] });
    const v1 = await client.getEnvelope('orders');
    const v2 = await client.rotate('orders');
    expect(v2.version).toBe(2);
    expect(v2.creationId).toEqual(v1.creationId);
    expect([v2.kmsName, ...v2.wraps!.map((w) => w.kmsName)]).toEqual(['a', 'b']);
    expect(Buffer.from(v2.wraps![0]!.wrappedKek).equals(Buffer.from(v1.wraps![0]!.wrappedKek))).toBe(false);
    const v3 = await client.rotate('orders', { addSlot: ['c', 'd'], removeSlot: 'a' });
    expect([v3.kmsName, ...(v3.wraps ?? []).map((w) => w.kmsName)]).toEqual(['b', 'c', 'd']);
    expect(v3.version).toBe(3);
    controls.b!.fail = 'all';
    controls.c!.fail = 'all';
    expect((await client.unwrap('orders')).equals(kek)).toBe(true); // through d
    controls.b!.fail = 'none';
    controls.c!.fail = 'none';
    // To a threshold and back; to a single wrap.
    const v4 = await client.rotate('orders', { threshold: 2 });
    expect(v4.schemaVersion).toBe(3);
    expect((await client.unwrap('orders')).equals(kek)).toBe(true);
    const v5 = await client.rotate('orders', { threshold: 0, removeSlot: ['c', 'd'] });
    expect(v5.wraps).toBeUndefined();
    expect(v5.threshold).toBeUndefined();
    expect(v5.kmsName).toBe('b');
    expect((await client.unwrap('orders')).equals(kek)).toBe(true);
    // Bad changes are refused before any KMS call.
    for (const options of [{ removeSlot: 'x' }, { addSlot: 'b' }, { removeSlot: 'b' }, { threshold: 2 }]) {
      expect(await caught(client.rotate('orders', options))).toBeInstanceOf(InvalidArgumentError);
    }
    await client.close();
  });

  it('two rotators race: one wins, the other gets VersionConflictError; a threshold rotation re-splits', async () => {
    const { client } = multiClient(['a', 'b', 'c']);
    const kek = await client.createIndex('orders', { slots: ['a', 'b', 'c'], threshold: 2 });
    const before = await client.getEnvelope('orders');
    const results = await Promise.allSettled([client.rotate('orders'), client.rotate('orders')]);
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    const lost = results.find((r) => r.status === 'rejected') as PromiseRejectedResult;
    expect(lost.reason).toBeInstanceOf(VersionConflictError);
    const after = await client.getEnvelope('orders');
    expect(after.version).toBe(2);
    expect(Buffer.from(after.wrappedKek).equals(Buffer.from(before.wrappedKek))).toBe(false);
    expect((await client.unwrap('orders')).equals(kek)).toBe(true);
    await client.close();
  });

  it('a slot that cannot wrap fails the rotation and leaves the envelope as it was', async () => {
    const { client, controls } = multiClient(['a', 'b']);
    (await client.createIndex('orders', { slots: ['a', 'b'] })).zero();
    const wrap = controls.b!;
    const provider = await client.kms.provider('b');
    const original = provider.wrap;
    (provider as { wrap: typeof provider.wrap }).wrap = async () => {
      wrap.wrapCalls++;
      throw new ProviderUnavailableError('injected: down');
    };
    const err = await caught(client.rotate('orders'));
    expect(err).toBeInstanceOf(KmsEnvelopeError);
    expect((await client.getEnvelope('orders')).version).toBe(1);
    (provider as { wrap: typeof provider.wrap }).wrap = original;
    expect((await client.rotate('orders')).version).toBe(2);
    await client.close();
  });
});

describe('errors of multi-wrap unwraps are typed', () => {
  it('a deadline from the caller that has already passed skips every wrap', async () => {
    const { client } = multiClient(['a', 'b']);
    (await client.createIndex('orders', { slots: ['a', 'b'] })).zero();
    const err = (await caught(
      client.unwrap('orders', { signal: AbortSignal.abort() }),
    )) as AllWrapsFailedError;
    expect(err).toBeInstanceOf(AllWrapsFailedError);
    expect(err.failures.every((f) => f.error instanceof DeadlineExceededError)).toBe(true);
    await client.close();
  });

  it('a supplied KEK is refused for a multi-wrap envelope', async () => {
    const { client } = multiClient(['a', 'b']);
    (await client.createIndex('orders', { slots: ['a', 'b'] })).zero();
    expect(await caught(client.unwrap('orders', { kek: Kek.generate() }))).toBeInstanceOf(
      InvalidArgumentError,
    );
    await client.close();
  });
});

describe('DEKs over a multi-wrap envelope', () => {
  it('rotateKek wraps the new KEK under every slot with the same policy; values stay readable through any wrap', async () => {
    const { IndexKeyring } = await import('../../src/keyring/keyring.js');
    const { client, controls } = multiClient(['a', 'b', 'c']);
    const keyring = await IndexKeyring.createIndex(client, 'orders', {
      slots: ['a', 'b', 'c'],
      threshold: 2,
    });
    await keyring.createDek();
    const token = await keyring.encryptValue('alice@example.com');
    const before = await client.getEnvelope('orders');
    const report = await keyring.rotateKek();
    expect(report).toMatchObject({ dryRun: false, resumed: false, rewrapped: 1 });
    const after = await client.getEnvelope('orders');
    expect(after.version).toBe(before.version + 1);
    expect([after.kmsName, ...after.wraps!.map((w) => w.kmsName)]).toEqual(['a', 'b', 'c']);
    expect(after.threshold).toBe(2);
    expect(Buffer.from(after.kekCheck!).equals(Buffer.from(before.kekCheck!))).toBe(false); // a new KEK
    // A fresh keyring, with slot a down: b and c's shares recover the new KEK.
    controls.a!.fail = 'all';
    const fresh = new IndexKeyring(client, 'orders');
    expect(await fresh.decryptValue(token)).toBe('alice@example.com');
    expect(await fresh.decryptValue(await fresh.encryptValue('bob@example.com'))).toBe('bob@example.com');
    await client.close();
  });
});
