/**
 * `gcp-kms` end to end: the provider with a real `KeyManagementServiceClient` against the fake
 * Cloud KMS of `kms-envelope/testing` (gRPC on 127.0.0.1), then the conformance suite.
 */
import { KeyManagementServiceClient } from '@google-cloud/kms';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createGcpKmsProvider } from '../../providers/gcp-kms.js';
import { KmsEnvelopeClient } from '../../src/client.js';
import {
  AccessDeniedError,
  DeadlineExceededError,
  IntegrityError,
  KeyDisabledError,
  KeyNotFoundError,
  ProviderUnavailableError,
  ThrottledError,
  UnwrapFailedError,
} from '../../src/errors.js';
import { Kek } from '../../src/keys/kek.js';
import { parseIndexName, parseSlotName } from '../../src/names.js';
import type { KmsProvider } from '../../src/providers/provider.js';
import { StorageConfig } from '../../src/storage/config.js';
import { type FakeGcpKms, startFakeGcpKms } from '../../src/testing/index.js';
import { findSecret } from '../helpers/find-secret.js';
import { runProviderConformance } from './conformance.js';

const KEY = 'projects/p1/locations/europe-west1/keyRings/ring/cryptoKeys/kek';
const OTHER_KEY = 'projects/p1/locations/europe-west1/keyRings/ring/cryptoKeys/other';

runProviderConformance(
  'gcp-kms',
  async () => {
    const fake = await startFakeGcpKms({ cryptoKeys: [KEY, OTHER_KEY] });
    const slot = (keyId: string) => ({
      provider: 'gcp-kms',
      keyId,
      region: 'europe-west1',
      endpoint: fake.endpoint,
      options: { insecure: true },
    });
    return {
      kms: { slots: { a: slot(KEY), b: slot(KEY) } },
      wrongKeyKms: { slots: { a: slot(OTHER_KEY), b: slot(OTHER_KEY) } },
      cleanup: () => fake.close(),
      faults: {
        setKeyDisabled: (disabled) => fake.setVersionState(KEY, disabled ? 'DISABLED' : 'ENABLED'),
        throttleNext: (count) => fake.failNext(count, 'RESOURCE_EXHAUSTED'),
        delay: (ms) => fake.delay(ms),
        calls: () => fake.calls().length,
        stop: () => fake.close(),
        denyNext: () => fake.failNext(1, 'PERMISSION_DENIED'),
        notFoundNext: () => fake.failNext(1, 'NOT_FOUND'),
      },
    };
  },
  { faults: true },
);

describe('gcp-kms provider against the fake Cloud KMS', () => {
  let fake: FakeGcpKms;
  let sdk: KeyManagementServiceClient;
  let provider: KmsProvider;
  const ctx = {
    index: parseIndexName('orders'),
    slot: parseSlotName('prod'),
    encryptionContext: { tenant: 't1' },
  };

  beforeAll(async () => {
    fake = await startFakeGcpKms({ cryptoKeys: [KEY] });
    sdk = new KeyManagementServiceClient(fake.clientOptions());
    provider = createGcpKmsProvider({ keyName: KEY, client: sdk });
  });
  afterAll(async () => {
    await sdk.close();
    await fake.close();
  });

  it('records the CryptoKeyVersion and location; sends and gets every CRC32C', async () => {
    const kek = Kek.generate();
    const wrapped = await provider.wrap(kek, ctx);
    expect(wrapped.keyId).toBe(`${KEY}/cryptoKeyVersions/1`);
    expect(wrapped.region).toBe('europe-west1');
    expect(Buffer.from(wrapped.wrappedKek).includes(kek.expose())).toBe(false);
    const unwrapped = await provider.unwrap(wrapped, ctx);
    expect(unwrapped.equals(kek)).toBe(true);
    const last = fake.calls().slice(-2);
    expect(last.map((c) => [c.method, c.name, c.status])).toEqual([
      ['Encrypt', KEY, 'OK'],
      ['Decrypt', KEY, 'OK'],
    ]);
  });

  it('after a rotation new wraps use the new version and old envelopes still unwrap', async () => {
    const kek = Kek.generate();
    const old = await provider.wrap(kek, ctx);
    const newVersion = fake.rotate(KEY);
    const fresh = await provider.wrap(kek, ctx);
    expect(fresh.keyId).toBe(newVersion);
    expect(fresh.keyId).not.toBe(old.keyId);
    expect((await provider.unwrap(old, ctx)).equals(kek)).toBe(true);
    expect((await provider.unwrap(fresh, ctx)).equals(kek)).toBe(true);
    // Disabling the old version stops only the old envelope.
    fake.setVersionState(old.keyId, 'DISABLED');
    await expect(provider.unwrap(old, ctx)).rejects.toThrow(KeyDisabledError);
    expect((await provider.unwrap(fresh, ctx)).equals(kek)).toBe(true);
    fake.setVersionState(old.keyId, 'DESTROYED');
    await expect(provider.unwrap(old, ctx)).rejects.toThrow(KeyDisabledError);
  });

  it('a disabled primary refuses to wrap with KeyDisabledError', async () => {
    const version = fake.rotate(KEY);
    fake.setVersionState(version, 'DISABLED');
    const err = await provider.wrap(Kek.generate(), ctx).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(KeyDisabledError);
    expect((err as Error).message).toContain('orders');
    fake.setVersionState(version, 'ENABLED');
  });

  it('injected statuses map to typed errors, retryable where they should be', async () => {
    const kek = Kek.generate();
    const wrapped = await provider.wrap(kek, ctx);
    const cases = [
      ['UNAVAILABLE', ProviderUnavailableError, true],
      ['RESOURCE_EXHAUSTED', ThrottledError, true],
      ['PERMISSION_DENIED', AccessDeniedError, false],
      ['UNAUTHENTICATED', AccessDeniedError, false],
      ['NOT_FOUND', KeyNotFoundError, false],
      ['DEADLINE_EXCEEDED', DeadlineExceededError, true],
    ] as const;
    for (const [status, type, retryable] of cases) {
      fake.failNext(1, status);
      const before = fake.calls().length;
      const err = await provider.unwrap(wrapped, ctx).catch((e: unknown) => e);
      expect(err, status).toBeInstanceOf(type);
      expect((err as ProviderUnavailableError).retryable, status).toBe(retryable);
      expect((err as Error).cause, status).toMatchObject({ code: expect.any(Number) });
      // One call: gax's own retries are off (its defaults would retry UNAVAILABLE).
      expect(fake.calls().length - before, status).toBe(1);
    }
    expect((await provider.unwrap(wrapped, ctx)).equals(kek)).toBe(true);
  });

  it('an unknown CryptoKey is KeyNotFoundError', async () => {
    const missing = createGcpKmsProvider({
      keyName: 'projects/p1/locations/europe-west1/keyRings/ring/cryptoKeys/missing',
      client: sdk,
    });
    await expect(missing.wrap(Kek.generate(), ctx)).rejects.toThrow(KeyNotFoundError);
  });

  it('a response with a wrong CRC32C is an IntegrityError, both ways', async () => {
    const kek = Kek.generate();
    fake.corruptNext(1);
    await expect(provider.wrap(kek, ctx)).rejects.toThrow(IntegrityError);
    const wrapped = await provider.wrap(kek, ctx);
    fake.corruptNext(1);
    const err = await provider.unwrap(wrapped, ctx).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(IntegrityError);
    expect((err as IntegrityError).retryable).toBe(true);
    expect((await provider.unwrap(wrapped, ctx)).equals(kek)).toBe(true);
  });

  it('another index, slot or context fails with UnwrapFailedError (the AAD binds them)', async () => {
    const wrapped = await provider.wrap(Kek.generate(), ctx);
    for (const other of [
      { ...ctx, index: parseIndexName('other') },
      { ...ctx, slot: parseSlotName('other') },
      { ...ctx, encryptionContext: {} },
    ]) {
      await expect(provider.unwrap(wrapped, other)).rejects.toThrow(UnwrapFailedError);
    }
  });

  it('an abort cancels the call on the wire and fails with DeadlineExceededError', async () => {
    const wrapped = await provider.wrap(Kek.generate(), ctx);
    fake.delay(3000);
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 100);
    const err = await provider
      .unwrap(wrapped, { ...ctx, signal: controller.signal })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DeadlineExceededError);
    await expect.poll(() => fake.calls().at(-1)?.status).toBe('CANCELLED');
    fake.delay(0);
  });

  it('the callTimeoutMs becomes the gRPC deadline', async () => {
    const quick = createGcpKmsProvider({ keyName: KEY, client: sdk, callTimeoutMs: 100 });
    fake.delay(3000);
    const err = await quick.wrap(Kek.generate(), ctx).catch((e: unknown) => e);
    fake.delay(0);
    expect(err).toBeInstanceOf(DeadlineExceededError);
    expect((err as Error).cause).toMatchObject({ code: 4 });
  });

  it('through the client: the envelope records the version; rotation of the key keeps it readable', async () => {
    const client = new KmsEnvelopeClient({
      store: StorageConfig.memory(),
      kms: {
        slots: {
          prod: {
            provider: 'gcp-kms',
            keyId: KEY,
            options: { client: sdk },
          },
        },
      },
    });
    const kek = await client.createIndex('idx-1', { slot: 'prod' });
    const blob = await client.getEnvelope('idx-1');
    expect(blob.keyId).toMatch(new RegExp(`^${KEY}/cryptoKeyVersions/\\d+$`));
    expect(blob.region).toBe('europe-west1');
    fake.rotate(KEY);
    client.invalidate('idx-1');
    expect((await client.unwrap('idx-1')).equals(kek)).toBe(true);
    await client.close();
  });
});

describe('no key bytes in gcp-kms errors', () => {
  it('a failed Encrypt error (with its gRPC cause, inspected deeply) never holds the KEK', async () => {
    const { inspect } = await import('node:util');
    const fake = await startFakeGcpKms({ cryptoKeys: [KEY] });
    const client = new KmsEnvelopeClient({
      store: StorageConfig.memory(),
      kms: {
        slots: {
          g: { provider: 'gcp-kms', keyId: KEY, endpoint: fake.endpoint, options: { insecure: true } },
        },
      },
      kmsCalls: { retries: 0 },
    });
    const kek = Kek.generate();
    const forms = (['hex', 'base64', 'base64url'] as const).map((enc) => kek.expose().toString(enc));
    for (const status of ['INVALID_ARGUMENT', 'UNAVAILABLE', 'PERMISSION_DENIED'] as const) {
      fake.failNext(1, status, 'injected');
      const err = await client
        .createIndex(`i-${status.toLowerCase()}`, { slot: 'g', kek })
        .catch((e: unknown) => e);
      expect(err).toBeInstanceOf(Error);
      const text = `${inspect(err, { depth: 30, showHidden: true })}${JSON.stringify(err)}${(err as Error).stack}`;
      for (const form of forms) expect(text).not.toContain(form);
      // And the values themselves, byte arrays included (rendered forms hide those).
      expect(findSecret(err, kek.expose())).toBeUndefined();
    }
    kek.zero();
    await client.close();
    await fake.close();
  });
});
