/**
 * The fake Key Vault checked against the real SDK: the plain `@azure/keyvault-keys` clients drive
 * it over HTTPS, and the tests assert what Key Vault documents (challenge, kid forms, error
 * bodies), not what our provider happens to need.
 */
import { randomBytes } from 'node:crypto';
import { CryptographyClient, KeyClient } from '@azure/keyvault-keys';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type FakeAzureKvHandle, startFakeAzureKv } from '../../src/testing/fake-azure-kv.js';
import { makeTestTls } from '../../src/testing/test-ca.js';

let fake: FakeAzureKvHandle;
let rsaId: string;
let hsmId: string;

beforeAll(async () => {
  fake = await startFakeAzureKv({ tenantId: '11111111-2222-3333-4444-555555555555' });
  rsaId = await fake.createKey('rsa-key', 'RSA');
  hsmId = await fake.createKey('hsm-key', 'oct-HSM');
});
afterAll(async () => {
  await fake.close();
});

const keyClient = () => new KeyClient(fake.vaultUrl, fake.credential, fake.clientOptions());
const cryptoClient = (id: string) => new CryptographyClient(id, fake.credential, fake.clientOptions());
const since = (mark: number) => fake.requests().slice(mark);

describe('fake Key Vault driven by @azure/keyvault-keys', () => {
  it('answers the first request with a 401 Bearer challenge, then serves the bearer request', async () => {
    const mark = fake.requests().length;
    const tokensBefore = fake.credential.requests.length;
    const key = await keyClient().getKey('rsa-key');
    const seen = since(mark);
    expect(seen.map((r) => [r.method, r.authorized, r.status])).toEqual([
      ['GET', false, 401],
      ['GET', true, 200],
    ]);
    expect(seen[0]!.path).toBe('/keys/rsa-key/');
    expect(seen[1]!.apiVersion).toMatch(/^(7\.\d+|\d{4}-\d{2}-\d{2})(-preview)?$/);
    // The SDK asked for a token for the resource the challenge named, in the challenge's tenant.
    expect(fake.credential.requests.slice(tokensBefore)).toEqual([
      { scopes: ['https://vault.azure.net/.default'], tenantId: '11111111-2222-3333-4444-555555555555' },
    ]);
    expect(key.id).toBe(rsaId);
    expect(key.name).toBe('rsa-key');
    expect(key.keyType).toBe('RSA');
    expect(key.key?.n?.length).toBe(256);
    expect(key.key?.d).toBeUndefined();
    expect(key.properties.enabled).toBe(true);
    expect(key.keyOperations).toContain('wrapKey');
  });

  it('a versionless GET gives the latest version; a versioned GET that version', async () => {
    await fake.createKey('rotating', 'RSA');
    const first = fake.latestKeyId('rotating');
    const second = await fake.rotateKey('rotating');
    expect(second).not.toBe(first);
    const client = keyClient();
    expect((await client.getKey('rotating')).id).toBe(second);
    const version = first.split('/').pop()!;
    expect((await client.getKey('rotating', { version })).id).toBe(first);
    expect(first).toMatch(/^https:\/\/127\.0\.0\.1:\d+\/keys\/rotating\/[0-9a-f]{32}$/);
  });

  it('RSA-OAEP-256 wrap and unwrap go to the service and use real RSA-OAEP with SHA-256', async () => {
    const client = cryptoClient(rsaId);
    const secret = randomBytes(32);
    const mark = fake.requests().length;
    const wrapped = await client.wrapKey('RSA-OAEP-256', secret);
    const wrapRequest = since(mark).find((r) => r.operation === 'wrapkey');
    expect(wrapRequest).toMatchObject({ method: 'POST', authorized: true, alg: 'RSA-OAEP-256', status: 200 });
    expect(wrapRequest!.path).toBe(`/keys/rsa-key/${rsaId.split('/').pop()}/wrapkey`);
    expect(wrapped.keyID).toBe(rsaId);
    expect(wrapped.result).toHaveLength(256);
    const unwrapped = await client.unwrapKey('RSA-OAEP-256', wrapped.result);
    expect(Buffer.from(unwrapped.result).equals(secret)).toBe(true);
    expect(since(mark).filter((r) => r.operation === 'unwrapkey')).toHaveLength(1);
  });

  it('RSA-OAEP is wrapped locally by the SDK with the JWK the fake serves, and the fake unwraps it', async () => {
    const client = cryptoClient(rsaId);
    const secret = randomBytes(32);
    const mark = fake.requests().length;
    const wrapped = await client.wrapKey('RSA-OAEP', secret);
    // Local: the SDK used the public key from the GET; no wrapkey reached the service.
    expect(since(mark).some((r) => r.operation === 'wrapkey')).toBe(false);
    const unwrapped = await client.unwrapKey('RSA-OAEP', wrapped.result);
    expect(Buffer.from(unwrapped.result).equals(secret)).toBe(true);
    expect(since(mark).filter((r) => r.operation === 'unwrapkey' && r.alg === 'RSA-OAEP')).toHaveLength(1);
  });

  it('A256KW with an oct-HSM key goes to the service (no key material leaves it) and is RFC 3394', async () => {
    const key = await keyClient().getKey('hsm-key');
    expect(key.keyType).toBe('oct-HSM');
    expect(key.key?.k).toBeUndefined();
    const client = cryptoClient(hsmId);
    const secret = randomBytes(32);
    const mark = fake.requests().length;
    const wrapped = await client.wrapKey('A256KW', secret);
    expect(wrapped.result).toHaveLength(40); // 32 bytes + the 8-byte integrity block
    const unwrapped = await client.unwrapKey('A256KW', wrapped.result);
    expect(Buffer.from(unwrapped.result).equals(secret)).toBe(true);
    expect(
      since(mark)
        .filter((r) => r.operation !== 'get')
        .map((r) => [r.operation, r.alg]),
    ).toEqual([
      ['wrapkey', 'A256KW'],
      ['unwrapkey', 'A256KW'],
    ]);
    // An algorithm that does not fit the key type is BadParameter.
    await expect(client.wrapKey('RSA-OAEP-256', secret)).rejects.toMatchObject({
      statusCode: 400,
      code: 'BadParameter',
    });
  });

  it('an old version still unwraps what it wrapped after the key is rotated', async () => {
    await fake.createKey('versions', 'RSA');
    const v1 = fake.latestKeyId('versions');
    const secret = randomBytes(32);
    const wrapped = await cryptoClient(v1).wrapKey('RSA-OAEP-256', secret);
    await fake.rotateKey('versions');
    // The versioned id still unwraps; the latest version cannot.
    expect(Buffer.from((await cryptoClient(v1).unwrapKey('RSA-OAEP-256', wrapped.result)).result)).toEqual(
      secret,
    );
    await expect(
      cryptoClient(fake.keyId('versions')).unwrapKey('RSA-OAEP-256', wrapped.result),
    ).rejects.toMatchObject({ statusCode: 400, code: 'BadParameter' });
  });

  it('errors are Key Vault error bodies: KeyNotFound, KeyDisabled, tampered ciphertext', async () => {
    await expect(keyClient().getKey('no-such-key')).rejects.toMatchObject({
      statusCode: 404,
      code: 'KeyNotFound',
    });
    const wrapped = await cryptoClient(rsaId).wrapKey('RSA-OAEP-256', randomBytes(32));
    const tampered = Buffer.from(wrapped.result);
    tampered[10]! ^= 1;
    await expect(cryptoClient(rsaId).unwrapKey('RSA-OAEP-256', tampered)).rejects.toMatchObject({
      statusCode: 400,
      code: 'BadParameter',
      message: 'Unable to decrypt specified value with this key.',
    });

    fake.setEnabled('rsa-key', false);
    try {
      const disabled = await keyClient().getKey('rsa-key');
      expect(disabled.properties.enabled).toBe(false);
      const err = await cryptoClient(rsaId)
        .unwrapKey('RSA-OAEP-256', wrapped.result)
        .catch((e: unknown) => e);
      expect(err).toMatchObject({
        statusCode: 403,
        code: 'Forbidden',
        message: 'Operation unwrapKey is not allowed on a disabled key.',
        details: { error: { innerError: { code: 'KeyDisabled' } } },
      });
    } finally {
      fake.setEnabled('rsa-key', true);
    }
  });

  it('failNext injects 403 / 404 / 429 (with Retry-After) / 503 on wraps and unwraps, counted by calls()', async () => {
    const client = cryptoClient(rsaId);
    await client.wrapKey('RSA-OAEP-256', randomBytes(32)); // warm: challenge + GET done
    for (const [status, code] of [
      [403, 'Forbidden'],
      [404, 'KeyNotFound'],
      [429, 'Throttled'],
      [503, 'ServiceUnavailable'],
    ] as const) {
      const before = fake.calls();
      fake.failNext(1, status, { retryAfter: 3 });
      const err = (await client.wrapKey('RSA-OAEP-256', randomBytes(32)).catch((e: unknown) => e)) as {
        statusCode: number;
        code: string;
        response?: { headers: { get(name: string): string | undefined } };
      };
      expect(err.statusCode).toBe(status);
      expect(err.code).toBe(code);
      expect(err.response?.headers.get('retry-after')).toBe('3');
      // One call: retries are off in clientOptions().
      expect(fake.calls() - before).toBe(1);
    }
    expect((await client.wrapKey('RSA-OAEP-256', randomBytes(32))).result).toHaveLength(256);
  });

  it('a GET the caller may not do (403) makes the SDK fall back to remote-only operations', async () => {
    await fake.createKey('no-get', 'RSA');
    const id = fake.latestKeyId('no-get');
    fake.failNext(1, 403, { operations: ['get'] });
    const client = cryptoClient(fake.keyId('no-get'));
    const mark = fake.requests().length;
    // RSA-OAEP would be local with the key material; without it, the wrap goes to the service.
    const secret = randomBytes(32);
    const wrapped = await client.wrapKey('RSA-OAEP', secret);
    const seen = since(mark).filter((r) => r.authorized);
    expect(seen.map((r) => [r.operation, r.status])).toEqual([
      ['get', 403],
      ['wrapkey', 200],
    ]);
    // Versionless id, empty version in the path: the latest version did the wrap.
    expect(seen[1]!.path).toBe('/keys/no-get//wrapkey');
    expect(Buffer.from((await cryptoClient(id).unwrapKey('RSA-OAEP', wrapped.result)).result)).toEqual(
      secret,
    );
  });

  it('a client that does not trust the test CA refuses the connection', async () => {
    const other = await makeTestTls();
    const client = new KeyClient(fake.vaultUrl, fake.credential, {
      ...fake.clientOptions(),
      tlsOptions: { ca: other.caPem },
    });
    await expect(client.getKey('rsa-key')).rejects.toThrow(/certificate|self.signed|verify/i);
  });

  it('a delayed answer can be abandoned with an abort signal; close() drops it', async () => {
    const client = cryptoClient(rsaId);
    await client.wrapKey('RSA-OAEP-256', randomBytes(32));
    fake.delay(10_000);
    try {
      const started = performance.now();
      await expect(
        client.wrapKey('RSA-OAEP-256', randomBytes(32), { abortSignal: AbortSignal.timeout(200) }),
      ).rejects.toMatchObject({ name: 'AbortError' });
      expect(performance.now() - started).toBeLessThan(5000);
    } finally {
      fake.delay(0);
    }
  });
});

it('close() is idempotent and ends delayed requests', async () => {
  const own = await startFakeAzureKv();
  await own.createKey('k', 'oct-HSM');
  const client = new CryptographyClient(own.latestKeyId('k'), own.credential, own.clientOptions());
  await client.wrapKey('A256KW', randomBytes(32));
  own.delay(60_000);
  const pending = client.wrapKey('A256KW', randomBytes(32)).catch((e: unknown) => e);
  await new Promise((resolve) => setTimeout(resolve, 100));
  await own.close();
  await own.close();
  expect(await pending).toBeInstanceOf(Error);
});
