/**
 * The fake Vault kept honest: the documented request/response examples of the Transit, AppRole
 * and sys APIs (`test/vectors/vault-transit/transit-api.json`, with their sources) replayed with
 * plain `fetch`, then what the fake adds for tests (namespaces, faults, sealing, stop).
 */
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type FakeVaultTransit, startFakeVaultTransit } from '../../src/testing/fake-vault-transit.js';

interface VectorCase {
  readonly name: string;
  readonly source: string;
  readonly request: {
    readonly method: string;
    readonly path: string;
    readonly body?: Record<string, unknown>;
    /** false: no X-Vault-Token; a string: that token (after substitution); default the root token. */
    readonly token?: false | string;
  };
  readonly response: {
    readonly status: number;
    readonly shape?: Record<string, unknown>;
    readonly equals?: Record<string, unknown>;
    readonly matches?: Record<string, string>;
  };
  readonly save?: Record<string, string>;
}

const vectors = JSON.parse(
  readFileSync(new URL('../vectors/vault-transit/transit-api.json', import.meta.url), 'utf8'),
) as { cases: VectorCase[] };

function at(value: unknown, path: string): unknown {
  return path
    .split('.')
    .reduce<unknown>((v, part) => (v as Record<string, unknown> | undefined)?.[part], value);
}

/** Checks `value` has every field of `shape` with the JSON type named ('array' for arrays). */
function expectShape(value: unknown, shape: Record<string, unknown>, where: string): void {
  for (const [field, type] of Object.entries(shape)) {
    const got = (value as Record<string, unknown> | undefined)?.[field];
    if (typeof type === 'object' && type !== null) {
      expect(typeof got, `${where}.${field}`).toBe('object');
      expectShape(got, type as Record<string, unknown>, `${where}.${field}`);
    } else if (type === 'array') {
      expect(Array.isArray(got), `${where}.${field} is an array`).toBe(true);
    } else {
      expect(typeof got, `${where}.${field}`).toBe(type);
    }
  }
}

describe('fake Vault against the documented API examples', () => {
  let fake: FakeVaultTransit;
  const saved = new Map<string, string>();
  beforeAll(async () => {
    fake = await startFakeVaultTransit({
      keys: [{ name: 'my-key' }, { name: 'derived-key', derived: true }],
      appRoles: [
        {
          roleId: '59d6d1ca-47bb-4e7e-a40b-8be3bc5a0ba8',
          secretId: '84896a0c-1347-aa90-a4f6-aca8b7558780',
          tokenTtlSeconds: 1200,
        },
      ],
    });
  });
  afterAll(async () => {
    await fake.stop();
  });

  const substitute = (text: string) =>
    text.replace(/\{\{(\w+)\}\}/g, (_, name: string) => saved.get(name) ?? '');

  it('has the cases in order (later ones use what earlier ones saved)', () => {
    expect(vectors.cases.length).toBeGreaterThan(20);
    expect(vectors.cases.every((c) => c.source.length > 0)).toBe(true);
  });

  for (const vector of vectors.cases) {
    it(vector.name, async () => {
      const headers: Record<string, string> = {};
      const token = vector.request.token;
      if (token !== false) headers['x-vault-token'] = token === undefined ? fake.token : substitute(token);
      const res = await fetch(`${fake.address}${vector.request.path}`, {
        method: vector.request.method,
        headers,
        ...(vector.request.body !== undefined
          ? { body: substitute(JSON.stringify(vector.request.body)) }
          : {}),
      });
      expect(res.status).toBe(vector.response.status);
      const text = await res.text();
      if (res.status === 204) {
        expect(text).toBe('');
        return;
      }
      expect(res.headers.get('content-type')).toMatch(/^application\/json/);
      const json: unknown = JSON.parse(text);
      // The documented error structure for every status >= 400.
      if (res.status >= 400) expect(Array.isArray((json as { errors?: unknown }).errors)).toBe(true);
      if (vector.response.shape) expectShape(json, vector.response.shape, 'response');
      for (const [path, expected] of Object.entries(vector.response.equals ?? {})) {
        expect(at(json, path), path).toEqual(expected);
      }
      for (const [path, pattern] of Object.entries(vector.response.matches ?? {})) {
        expect(String(at(json, path)), path).toMatch(new RegExp(pattern));
      }
      for (const [name, path] of Object.entries(vector.save ?? {})) saved.set(name, String(at(json, path)));
    });
  }
});

describe('fake Vault: what it adds for tests', () => {
  let fake: FakeVaultTransit;
  beforeAll(async () => {
    fake = await startFakeVaultTransit({ keys: [{ name: 'k' }, { name: 'k', namespace: 'team-a' }] });
  });
  afterAll(async () => {
    await fake.stop();
  });

  const encrypt = (namespace?: string) =>
    fetch(`${fake.address}/v1/transit/encrypt/k`, {
      method: 'POST',
      headers: { 'x-vault-token': fake.token, ...(namespace ? { 'x-vault-namespace': namespace } : {}) },
      body: JSON.stringify({ plaintext: Buffer.alloc(32, 1).toString('base64') }),
    });

  it('keys are per namespace: a ciphertext of one does not decrypt in the other', async () => {
    const ciphertext = ((await (await encrypt('team-a')).json()) as { data: { ciphertext: string } }).data
      .ciphertext;
    const decrypt = (namespace?: string) =>
      fetch(`${fake.address}/v1/transit/decrypt/k`, {
        method: 'POST',
        headers: { 'x-vault-token': fake.token, ...(namespace ? { 'x-vault-namespace': namespace } : {}) },
        body: JSON.stringify({ ciphertext }),
      });
    expect((await decrypt('team-a/')).status).toBe(200);
    expect((await decrypt()).status).toBe(400);
    expect(fake.requests().at(-2)).toMatchObject({ namespace: 'team-a', operation: 'decrypt', status: 200 });
  });

  it('records requests without plaintext or tokens', async () => {
    await encrypt();
    const record = fake.requests().at(-1)!;
    expect(record).toMatchObject({
      operation: 'encrypt',
      token: 'valid',
      fields: ['plaintext'],
      status: 200,
    });
    expect(JSON.stringify(fake.requests())).not.toContain(Buffer.alloc(32, 1).toString('base64'));
    expect(JSON.stringify(fake.requests())).not.toContain(fake.token);
  });

  it('failNext answers the next requests with the status and Retry-After, then all is normal', async () => {
    fake.failNext(2, 429, { retryAfter: 3 });
    for (let i = 0; i < 2; i++) {
      const res = await encrypt();
      expect(res.status).toBe(429);
      expect(res.headers.get('retry-after')).toBe('3');
      expect(((await res.json()) as { errors: string[] }).errors[0]).toMatch(/rate limit/);
    }
    expect((await encrypt()).status).toBe(200);
  });

  it('a sealed fake answers 503 "Vault is sealed" everywhere but sys/seal-status', async () => {
    fake.setSealed(true);
    try {
      const res = await encrypt();
      expect(res.status).toBe(503);
      expect(await res.json()).toEqual({ errors: ['Vault is sealed'] });
      const status = await fetch(`${fake.address}/v1/sys/seal-status`);
      expect(((await status.json()) as { sealed: boolean }).sealed).toBe(true);
    } finally {
      fake.setSealed(false);
    }
  });

  it('rotateKey / configureKey apply Vault’s checks', () => {
    expect(fake.rotateKey('k')).toBe(2);
    expect(() => fake.configureKey('k', { minDecryptionVersion: 3 })).toThrow(/latest key version is 2/);
    fake.configureKey('k', { minDecryptionVersion: 2 });
    expect(fake.keyInfo('k')).toMatchObject({ latestVersion: 2, minDecryptionVersion: 2 });
    fake.configureKey('k', { minDecryptionVersion: 1 });
  });

  it('stop refuses connections from then on, and is idempotent', async () => {
    const other = await startFakeVaultTransit();
    await other.stop();
    await other.stop();
    await expect(fetch(`${other.address}/v1/sys/seal-status`)).rejects.toThrow();
  });
});
