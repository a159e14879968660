/**
 * `vault-transit` end to end against the fake Vault (`startFakeVaultTransit`): the conformance
 * suite with every fault, then what is Transit's own (binding as associated_data or as a derived
 * key's context, key versions and min_decryption_version, AppRole, namespaces, TLS with a custom
 * CA, no redirects, no rewrap) and `doctor` on a vault-transit slot.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createVaultTransitProvider, sanitizeVaultMessage } from '../../providers/vault-transit.js';
import { KmsEnvelopeClient } from '../../src/client.js';
import { bindingAadOf } from '../../src/crypto/binding.js';
import { diagnoseSlot } from '../../src/doctor.js';
import {
  AccessDeniedError,
  ConfigError,
  KeyDisabledError,
  KeyNotFoundError,
  ProviderUnavailableError,
  ThrottledError,
  UnwrapFailedError,
} from '../../src/errors.js';
import { Kek } from '../../src/keys/kek.js';
import { parseIndexName, parseSlotName } from '../../src/names.js';
import type { KmsProvider } from '../../src/providers/provider.js';
import { KmsRegistry } from '../../src/providers/registry.js';
import type { KmsSlotInput } from '../../src/providers/slot.js';
import { StorageConfig } from '../../src/storage/config.js';
import { type FakeVaultTransit, startFakeVaultTransit } from '../../src/testing/fake-vault-transit.js';
import { runProviderConformance } from './conformance.js';

const secrets = { allowLiteral: true };

const slotOf = (
  fake: FakeVaultTransit,
  keyId: string,
  options: Record<string, unknown> = {},
): KmsSlotInput => ({
  provider: 'vault-transit',
  endpoint: fake.address,
  keyId,
  options: { token: `literal:${fake.token}`, ...options },
});

runProviderConformance(
  'vault-transit',
  async () => {
    const fake = await startFakeVaultTransit({ keys: [{ name: 'kek-a' }, { name: 'kek-other' }] });
    return {
      kms: { slots: { a: slotOf(fake, 'kek-a'), b: slotOf(fake, 'kek-a') }, secrets },
      wrongKeyKms: { slots: { a: slotOf(fake, 'kek-other'), b: slotOf(fake, 'kek-other') }, secrets },
      cleanup: () => fake.stop(),
      faults: {
        // Transit has no "disabled" state: a version below min_decryption_version is refused.
        setKeyDisabled(disabled) {
          if (disabled && fake.keyInfo('kek-a').latestVersion < 2) fake.rotateKey('kek-a');
          fake.configureKey('kek-a', {
            minDecryptionVersion: disabled ? fake.keyInfo('kek-a').latestVersion : 1,
          });
        },
        throttleNext: (count) => fake.failNext(count, 429),
        delay: (ms) => fake.delay(ms),
        calls: () => fake.calls(),
        stop: () => fake.stop(),
        denyNext: () => fake.failNext(1, 403),
        notFoundNext: () => fake.failNext(1, 400, { message: 'encryption key not found' }),
      },
    };
  },
  { faults: true },
);

const ctx = (
  index = 'idx-1',
  extra: { version?: number; creationId?: Uint8Array; signal?: AbortSignal } = {},
) => ({
  index: parseIndexName(index),
  slot: parseSlotName('vt'),
  encryptionContext: { tenant: 't1' },
  ...extra,
});

/** Every message and cause message of an error chain. */
function textOf(err: unknown): string {
  const parts: string[] = [];
  for (let e = err as { message?: unknown; cause?: unknown } | undefined; e; e = e.cause as typeof e) {
    parts.push(String(e.message));
    if (parts.length > 5) break;
  }
  return parts.join(' | ');
}

describe('vault-transit against the fake Vault', () => {
  let fake: FakeVaultTransit;
  const providers: KmsProvider[] = [];
  const provider = (
    keyName: string,
    extra: Partial<Parameters<typeof createVaultTransitProvider>[0]> = {},
  ) => {
    const p = createVaultTransitProvider({
      address: fake.address,
      keyName,
      auth: { token: Buffer.from(fake.token) },
      ...extra,
    });
    providers.push(p);
    return p;
  };
  beforeAll(async () => {
    fake = await startFakeVaultTransit({
      keys: [
        { name: 'kek' },
        { name: 'derived', derived: true },
        { name: 'chacha', type: 'chacha20-poly1305' },
        { name: 'in-team', namespace: 'team-a' },
        { name: 'elsewhere', mount: 'kms/transit' },
      ],
      appRoles: [{ roleId: 'role-1', secretId: 'secret-id-0123456789abcdef' }],
    });
  });
  afterAll(async () => {
    await Promise.all(providers.map((p) => p.close?.()));
    await fake.stop();
  });

  it('wraps with the binding as associated_data only, records <mount>/keys/<name>:v<n> and the ciphertext bytes', async () => {
    const p = provider('kek');
    const kek = Kek.generate();
    const mark = fake.requests().length;
    const wrapped = await p.wrap(kek, ctx());
    const seen = fake.requests().slice(mark);
    expect(seen.map((r) => [r.method, r.operation, r.status])).toEqual([
      ['GET', 'read-key', 200],
      ['GET', 'seal-status', 200],
      ['POST', 'encrypt', 200],
    ]);
    const encrypt = seen[2]!;
    // The KEK goes only as plaintext; the binding only as associated_data.
    expect(encrypt.fields).toEqual(['plaintext', 'associated_data']);
    expect(encrypt.associatedData).toBe(bindingAadOf('vault-transit', ctx()).toString('base64'));
    expect(wrapped.keyId).toBe('transit/keys/kek:v1');
    expect(wrapped.region).toBe('');
    expect(Buffer.from(wrapped.wrappedKek).toString('latin1')).toMatch(/^vault:v1:[A-Za-z0-9+/]{80}$/);
    expect((await p.unwrap(wrapped, ctx())).equals(kek)).toBe(true);
    // The key metadata and server version were read once.
    expect(
      fake
        .requests()
        .slice(mark + 3)
        .map((r) => r.operation),
    ).toEqual(['decrypt']);
  });

  it('an envelope of another index, slot, version or creation does not unwrap (Vault refuses the AAD)', async () => {
    const p = provider('kek');
    const creationId = new Uint8Array(16).fill(7);
    const wrapped = await p.wrap(Kek.generate(), ctx('idx-1', { version: 3, creationId }));
    for (const other of [
      ctx('idx-2', { version: 3, creationId }),
      ctx('idx-1', { version: 2, creationId }),
      ctx('idx-1', { version: 3, creationId: new Uint8Array(16).fill(8) }),
      { ...ctx('idx-1', { version: 3, creationId }), slot: parseSlotName('other') },
    ]) {
      const before = fake.calls();
      const err = await p.unwrap(wrapped, other).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(UnwrapFailedError);
      expect(fake.calls() - before).toBe(1); // Vault itself refused it
      expect(fake.requests().at(-1)).toMatchObject({ operation: 'decrypt', status: 400 });
    }
  });

  it('ChaCha20-Poly1305 keys bind the same way', async () => {
    const p = provider('chacha');
    const kek = Kek.generate();
    const wrapped = await p.wrap(kek, ctx());
    expect((await p.unwrap(wrapped, ctx())).equals(kek)).toBe(true);
    await expect(p.unwrap(wrapped, ctx('idx-2'))).rejects.toThrow(UnwrapFailedError);
  });

  it('binding: context on a derived key: the context binds; the fake refuses the key without one', async () => {
    const p = provider('derived', { binding: 'context' });
    const kek = Kek.generate();
    const mark = fake.requests().length;
    const wrapped = await p.wrap(kek, ctx());
    const encrypt = fake
      .requests()
      .slice(mark)
      .find((r) => r.operation === 'encrypt')!;
    expect(encrypt.fields).toEqual(['plaintext', 'context']);
    // A derived key needs no server-version check: the context binds on every Vault version.
    expect(
      fake
        .requests()
        .slice(mark)
        .map((r) => r.operation),
    ).not.toContain('seal-status');
    expect((await p.unwrap(wrapped, ctx())).equals(kek)).toBe(true);
    await expect(p.unwrap(wrapped, ctx('idx-2'))).rejects.toThrow(UnwrapFailedError);
    // Straight to the fake: a derived key without a context is a 400 with Vault's message.
    const res = await fetch(`${fake.address}/v1/transit/decrypt/derived`, {
      method: 'POST',
      headers: { 'x-vault-token': fake.token },
      body: JSON.stringify({ ciphertext: Buffer.from(wrapped.wrappedKek).toString('latin1') }),
    });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { errors: string[] }).errors[0]).toMatch(
      /^missing 'context' for key derivation/,
    );
    // The default binding on a derived key sends both.
    const both = provider('derived');
    const at = fake.requests().length;
    const again = await both.wrap(kek, ctx());
    expect(
      fake
        .requests()
        .slice(at)
        .find((r) => r.operation === 'encrypt')!.fields,
    ).toEqual(['plaintext', 'associated_data', 'context']);
    expect((await both.unwrap(again, ctx())).equals(kek)).toBe(true);
  });

  it('binding: context on a key that is not derived is refused before any encrypt (Vault would ignore the context)', async () => {
    const mark = fake.requests().length;
    const err = await provider('kek', { binding: 'context' })
      .wrap(Kek.generate(), ctx())
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).message).toMatch(/not derived/);
    expect(
      fake
        .requests()
        .slice(mark)
        .map((r) => r.operation),
    ).toEqual(['read-key']);
  });

  it('a Vault older than 1.13 (no associated_data) is refused for binding: associated_data; a derived key still works', async () => {
    const old = await startFakeVaultTransit({
      version: '1.12.3',
      keys: [{ name: 'k' }, { name: 'd', derived: true }],
    });
    try {
      const make = (keyName: string) =>
        createVaultTransitProvider({
          address: old.address,
          keyName,
          auth: { token: Buffer.from(old.token) },
        });
      const err = await make('k')
        .wrap(Kek.generate(), ctx())
        .catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ConfigError);
      expect((err as Error).message).toMatch(/1\.12\.3 predates associated_data/);
      expect(old.requests().map((r) => r.operation)).not.toContain('encrypt');
      const kek = Kek.generate();
      const derived = make('d');
      expect((await derived.unwrap(await derived.wrap(kek, ctx()), ctx())).equals(kek)).toBe(true);
    } finally {
      await old.stop();
    }
  });

  it('key versions: after a Vault rotation new wraps record :v2, old ones still unwrap until min_decryption_version', async () => {
    fake.createKey({ name: 'rotating' });
    const p = provider('rotating');
    const kek = Kek.generate();
    const first = await p.wrap(kek, ctx());
    expect(fake.rotateKey('rotating')).toBe(2);
    const second = await p.wrap(kek, ctx());
    expect(first.keyId).toBe('transit/keys/rotating:v1');
    expect(second.keyId).toBe('transit/keys/rotating:v2');
    expect(Buffer.from(second.wrappedKek).toString('latin1')).toMatch(/^vault:v2:/);
    expect((await p.unwrap(first, ctx())).equals(kek)).toBe(true);
    fake.configureKey('rotating', { minDecryptionVersion: 2 });
    const err = await p.unwrap(first, ctx()).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(KeyDisabledError);
    expect((err as Error).message).toContain('idx-1');
    expect((await p.unwrap(second, ctx())).equals(kek)).toBe(true);
  });

  it('a key_id whose version disagrees with the ciphertext, another key or mount, or a malformed ciphertext: refused before any call', async () => {
    const p = provider('kek');
    const wrapped = await p.wrap(Kek.generate(), ctx());
    const text = Buffer.from(wrapped.wrappedKek).toString('latin1');
    const cases = [
      { ...wrapped, keyId: 'transit/keys/kek:v2' },
      { ...wrapped, keyId: 'transit/keys/other:v1' },
      { ...wrapped, keyId: 'elsewhere/keys/kek:v1' },
      { ...wrapped, keyId: 'kek' },
      { ...wrapped, wrappedKek: Buffer.from(text.replace('vault:v1:', 'vault:v01:')) },
      { ...wrapped, wrappedKek: Buffer.from(`${text.slice(0, -4)}====`) },
      { ...wrapped, wrappedKek: Buffer.from(`${text} `) },
      { ...wrapped, wrappedKek: Buffer.from(text.slice(0, -4)) },
    ];
    for (const tampered of cases) {
      const before = fake.calls();
      await expect(p.unwrap(tampered, ctx())).rejects.toThrow(UnwrapFailedError);
      expect(fake.calls() - before).toBe(0);
    }
  });

  it('a custom mount is recorded in key_id and used in the paths', async () => {
    const p = provider('elsewhere', { mount: 'kms/transit' });
    const kek = Kek.generate();
    const mark = fake.requests().length;
    const wrapped = await p.wrap(kek, ctx());
    expect(wrapped.keyId).toBe('kms/transit/keys/elsewhere:v1');
    expect(
      fake
        .requests()
        .slice(mark)
        .find((r) => r.operation === 'encrypt')!.path,
    ).toBe('/v1/kms/transit/encrypt/elsewhere');
    expect((await p.unwrap(wrapped, ctx())).equals(kek)).toBe(true);
    await expect(provider('elsewhere').unwrap(wrapped, ctx())).rejects.toThrow(UnwrapFailedError);
  });

  it('namespaces: X-Vault-Namespace is sent on every request and recorded as region; the root namespace has no such key', async () => {
    const p = provider('in-team', { namespace: 'team-a' });
    const kek = Kek.generate();
    const mark = fake.requests().length;
    const wrapped = await p.wrap(kek, ctx());
    expect(wrapped.region).toBe('team-a');
    expect((await p.unwrap(wrapped, ctx())).equals(kek)).toBe(true);
    const seen = fake.requests().slice(mark);
    expect(seen.length).toBeGreaterThan(2);
    expect(seen.every((r) => r.namespace === 'team-a')).toBe(true);
    await expect(provider('in-team').wrap(kek, ctx())).rejects.toThrow(KeyNotFoundError);
  });

  it('AppRole: one login, the token reused; a 403 (token revoked) logs in once more; a wrong secret_id is AccessDeniedError without the secret', async () => {
    const secretId = 'secret-id-0123456789abcdef';
    const p = provider('kek', { auth: { approle: { roleId: 'role-1', secretId: Buffer.from(secretId) } } });
    const kek = Kek.generate();
    const logins = fake.logins();
    const mark = fake.requests().length;
    const wrapped = await p.wrap(kek, ctx());
    expect((await p.unwrap(wrapped, ctx())).equals(kek)).toBe(true);
    expect(fake.logins() - logins).toBe(1);
    const seen = fake.requests().slice(mark);
    expect(seen[0]).toMatchObject({ operation: 'login', path: '/v1/auth/approle/login', token: 'missing' });
    expect(seen[0]!.fields).toEqual(['role_id', 'secret_id']);
    expect(seen.slice(1).every((r) => r.token === 'valid' || r.operation === 'seal-status')).toBe(true);

    fake.revokeIssuedTokens();
    const at = fake.requests().length;
    expect((await p.unwrap(wrapped, ctx())).equals(kek)).toBe(true);
    expect(
      fake
        .requests()
        .slice(at)
        .map((r) => [r.operation, r.status]),
    ).toEqual([
      ['decrypt', 403],
      ['login', 200],
      ['decrypt', 200],
    ]);
    expect(fake.logins() - logins).toBe(2);

    const wrong = provider('kek', {
      auth: { approle: { roleId: 'role-1', secretId: Buffer.from('not-the-secret-id-at-all') } },
    });
    const err = await wrong.wrap(kek, ctx()).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AccessDeniedError);
    expect(textOf(err)).not.toContain('not-the-secret-id-at-all');
    expect(textOf(err)).not.toContain(secretId);
  });

  it('403 / 404 / 429 / 500 / 503 and a sealed Vault become typed errors naming the index and never the token', async () => {
    const p = provider('kek');
    const wrapped = await p.wrap(Kek.generate(), ctx());
    const cases = [
      [403, AccessDeniedError, false],
      [404, KeyNotFoundError, false],
      [429, ThrottledError, true],
      [500, ProviderUnavailableError, true],
      [503, ProviderUnavailableError, true],
    ] as const;
    for (const [status, type, retryable] of cases) {
      fake.failNext(1, status, {
        retryAfter: 2,
        message: status === 403 ? `permission denied ${fake.token}` : undefined,
      });
      const err = (await p.unwrap(wrapped, ctx()).catch((e: unknown) => e)) as InstanceType<typeof type>;
      expect(err).toBeInstanceOf(type);
      expect(err.retryable).toBe(retryable);
      expect(err.message).toContain('idx-1');
      expect(textOf(err)).not.toContain(fake.token);
      if (status === 429) expect((err as ThrottledError).retryAfterMs).toBe(2000);
    }
    fake.setSealed(true);
    try {
      const err = await p.unwrap(wrapped, ctx()).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ProviderUnavailableError);
      expect((err as Error).message).toMatch(/503, sealed/);
    } finally {
      fake.setSealed(false);
    }
    const denied = createVaultTransitProvider({
      address: fake.address,
      keyName: 'kek',
      auth: { token: Buffer.from('hvs.not-a-token-the-fake-knows') },
    });
    const err = await denied.wrap(Kek.generate(), ctx()).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AccessDeniedError);
    expect(textOf(err)).not.toContain('hvs.not-a-token-the-fake-knows');
    await denied.close?.();
  });

  it('a redirect (a standby node) is not followed: the token never goes to the Location', async () => {
    let redirected = 0;
    const standby = createServer((req, res) => {
      redirected++;
      res.writeHead(307, { location: `${fake.address}${req.url}` }).end();
    });
    await new Promise<void>((resolve) => standby.listen(0, '127.0.0.1', resolve));
    try {
      const port = (standby.address() as { port: number }).port;
      const before = fake.calls();
      const p = createVaultTransitProvider({
        address: `http://127.0.0.1:${port}`,
        keyName: 'kek',
        auth: { token: Buffer.from(fake.token) },
      });
      const err = await p.wrap(Kek.generate(), ctx()).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ProviderUnavailableError);
      expect((err as Error).message).toMatch(/redirect \(307\)/);
      expect(redirected).toBe(1);
      expect(fake.calls()).toBe(before);
      await p.close?.();
    } finally {
      await new Promise<void>((resolve) => standby.close(() => resolve()));
    }
  });

  it('Vault messages are shown without long token-like runs', () => {
    expect(sanitizeVaultMessage(['permission denied for hvs.CAESIJ0123456789abcdefghij'])).toBe(
      'permission denied for …',
    );
    expect(sanitizeVaultMessage(['bad\r\ninput 841771dc-11c9-bbc7-bcac-6a3945a69cd9'])).toBe('bad input …');
    expect(sanitizeVaultMessage(undefined)).toBe('');
  });
});

describe('vault-transit through the client and registry', () => {
  let fake: FakeVaultTransit;
  beforeAll(async () => {
    fake = await startFakeVaultTransit({ keys: [{ name: 'kek' }] });
  });
  afterAll(async () => {
    await fake.stop();
  });

  it('rotate after a Vault key rotation: unwrap + wrap onto :v2 (no Transit rewrap), the old envelope still unwraps', async () => {
    const store = StorageConfig.memory();
    const client = new KmsEnvelopeClient({ store, kms: { slots: { vt: slotOf(fake, 'kek') }, secrets } });
    const kek = await client.createIndex('orders', { slot: 'vt' });
    const v1 = await client.getEnvelope('orders');
    expect(v1.provider).toBe('vault-transit');
    expect(v1.keyId).toBe('transit/keys/kek:v1');
    fake.rotateKey('kek');
    const mark = fake.requests().length;
    const rotated = await client.rotate('orders');
    expect(rotated.version).toBe(v1.version + 1);
    expect(rotated.keyId).toBe('transit/keys/kek:v2');
    expect(
      fake
        .requests()
        .slice(mark)
        .map((r) => r.operation),
    ).toEqual(['decrypt', 'encrypt']);
    expect((await client.unwrap('orders')).equals(kek)).toBe(true);
    // The v1 envelope, pushed as another index's, still unwraps under its own binding.
    const provider = await new KmsRegistry({ slots: { vt: slotOf(fake, 'kek') }, secrets }).provider('vt');
    expect(provider.rewrap).toBeUndefined();
    const from = { index: parseIndexName('orders'), slot: parseSlotName('vt'), encryptionContext: {} };
    expect(
      (
        await provider.unwrap(v1, {
          ...from,
          ...(v1.creationId ? { version: v1.version, creationId: v1.creationId } : {}),
        })
      ).equals(kek),
    ).toBe(true);
    await provider.close?.();
    await client.close();
  });

  it('rotate refuses an envelope moved onto another index, and changes nothing', async () => {
    const store = StorageConfig.memory();
    const client = new KmsEnvelopeClient({ store, kms: { slots: { vt: slotOf(fake, 'kek') }, secrets } });
    (await client.createIndex('source', { slot: 'vt' })).zero();
    const blob = await client.getEnvelope('source');
    await store.push(parseIndexName('moved'), { ...blob, indexName: 'moved' });
    await expect(client.rotate('moved')).rejects.toThrow(UnwrapFailedError);
    expect((await client.getEnvelope('moved')).version).toBe(blob.version);
    await client.close();
  });

  it('slot configuration errors name the field, never a secret', async () => {
    const bad = async (slot: Partial<KmsSlotInput> & { options?: Record<string, unknown> }) => {
      const registry = new KmsRegistry({
        slots: { vt: { ...slotOf(fake, 'kek'), ...slot } as KmsSlotInput },
        secrets,
      });
      const err = await registry.provider('vt').catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ConfigError);
      expect(textOf(err)).not.toContain(fake.token);
      return (err as Error).message;
    };
    expect(await bad({ endpoint: undefined })).toMatch(/needs "endpoint"/);
    expect(await bad({ keyId: undefined })).toMatch(/needs "key_id"/);
    expect(await bad({ keyId: '../sys' })).toMatch(/key name/);
    expect(await bad({ endpoint: 'http://vault.example.com:8200' })).toMatch(/plain http/);
    expect(await bad({ endpoint: `http://user:pw@127.0.0.1:1` })).toMatch(/credentials/);
    expect(await bad({ options: { token: `literal:${fake.token}`, namepsace: 'team-a' } })).toMatch(
      /unknown vault-transit slot option "namepsace"/,
    );
    expect(await bad({ options: { token: `literal:${fake.token}`, mount: 'a/../b' } })).toMatch(/mount/);
    expect(await bad({ options: { token: `literal:${fake.token}`, binding: 'aad' } })).toMatch(/binding/);
    expect(await bad({ options: {} })).toMatch(/exactly one of options.token/);
    expect(
      await bad({
        options: { token: `literal:${fake.token}`, approle: { roleId: 'r', secretId: 'literal:s' } },
      }),
    ).toMatch(/exactly one/);
    expect(await bad({ options: { token: `literal:${fake.token}\nX-Evil: 1` } })).toMatch(
      /characters a token cannot have/,
    );
    expect(await bad({ options: { token: 'env:KMS_ENVELOPE_TEST_UNSET_VAULT_TOKEN' } })).toMatch(/not set/);
  });
});

describe('vault-transit over HTTPS with a custom CA', () => {
  let fake: FakeVaultTransit;
  let folder: string;
  beforeAll(async () => {
    fake = await startFakeVaultTransit({ tls: true, keys: [{ name: 'kek' }] });
    folder = mkdtempSync(join(tmpdir(), 'vault-ca-'));
  });
  afterAll(async () => {
    await fake.stop();
    rmSync(folder, { recursive: true, force: true });
  });

  it('trusts the CA given as PEM or as a file, and refuses the certificate without it', async () => {
    expect(fake.address).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    const caFile = join(folder, 'ca.pem');
    writeFileSync(caFile, fake.ca!);
    for (const ca of [fake.ca!, caFile]) {
      const client = new KmsEnvelopeClient({
        store: StorageConfig.memory(),
        kms: { slots: { vt: slotOf(fake, 'kek', { ca }) }, secrets },
      });
      const kek = await client.createIndex('tls', { slot: 'vt' });
      expect((await client.unwrap('tls')).equals(kek)).toBe(true);
      await client.close();
    }
    const before = fake.calls();
    const untrusted = createVaultTransitProvider({
      address: fake.address,
      keyName: 'kek',
      auth: { token: Buffer.from(fake.token) },
    });
    const err = await untrusted.wrap(Kek.generate(), ctx()).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).message).toMatch(/certificate is not trusted \(UNABLE_TO_VERIFY_LEAF_SIGNATURE\)/);
    expect(fake.calls()).toBe(before); // the TLS handshake failed: no request reached the server
    await untrusted.close?.();
  });
});

describe('doctor on a vault-transit slot', () => {
  let fake: FakeVaultTransit;
  beforeAll(async () => {
    fake = await startFakeVaultTransit({ keys: [{ name: 'kek' }] });
  });
  afterAll(async () => {
    await fake.stop();
  });

  it('ok: config, provider, wrap (naming the key version), unwrap', async () => {
    const registry = new KmsRegistry({ slots: { vt: slotOf(fake, 'kek') }, secrets });
    const report = await diagnoseSlot(registry, 'vt', { deadlineMs: 5000 });
    expect(report.ok).toBe(true);
    expect(report.checks.map((c) => [c.name, c.ok])).toEqual([
      ['config', true],
      ['provider', true],
      ['wrap', true],
      ['unwrap', true],
    ]);
    expect(report.checks[2]!.summary).toContain('transit/keys/kek:v1');
    await registry.close();
  });

  it('a bad token: the wrap check fails with AccessDeniedError and the Vault policy to grant', async () => {
    const registry = new KmsRegistry({
      slots: { vt: { ...slotOf(fake, 'kek'), options: { token: 'literal:hvs.wrong-token-for-doctor' } } },
      secrets,
    });
    const report = await diagnoseSlot(registry, 'vt', { deadlineMs: 5000 });
    expect(report.ok).toBe(false);
    const wrap = report.checks.find((c) => c.name === 'wrap')!;
    expect(wrap.ok).toBe(false);
    expect(wrap.error).toBeInstanceOf(AccessDeniedError);
    expect(wrap.advice).toMatch(/transit\/encrypt\/<key>/);
    expect(JSON.stringify(report.checks.map(({ error: _e, ...c }) => c))).not.toContain(
      'hvs.wrong-token-for-doctor',
    );
    await registry.close();
  });

  it('a missing key: KeyNotFoundError, before any encrypt (no upsert of a new key)', async () => {
    const registry = new KmsRegistry({ slots: { vt: slotOf(fake, 'no-such-key') }, secrets });
    const mark = fake.requests().length;
    const report = await diagnoseSlot(registry, 'vt', { deadlineMs: 5000 });
    expect(report.checks.find((c) => c.name === 'wrap')!.error).toBeInstanceOf(KeyNotFoundError);
    expect(
      fake
        .requests()
        .slice(mark)
        .map((r) => r.operation),
    ).toEqual(['read-key']);
    await registry.close();
  });
});
