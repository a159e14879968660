/**
 * Issue #15 end to end: one envelope wrapped under `aws-kms`, `gcp-kms` and `azure-kv` (each
 * through its real SDK client against the wire-level fakes of kms-envelope/testing: HTTP JSON,
 * gRPC, HTTPS) plus a break-glass `recipient` slot. A stopped, throttling or denying KMS, all of
 * them gone, a 2-of-3 threshold, tampered wraps, and recovery with the offline key.
 */
import { randomBytes } from 'node:crypto';
import diagnosticsChannel from 'node:diagnostics_channel';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { generateRecipientKeyPair } from '../../providers/recipient.js';
import { KmsEnvelopeClient } from '../../src/client.js';
import type { KmsBlob } from '../../src/envelope/kms-blob.js';
import { wrapBindingOf } from '../../src/envelope/wraps.js';
import {
  AccessDeniedError,
  AllWrapsFailedError,
  KekMismatchError,
  KeyNotFoundError,
  ProviderUnavailableError,
  SlotNotAllowedError,
  ThrottledError,
  UnwrapFailedError,
} from '../../src/errors.js';
import { Kek } from '../../src/keys/kek.js';
import { parseIndexName, parseSlotName } from '../../src/names.js';
import type { KmsSlotInput } from '../../src/providers/slot.js';
import { StorageConfig } from '../../src/storage/config.js';
import type { EnvelopeStore } from '../../src/storage/store.js';
import { type FakeAws, startFakeAws } from '../../src/testing/fake-aws.js';
import { type FakeAzureKvHandle, startFakeAzureKv } from '../../src/testing/fake-azure-kv.js';
import { type FakeGcpKms, startFakeGcpKms } from '../../src/testing/fake-gcp-kms.js';
import { Channels } from '../../src/unwrap/telemetry.js';
import { findSecret } from '../helpers/find-secret.js';
import { caught } from './helpers.js';

const IDX = parseIndexName('orders');
const GCP_KEY = 'projects/p1/locations/europe-west1/keyRings/ring/cryptoKeys/kek';
const CLOUD = ['aws', 'gcp', 'azure'] as const;
type Cloud = (typeof CLOUD)[number];
const DEADLINE_MS = 1000;
/** Slack on "within the deadline" bounds: event-loop and TLS set-up jitter on a busy machine. */
const SLACK_MS = 1500;
const kmsCalls = {
  deadlineMs: DEADLINE_MS,
  retries: 0,
  minBackoffMs: 1,
  breakerVolumeThreshold: 2,
  breakerResetMs: 60_000,
};

/** The three fakes and how to reach them as slots. */
interface Clouds {
  readonly aws: FakeAws;
  readonly gcp: FakeGcpKms;
  readonly azure: FakeAzureKvHandle;
  readonly slots: Record<Cloud, KmsSlotInput>;
  /** Unwrap requests each fake received so far (faulted ones included). */
  unwrapRequests(cloud: Cloud): number;
  /** Stops one fake (idempotent). */
  stop(cloud: Cloud): Promise<void>;
}

const running: Array<() => Promise<void>> = [];
// The providers load their SDKs on first use, inside the first call's deadline: load them first,
// so that a 1 s deadline measures the calls and not the module loading of a cold process.
beforeAll(async () => {
  await Promise.all([
    import('@aws-sdk/client-kms'),
    import('@google-cloud/kms'),
    import('@azure/keyvault-keys'),
  ]);
});
afterEach(async () => {
  for (const close of running.splice(0).reverse()) await close();
});

async function awsSlotOf(aws: FakeAws): Promise<KmsSlotInput> {
  const { arn } = aws.createKey({ alias: `alias/mw-${randomBytes(4).toString('hex')}` });
  return {
    provider: 'aws-kms',
    keyId: arn,
    region: aws.region,
    endpoint: aws.endpoint,
    options: { credentials: aws.clientConfig().credentials },
  };
}

async function startClouds(): Promise<Clouds> {
  const [aws, gcp, azure] = await Promise.all([
    startFakeAws(),
    startFakeGcpKms({ cryptoKeys: [GCP_KEY] }),
    startFakeAzureKv(),
  ]);
  running.push(
    () => aws.close(),
    () => gcp.close(),
    () => azure.close(),
  );
  await azure.createKey('kek', 'RSA');
  const slots: Record<Cloud, KmsSlotInput> = {
    aws: await awsSlotOf(aws),
    gcp: {
      provider: 'gcp-kms',
      keyId: GCP_KEY,
      region: 'europe-west1',
      endpoint: gcp.endpoint,
      options: { insecure: true },
    },
    azure: {
      provider: 'azure-kv',
      keyId: azure.keyId('kek'),
      // RSA-OAEP-256: wrapping needs only the public key, so the slot opts in to unwrap it.
      allowPublicKeyWrap: true,
      options: { credential: azure.credential, clientOptions: azure.clientOptions() },
    },
  };
  return {
    aws,
    gcp,
    azure,
    slots,
    unwrapRequests(cloud) {
      if (cloud === 'aws') return aws.requests.filter((r) => r.operation === 'Decrypt').length;
      if (cloud === 'gcp') return gcp.calls().filter((c) => c.method === 'Decrypt').length;
      return azure.requests().filter((r) => r.operation === 'unwrapkey' && r.authorized).length;
    },
    stop: (cloud) => ({ aws, gcp, azure })[cloud].close(),
  };
}

/** The three clouds and a `recovery` recipient slot, one client over a memory store. */
async function setup(extraSlots: Record<string, KmsSlotInput> = {}) {
  const clouds = await startClouds();
  const pair = await generateRecipientKeyPair('x25519');
  const store = StorageConfig.memory();
  const slots: Record<string, KmsSlotInput> = {
    ...clouds.slots,
    recovery: { provider: 'recipient', options: { publicKey: pair.publicKey } },
    ...extraSlots,
  };
  const client = new KmsEnvelopeClient({
    store,
    kms: { slots, secrets: { allowLiteral: true } },
    cache: false,
    kmsCalls,
  });
  running.push(() => client.close());
  return { clouds, pair, store, client, slots };
}

/** Collects the messages of a diagnostics channel while `fn` runs. */
async function recording<T>(
  channel: string,
  fn: () => Promise<T>,
): Promise<{ result: T; events: unknown[] }> {
  const events: unknown[] = [];
  const onMessage = (message: unknown) => events.push(message);
  diagnosticsChannel.subscribe(channel, onMessage);
  try {
    return { result: await fn(), events };
  } finally {
    diagnosticsChannel.unsubscribe(channel, onMessage);
  }
}

/** Unwraps, expecting `kek`, and returns how long it took (ms). */
async function unwrapsTo(client: KmsEnvelopeClient, kek: Kek): Promise<number> {
  const started = performance.now();
  const got = await client.unwrap('orders');
  const took = performance.now() - started;
  expect(got.equals(kek)).toBe(true);
  got.zero();
  return took;
}

/** Replaces the stored envelope, as a store writer could. */
async function overwrite(store: EnvelopeStore, blob: KmsBlob): Promise<void> {
  await store.delete(IDX);
  await store.create(IDX, blob);
}

const ALL = [...CLOUD, 'recovery'];

/**
 * What a stopped KMS fails with: ProviderUnavailableError (code UNAVAILABLE), also on the first
 * call after the stop, which the AWS SDK reports as a `TimeoutError` (the reset of its kept-alive
 * socket): the deadline did not pass, so it is not DeadlineExceededError.
 */
const DOWN = expect.any(ProviderUnavailableError);
const DOWN_CODE = /^KMS_ENVELOPE_UNAVAILABLE$/;

/** Each failure of `err` as [slot, error], for `toEqual` with `expect.any(ErrorClass)`. */
const failuresOf = (err: unknown) => (err as AllWrapsFailedError).failures.map((f) => [f.slot, f.error]);

/** The wraps an unwrap tried (skipped ones left out), as [slot, outcome]. */
const tried = (events: unknown[]) =>
  (events as Array<{ slot: string; outcome: string; skipped: boolean }>)
    .filter((e) => !e.skipped)
    .map((e) => [e.slot, e.outcome]);

describe('one KEK under aws-kms, gcp-kms and azure-kv (real SDKs against the fakes)', () => {
  it('wraps under every cloud through its own SDK; the primary alone serves while it is up', async () => {
    const { clouds, client } = await setup();
    const kek = await client.createIndex('orders', { slots: ALL });
    const blob = await client.getEnvelope('orders');
    expect([blob.kmsName, ...blob.wraps!.map((w) => w.kmsName)]).toEqual(ALL);
    expect([blob.provider, ...blob.wraps!.map((w) => w.provider)]).toEqual([
      'aws-kms',
      'gcp-kms',
      'azure-kv',
      'recipient',
    ]);
    // Each wrap went to its own service.
    expect(clouds.aws.requests.filter((r) => r.operation === 'Encrypt')).toHaveLength(1);
    expect(clouds.gcp.calls().filter((c) => c.method === 'Encrypt')).toHaveLength(1);
    expect(clouds.azure.requests().filter((r) => r.operation === 'wrapkey' && r.authorized)).toHaveLength(1);
    await unwrapsTo(client, kek);
    expect(CLOUD.map((c) => clouds.unwrapRequests(c))).toEqual([1, 0, 0]);
    expect(client.stats().failovers).toBe(0);
    // verify asks every cloud; the recipient wrap is never opened online.
    const report = await client.verify('orders');
    expect(report.wraps?.map((w) => [w.slot, w.ok])).toEqual([
      ['aws', true],
      ['gcp', true],
      ['azure', true],
      ['recovery', false],
    ]);
    expect(report.wraps?.[3]?.error).toBeInstanceOf(SlotNotAllowedError);
  });

  it('the primary stopped: gcp serves within the deadline, and the breaker keeps aws out of later calls', async () => {
    const { clouds, client } = await setup();
    const kek = await client.createIndex('orders', { slots: ALL });
    await clouds.stop('aws');
    const { events } = await recording(Channels.kms, async () => {
      for (let i = 0; i < 3; i++) expect(await unwrapsTo(client, kek)).toBeLessThan(DEADLINE_MS + SLACK_MS);
    });
    const awsCalls = (events as Array<{ slot: string; outcome: string }>).filter((e) => e.slot === 'aws');
    expect(awsCalls.length).toBeGreaterThan(0);
    expect(awsCalls.length).toBeLessThanOrEqual(3);
    for (const call of awsCalls) expect(call.outcome).toMatch(DOWN_CODE);
    // Open now: five more unwraps never call aws at all, and gcp serves each.
    const gcpBefore = clouds.unwrapRequests('gcp');
    const later = await recording(Channels.kms, async () => {
      for (let i = 0; i < 5; i++) await unwrapsTo(client, kek);
    });
    const slotsCalled = (later.events as Array<{ slot: string }>).map((e) => e.slot);
    expect(slotsCalled).toEqual(Array(5).fill('gcp'));
    expect(clouds.unwrapRequests('gcp') - gcpBefore).toBe(5);
    expect(clouds.unwrapRequests('azure')).toBe(0);
    const stats = client.stats();
    expect(stats.failovers).toBe(8);
    expect(stats.slots.gcp?.served).toBe(8);
  });

  it('a hanging primary gets half the deadline; gcp serves within the one deadline of the unwrap', async () => {
    const { clouds, client } = await setup();
    const kek = await client.createIndex('orders', { slots: ALL });
    clouds.aws.delay(10_000);
    const { result: took, events } = await recording(Channels.wrap, () => unwrapsTo(client, kek));
    expect(took).toBeLessThan(DEADLINE_MS + SLACK_MS);
    expect(tried(events)).toEqual([
      ['aws', 'KMS_ENVELOPE_DEADLINE_EXCEEDED'],
      ['gcp', 'ok'],
    ]);
    // aws was cut at about half the deadline (the wrap event's own duration).
    const awsMs = (events as Array<{ slot: string; durationMs: number }>).find(
      (e) => e.slot === 'aws',
    )!.durationMs;
    expect(awsMs).toBeLessThan(DEADLINE_MS);
  });

  it('a throttling primary (each fake’s throttling fault) fails over; its breaker opens on throttling', async () => {
    const { clouds, client } = await setup();
    const kek = await client.createIndex('orders', { slots: ALL });
    clouds.aws.throttleNext(1000, 'kms');
    const { events } = await recording(Channels.wrap, async () => {
      for (let i = 0; i < 3; i++) expect(await unwrapsTo(client, kek)).toBeLessThan(DEADLINE_MS + SLACK_MS);
    });
    expect(tried(events).slice(0, 2)).toEqual([
      ['aws', 'KMS_ENVELOPE_THROTTLED'],
      ['gcp', 'ok'],
    ]);
    const throttled = clouds.unwrapRequests('aws');
    expect(throttled).toBeGreaterThan(0);
    expect(throttled).toBeLessThanOrEqual(3);
    for (let i = 0; i < 3; i++) await unwrapsTo(client, kek);
    expect(clouds.unwrapRequests('aws')).toBe(throttled); // breaker open: no more requests

    // gcp throttling (RESOURCE_EXHAUSTED) and azure throttling (429) behind a stopped aws.
    const other = await setup();
    const kek2 = await other.client.createIndex('orders', { slots: ALL });
    await other.clouds.stop('aws');
    other.clouds.gcp.failNext(1000, 'RESOURCE_EXHAUSTED');
    const run = await recording(Channels.wrap, () => unwrapsTo(other.client, kek2));
    expect(run.result).toBeLessThan(DEADLINE_MS + SLACK_MS);
    expect(tried(run.events)).toEqual([
      ['aws', expect.stringMatching(DOWN_CODE)],
      ['gcp', 'KMS_ENVELOPE_THROTTLED'],
      ['azure', 'ok'],
    ]);
    expect(other.client.stats().slots.azure?.served).toBe(1);
    other.clouds.gcp.failNext(0);
    other.clouds.azure.failNext(1000, 429, { retryAfter: 1 });
    // gcp serves again; azure throttling only matters when gcp is gone too.
    await unwrapsTo(other.client, kek2);
    await other.clouds.stop('gcp');
    const err = (await caught(other.client.unwrap('orders'))) as AllWrapsFailedError;
    expect(err.failures.find((f) => f.slot === 'azure')?.error).toBeInstanceOf(ThrottledError);
  });

  it('a denying KMS fails over to the next wrap without opening its breaker', async () => {
    const { clouds, client } = await setup();
    const kek = await client.createIndex('orders', { slots: ALL });
    clouds.aws.failNext(3, { status: 400, type: 'AccessDeniedException' }, 'kms');
    const { events } = await recording(Channels.wrap, async () => {
      for (let i = 0; i < 3; i++) await unwrapsTo(client, kek);
    });
    expect(events.filter((e) => (e as { slot: string }).slot === 'aws')).toEqual(
      Array(3).fill(expect.objectContaining({ outcome: 'KMS_ENVELOPE_ACCESS_DENIED' })),
    );
    // A denial is an answer, not an outage: aws is still asked first, and serves once it allows.
    expect(clouds.unwrapRequests('aws')).toBe(3);
    await unwrapsTo(client, kek);
    expect(clouds.unwrapRequests('aws')).toBe(4);
    expect(client.stats().slots.aws?.served).toBe(1);
    expect(client.stats().slots.gcp?.served).toBe(3);
    // gcp (PERMISSION_DENIED) and azure (403) deny as well, behind a denying aws.
    clouds.aws.failNext(1, { status: 400, type: 'AccessDeniedException' }, 'kms');
    clouds.gcp.failNext(1, 'PERMISSION_DENIED');
    clouds.azure.failNext(1, 403);
    const err = (await caught(client.unwrap('orders'))) as AllWrapsFailedError;
    expect(err.failures.map((f) => [f.slot, f.error.constructor])).toEqual([
      ['aws', AccessDeniedError],
      ['gcp', AccessDeniedError],
      ['azure', AccessDeniedError],
      ['recovery', SlotNotAllowedError],
    ]);
  });

  it('every cloud stopped: AllWrapsFailedError names each slot with its typed error, within the deadline', async () => {
    const { clouds, client } = await setup();
    const kek = await client.createIndex('orders', { slots: ALL });
    for (const cloud of CLOUD) await clouds.stop(cloud);
    const started = performance.now();
    const err = (await caught(client.unwrap('orders'))) as AllWrapsFailedError;
    expect(performance.now() - started).toBeLessThan(DEADLINE_MS + SLACK_MS);
    expect(err).toBeInstanceOf(AllWrapsFailedError);
    expect(err.code).toBe('KMS_ENVELOPE_ALL_WRAPS_FAILED');
    expect(err.retryable).toBe(true);
    expect(failuresOf(err)).toEqual([
      ['aws', DOWN],
      ['gcp', DOWN],
      ['azure', DOWN],
      ['recovery', expect.any(SlotNotAllowedError)],
    ]);
    expect(err.message).toMatch(/aws: KMS_ENVELOPE_\w+.*gcp: KMS_ENVELOPE_\w+.*azure: KMS_ENVELOPE_\w+/);
    expect(findSecret(err, kek.expose())).toBeUndefined();
  });

  it('stopped, throttling and denying at once: each slot’s own typed error', async () => {
    const { clouds, client } = await setup();
    (await client.createIndex('orders', { slots: ALL })).zero();
    await clouds.stop('aws');
    clouds.gcp.failNext(1, 'RESOURCE_EXHAUSTED');
    clouds.azure.failNext(1, 403);
    const err = (await caught(client.unwrap('orders'))) as AllWrapsFailedError;
    expect(failuresOf(err)).toEqual([
      ['aws', DOWN],
      ['gcp', expect.any(ThrottledError)],
      ['azure', expect.any(AccessDeniedError)],
      ['recovery', expect.any(SlotNotAllowedError)],
    ]);
  });
});

describe('threshold 2-of-3 across the three clouds', () => {
  it('any one cloud down still unwraps; two down fails with the missing shares named', async () => {
    const { clouds, client } = await setup();
    const kek = await client.createIndex('orders', { slots: [...CLOUD], threshold: 2 });
    const blob = await client.getEnvelope('orders');
    expect(blob.threshold).toBe(2);
    await unwrapsTo(client, kek);
    expect(CLOUD.map((c) => clouds.unwrapRequests(c))).toEqual([1, 1, 0]);
    // One down: the other two make the KEK.
    await clouds.stop('gcp');
    expect(await unwrapsTo(client, kek)).toBeLessThan(DEADLINE_MS + SLACK_MS);
    expect(clouds.unwrapRequests('azure')).toBe(1);
    // Two down: one share is not enough.
    await clouds.stop('aws');
    const err = (await caught(client.unwrap('orders'))) as AllWrapsFailedError;
    expect(err).toBeInstanceOf(AllWrapsFailedError);
    expect(err.message).toMatch(/fewer than 2 shares/);
    expect(failuresOf(err)).toEqual([
      ['aws', DOWN],
      ['gcp', DOWN],
    ]);
    expect(findSecret(err, kek.expose())).toBeUndefined();
  });
});

describe('tampered wraps', () => {
  it('a secondary re-wrapped (right binding) to another KEK is refused as a tamper signal while azure serves', async () => {
    const { clouds, client, store } = await setup();
    const kek = await client.createIndex('orders', { slots: ALL });
    const blob = await client.getEnvelope('orders');
    // A store writer with gcp encrypt rights wraps a KEK of their choice, bound like the real wrap.
    const gcp = await client.kms.provider('gcp');
    const forged = await gcp.wrap(Kek.generate(), wrapBindingOf(IDX, parseSlotName('gcp'), blob, 2, 4));
    const [, ...rest] = blob.wraps!;
    await overwrite(store, {
      ...blob,
      wraps: [{ ...blob.wraps![0]!, wrappedKek: new Uint8Array(forged.wrappedKek) }, ...rest],
    });
    await clouds.stop('aws');
    const { events } = await recording(Channels.tamper, () => unwrapsTo(client, kek));
    expect(events).toEqual([
      { index: 'orders', version: 1, slots: ['gcp'], providers: ['gcp-kms'], reason: 'kek-check' },
    ]);
    const stats = client.stats();
    expect(stats.tampered).toBe(1);
    expect(stats.slots.gcp?.tampered).toBe(1);
    expect(stats.slots.azure?.served).toBe(1);
    // The forged wrap really did unwrap at gcp: the KEK check, not the KMS, refused it.
    expect(
      clouds.gcp
        .calls()
        .filter((c) => c.method === 'Decrypt')
        .map((c) => c.status),
    ).toEqual(['OK']);
    // With azure gone too, the forged wrap is all that is left: refused, never used.
    await clouds.stop('azure');
    const err = (await caught(client.unwrap('orders'))) as AllWrapsFailedError;
    expect(err.failures.find((f) => f.slot === 'gcp')?.error).toBeInstanceOf(KekMismatchError);
    expect(client.stats().tampered).toBe(2);
  });

  it('a flipped byte in a secondary’s wrappedKek fails that slot with UnwrapFailedError; another wrap serves', async () => {
    const { clouds, client, store } = await setup();
    const kek = await client.createIndex('orders', { slots: ALL });
    const blob = await client.getEnvelope('orders');
    const flip = (bytes: Uint8Array) => {
      const out = new Uint8Array(bytes);
      out[out.length - 1]! ^= 0x01;
      return out;
    };
    const [gcpWrap, azureWrap, recoveryWrap] = blob.wraps!;
    await overwrite(store, {
      ...blob,
      wraps: [{ ...gcpWrap!, wrappedKek: flip(gcpWrap!.wrappedKek) }, azureWrap!, recoveryWrap!],
    });
    await clouds.stop('aws');
    const { events } = await recording(Channels.wrap, () => unwrapsTo(client, kek));
    expect(tried(events)).toEqual([
      ['aws', expect.stringMatching(DOWN_CODE)],
      ['gcp', 'KMS_ENVELOPE_UNWRAP_FAILED'],
      ['azure', 'ok'],
    ]);
    expect(client.stats().slots.azure?.served).toBe(1);
    expect(client.stats().tampered).toBe(0); // refused by gcp itself, not a KEK-check mismatch
    // The same byte flipped in azure's wrap: Key Vault refuses it too.
    await overwrite(store, {
      ...blob,
      wraps: [
        { ...gcpWrap!, wrappedKek: flip(gcpWrap!.wrappedKek) },
        { ...azureWrap!, wrappedKek: flip(azureWrap!.wrappedKek) },
        recoveryWrap!,
      ],
    });
    const err = (await caught(client.unwrap('orders'))) as AllWrapsFailedError;
    expect(failuresOf(err)).toEqual([
      ['aws', DOWN],
      ['gcp', expect.any(UnwrapFailedError)],
      ['azure', expect.any(UnwrapFailedError)],
      ['recovery', expect.any(SlotNotAllowedError)],
    ]);
    // Not a tamper signal: the KMS refused the bytes, no KEK came out.
    expect(failuresOf(err).some(([, e]) => e instanceof KekMismatchError)).toBe(false);
  });
});

describe('break-glass recovery after every cloud is gone', () => {
  it('recover() opens the recipient wrap offline, re-wraps under a freshly started KMS, and unwrap works', async () => {
    const { clouds, client, store, pair, slots } = await setup();
    const kek = await client.createIndex('orders', { slots: ALL });
    const v1 = await client.getEnvelope('orders');
    const kekCheck = new Uint8Array(v1.kekCheck!); // recorded outside the store at create time
    for (const cloud of CLOUD) await clouds.stop(cloud);
    expect(await caught(client.unwrap('orders'))).toBeInstanceOf(AllWrapsFailedError);

    // The operator's run: a new KMS (another fake AWS, as a new region would be) and the offline key.
    const dr = await startFakeAws();
    running.push(() => dr.close());
    const operator = new KmsEnvelopeClient({
      store,
      kms: { slots: { ...slots, 'aws-dr': await awsSlotOf(dr) } },
      cache: false,
      kmsCalls,
    });
    running.push(() => operator.close());
    const next = await operator.recover('orders', {
      privateKey: pair.privateKey,
      toSlots: ['aws-dr', 'recovery'],
      expectedKekCheck: kekCheck,
    });
    expect(next.version).toBe(2);
    expect([next.kmsName, ...next.wraps!.map((w) => w.kmsName)]).toEqual(['aws-dr', 'recovery']);
    expect(next.creationId).toEqual(v1.creationId);
    // Recovery called only the new KMS, once, to wrap.
    expect(dr.requests.map((r) => r.operation)).toEqual(['Encrypt']);
    await unwrapsTo(operator, kek);
    expect(dr.requests.map((r) => r.operation)).toEqual(['Encrypt', 'Decrypt']);
    // A second recovery with the key of another pair is refused, and changes nothing.
    const other = await generateRecipientKeyPair('x25519');
    expect(await caught(operator.recover('orders', { privateKey: other.privateKey }))).toBeInstanceOf(
      KeyNotFoundError,
    );
    expect((await operator.getEnvelope('orders')).version).toBe(2);
  });

  it('recover() to a local slot works too (no cloud at all)', async () => {
    const { clouds, client, pair } = await setup({
      spare: { provider: 'local', masterKey: `literal:${randomBytes(32).toString('base64url')}` },
    });
    const kek = await client.createIndex('orders', { slots: ALL });
    const v1 = await client.getEnvelope('orders');
    for (const cloud of CLOUD) await clouds.stop(cloud);
    const next = await client.recover('orders', {
      privateKey: pair.privateKey,
      toSlots: ['spare', 'recovery'],
      expectedKekCheck: v1.kekCheck!,
    });
    expect(next.kmsName).toBe('spare');
    await unwrapsTo(client, kek);
    expect(client.stats().slots.spare?.served).toBe(1);
  });
});
