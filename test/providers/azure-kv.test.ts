/**
 * `azure-kv` end to end: the provider with a real `@azure/keyvault-keys` client over HTTPS against
 * the fake Key Vault (401 challenge, bearer token, real RSA-OAEP-256 and A256KW), and the
 * conformance suite.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAzureKvProvider } from '../../providers/azure-kv.js';
import { KmsEnvelopeClient } from '../../src/client.js';
import {
  AccessDeniedError,
  DeadlineExceededError,
  KeyDisabledError,
  KeyNotFoundError,
  ProviderUnavailableError,
  ThrottledError,
  UnwrapFailedError,
} from '../../src/errors.js';
import { Kek } from '../../src/keys/kek.js';
import { parseIndexName, parseSlotName } from '../../src/names.js';
import type { KmsSlotInput } from '../../src/providers/slot.js';
import { StorageConfig } from '../../src/storage/config.js';
import { type FakeAzureKvHandle, startFakeAzureKv } from '../../src/testing/fake-azure-kv.js';
import { runProviderConformance } from './conformance.js';

const slotOf = (
  fake: FakeAzureKvHandle,
  keyId: string,
  options: Record<string, unknown> = {},
): KmsSlotInput => ({
  provider: 'azure-kv',
  keyId,
  // RSA keys: the wrap needs only the public key, so the slot must opt in to unwrap.
  allowPublicKeyWrap: true,
  options: { credential: fake.credential, clientOptions: fake.clientOptions(), ...options },
});

runProviderConformance(
  'azure-kv',
  async () => {
    const fake = await startFakeAzureKv();
    await fake.createKey('kek-a', 'RSA');
    await fake.createKey('kek-other', 'RSA');
    const a = fake.keyId('kek-a'); // versionless: the provider records the version
    const other = fake.keyId('kek-other');
    return {
      kms: { slots: { a: slotOf(fake, a), b: slotOf(fake, a) } },
      wrongKeyKms: { slots: { a: slotOf(fake, other), b: slotOf(fake, other) } },
      cleanup: () => fake.close(),
      faults: {
        setKeyDisabled: (disabled) => fake.setEnabled('kek-a', !disabled),
        throttleNext: (count) => fake.failNext(count, 429),
        delay: (ms) => fake.delay(ms),
        calls: () => fake.calls(),
        stop: () => fake.close(),
        denyNext: () => fake.failNext(1, 403),
        notFoundNext: () => fake.failNext(1, 404),
      },
    };
  },
  { faults: true },
);

const ctx = (index = 'idx-1', signal?: AbortSignal) => ({
  index: parseIndexName(index),
  slot: parseSlotName('kv'),
  encryptionContext: { tenant: 't1' },
  ...(signal ? { signal } : {}),
});

describe('azure-kv against the fake Key Vault over HTTPS', () => {
  let fake: FakeAzureKvHandle;
  beforeAll(async () => {
    fake = await startFakeAzureKv();
    await fake.createKey('rsa', 'RSA');
    await fake.createKey('hsm', 'oct-HSM');
  });
  afterAll(async () => {
    await fake.close();
  });

  const provider = (keyId: string, extra: Record<string, unknown> = {}) =>
    createAzureKvProvider({
      keyId,
      credential: fake.credential,
      clientOptions: fake.clientOptions(),
      allowPublicKeyWrap: true,
      ...extra,
    });

  it('RSA-OAEP-256: 401 challenge then bearer, the versioned kid is recorded, rotation keeps old envelopes', async () => {
    await fake.createKey('rotating', 'RSA');
    const v1 = fake.latestKeyId('rotating');
    const p = provider(fake.keyId('rotating'));
    const kek = Kek.generate();
    const mark = fake.requests().length;
    const first = await p.wrap(kek, ctx());
    const seen = fake.requests().slice(mark);
    expect(seen[0]).toMatchObject({ authorized: false, status: 401 });
    expect(seen.slice(1).every((r) => r.authorized)).toBe(true);
    expect(seen.find((r) => r.operation === 'wrapkey')).toMatchObject({ alg: 'RSA-OAEP-256', status: 200 });
    expect(first.keyId).toBe(v1);
    expect(first.wrappedKek[0]).toBe(1);
    expect((first.wrappedKek[1]! << 8) | first.wrappedKek[2]!).toBe(256);

    const v2 = await fake.rotateKey('rotating');
    const second = await provider(fake.keyId('rotating')).wrap(kek, ctx());
    expect(second.keyId).toBe(v2);
    // The old envelope unwraps with the version it recorded, the new one with the new version.
    const unwrapMark = fake.requests().length;
    expect((await p.unwrap(first, ctx())).equals(kek)).toBe(true);
    expect((await p.unwrap(second, ctx())).equals(kek)).toBe(true);
    const unwraps = fake
      .requests()
      .slice(unwrapMark)
      .filter((r) => r.operation === 'unwrapkey')
      .map((r) => r.path);
    expect(unwraps).toEqual([
      `/keys/rotating/${v1.split('/').pop()}/unwrapkey`,
      `/keys/rotating/${v2.split('/').pop()}/unwrapkey`,
    ]);
  });

  it('a versioned slot key keeps wrapping with that version after a rotation', async () => {
    await fake.createKey('pinned', 'RSA');
    const v1 = fake.latestKeyId('pinned');
    await fake.rotateKey('pinned');
    const p = provider(v1);
    const wrapped = await p.wrap(Kek.generate(), ctx());
    expect(wrapped.keyId).toBe(v1);
  });

  it('A256KW with a Managed HSM oct-HSM key', async () => {
    const p = provider(fake.keyId('hsm'), { algorithm: 'A256KW' });
    const kek = Kek.generate();
    const mark = fake.requests().length;
    const wrapped = await p.wrap(kek, ctx());
    expect(wrapped.keyId).toBe(fake.latestKeyId('hsm'));
    expect(wrapped.wrappedKek[0]).toBe(2);
    expect((wrapped.wrappedKek[1]! << 8) | wrapped.wrappedKek[2]!).toBe(40);
    expect((await p.unwrap(wrapped, ctx())).equals(kek)).toBe(true);
    expect(
      fake
        .requests()
        .slice(mark)
        .filter((r) => r.operation !== 'get' && r.authorized)
        .map((r) => [r.operation, r.alg]),
    ).toEqual([
      ['wrapkey', 'A256KW'],
      ['unwrapkey', 'A256KW'],
    ]);
    // The format byte, not the slot setting, says how to unwrap.
    expect((await provider(fake.keyId('hsm')).unwrap(wrapped, ctx())).equals(kek)).toBe(true);
    // RSA-OAEP-256 does not fit an oct-HSM key: a configuration error, not a retry.
    await expect(provider(fake.keyId('hsm')).wrap(kek, ctx())).rejects.toMatchObject({
      code: 'KMS_ENVELOPE_CONFIG',
    });
  });

  it('an envelope bound to one index does not unwrap for another (the GCM binding, not Key Vault, refuses)', async () => {
    const p = provider(fake.keyId('rsa'));
    const wrapped = await p.wrap(Kek.generate(), ctx('idx-1'));
    const before = fake.calls();
    await expect(p.unwrap(wrapped, ctx('idx-2'))).rejects.toThrow(UnwrapFailedError);
    // Key Vault did unwrap K (one call): it is the AAD of the KEK's seal that failed.
    expect(fake.calls() - before).toBe(1);
  });

  it('403 / 404 / 429 / 503 from Key Vault become typed errors that name the index', async () => {
    const p = provider(fake.keyId('rsa'));
    const wrapped = await p.wrap(Kek.generate(), ctx());
    const cases = [
      [403, AccessDeniedError, false],
      [404, KeyNotFoundError, false],
      [429, ThrottledError, true],
      [503, ProviderUnavailableError, true],
    ] as const;
    for (const [status, type, retryable] of cases) {
      fake.failNext(1, status, { retryAfter: 2 });
      const err = (await p.unwrap(wrapped, ctx()).catch((e: unknown) => e)) as InstanceType<typeof type>;
      expect(err).toBeInstanceOf(type);
      expect(err.retryable).toBe(retryable);
      expect(err.message).toContain('idx-1');
      if (status === 429) expect((err as ThrottledError).retryAfterMs).toBe(2000);
    }
  });

  it('a disabled key: unwrap fails with KeyDisabledError; enabled again, it works', async () => {
    await fake.createKey('switch', 'RSA');
    const p = provider(fake.keyId('switch'));
    const kek = Kek.generate();
    const wrapped = await p.wrap(kek, ctx());
    fake.setEnabled('switch', false);
    const err = await p.unwrap(wrapped, ctx()).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(KeyDisabledError);
    expect((err as Error).cause).toMatchObject({ statusCode: 403, innerCode: 'KeyDisabled' });
    fake.setEnabled('switch', true);
    expect((await p.unwrap(wrapped, ctx())).equals(kek)).toBe(true);
  });

  it('an expired key: the SDK refuses it before calling, and that is KeyDisabledError too', async () => {
    await fake.createKey('expired', 'RSA', { expiresOn: new Date(Date.now() - 60_000) });
    const before = fake.calls();
    await expect(provider(fake.keyId('expired')).wrap(Kek.generate(), ctx())).rejects.toThrow(
      KeyDisabledError,
    );
    expect(fake.calls() - before).toBe(0);
  });

  it('a deleted key (or version) is KeyNotFoundError', async () => {
    await expect(provider(fake.keyId('never-created')).wrap(Kek.generate(), ctx())).rejects.toThrow(
      KeyNotFoundError,
    );
    const wrapped = await provider(fake.keyId('rsa')).wrap(Kek.generate(), ctx());
    const missingVersion = { ...wrapped, keyId: fake.keyId('rsa', '0'.repeat(32)) };
    await expect(provider(fake.keyId('rsa')).unwrap(missingVersion, ctx())).rejects.toThrow(KeyNotFoundError);
  });

  it('a token Key Vault does not accept is AccessDeniedError', async () => {
    const wrong = {
      getToken: async () => ({ token: 'not-the-fake-token', expiresOnTimestamp: Date.now() + 60_000 }),
    };
    await expect(
      createAzureKvProvider({
        keyId: fake.keyId('rsa'),
        credential: wrong,
        clientOptions: fake.clientOptions(),
      }).wrap(Kek.generate(), ctx()),
    ).rejects.toThrow(AccessDeniedError);
  });

  it('a slow Key Vault: the call is aborted at the signal, DeadlineExceededError', async () => {
    const p = provider(fake.keyId('rsa'));
    const wrapped = await p.wrap(Kek.generate(), ctx());
    fake.delay(5000);
    try {
      const err = await p.unwrap(wrapped, ctx('idx-1', AbortSignal.timeout(150))).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(DeadlineExceededError);
    } finally {
      fake.delay(0);
    }
  });

  it('through the client and registry: create, unwrap, rotate', async () => {
    const client = new KmsEnvelopeClient({
      store: StorageConfig.memory(),
      kms: { slots: { kv: slotOf(fake, fake.keyId('rsa')) } },
    });
    const kek = await client.createIndex('orders', { slot: 'kv' });
    const blob = await client.getEnvelope('orders');
    expect(blob.provider).toBe('azure-kv');
    expect(blob.keyId).toBe(fake.latestKeyId('rsa'));
    expect((await client.unwrap('orders')).equals(kek)).toBe(true);
    await client.close();
  });
});

it('a vault that cannot be reached is ProviderUnavailableError (retryable)', async () => {
  const fake = await startFakeAzureKv();
  await fake.createKey('k', 'RSA');
  const p = createAzureKvProvider({
    keyId: fake.keyId('k'),
    credential: fake.credential,
    clientOptions: fake.clientOptions(),
  });
  await fake.close();
  const err = await p.wrap(Kek.generate(), ctx()).catch((e: unknown) => e);
  expect(err).toBeInstanceOf(ProviderUnavailableError);
  expect((err as ProviderUnavailableError).retryable).toBe(true);
});
