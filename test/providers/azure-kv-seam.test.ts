/**
 * `azure-kv` logic through the SDK's own seam: a real `KeyClient` / `CryptographyClient` whose
 * pipeline sends through a scripted `httpClient` (no network). Covers the error table, the
 * versioned id that is recorded, the refusal of another key before any call, aborts, that the
 * SDK does not retry, and that no error carries the binding key.
 */
import { inspect } from 'node:util';
import { KeyClient, type KeyClientOptions } from '@azure/keyvault-keys';
import { describe, expect, it } from 'vitest';
import {
  AzureKeyVaultError,
  createAzureKvProvider,
  createAzureKvProviderForSlot,
  mapAzureError,
  parseAzureKeyId,
} from '../../providers/azure-kv.js';
import {
  AccessDeniedError,
  ConfigError,
  DeadlineExceededError,
  KeyDisabledError,
  KeyNotFoundError,
  KmsEnvelopeError,
  MissingDependencyError,
  ProviderUnavailableError,
  ThrottledError,
  UnwrapFailedError,
} from '../../src/errors.js';
import { Kek } from '../../src/keys/kek.js';
import { parseIndexName, parseSlotName } from '../../src/names.js';
import { parseKmsSlot } from '../../src/providers/slot.js';

const VAULT = 'https://seam.vault.azure.net';
const VERSION = '0123456789abcdef0123456789abcdef';
const VERSIONED = `${VAULT}/keys/kek/${VERSION}`;

interface SeenRequest {
  readonly method: string;
  readonly url: string;
  readonly body: string | undefined;
  readonly authorized: boolean;
}

interface ScriptedAnswer {
  readonly status: number;
  readonly body?: unknown;
  readonly headers?: Record<string, string>;
}

type Script = (
  request: SeenRequest,
  signal: Parameters<HttpClient['sendRequest']>[0]['abortSignal'],
) => ScriptedAnswer | Promise<ScriptedAnswer> | undefined;

/** The SDK pipeline's HTTP client seam. */
type HttpClient = NonNullable<KeyClientOptions['httpClient']>;

/** The pipeline's HttpHeaders, enough of it for the SDK. */
function headersOf(init: Record<string, string>) {
  const map = new Map(Object.entries(init).map(([k, v]) => [k.toLowerCase(), v]));
  return {
    get: (name: string) => map.get(name.toLowerCase()),
    has: (name: string) => map.has(name.toLowerCase()),
    set: (name: string, value: string | number | boolean) => void map.set(name.toLowerCase(), String(value)),
    delete: (name: string) => void map.delete(name.toLowerCase()),
    toJSON: () => Object.fromEntries(map),
    [Symbol.iterator]: () => map.entries(),
  };
}

const xor = (value: string) =>
  Buffer.from(Buffer.from(value, 'base64url').map((b) => b ^ 0x5a)).toString('base64url');

/**
 * A scripted Key Vault: 401 challenge for unauthenticated requests, 403 for the key GET (so the
 * SDK works remote-only), and wrap/unwrap as a byte XOR answering `kid`, unless `script` answers.
 */
function scriptedVault(script?: Script) {
  const requests: SeenRequest[] = [];
  const httpClient: HttpClient = {
    async sendRequest(request) {
      const seen: SeenRequest = {
        method: request.method,
        url: request.url,
        body: typeof request.body === 'string' ? request.body : undefined,
        authorized: request.headers.get('authorization') !== undefined,
      };
      requests.push(seen);
      const answer: ScriptedAnswer = !seen.authorized
        ? {
            status: 401,
            body: {
              error: { code: 'Unauthorized', message: 'AKV10000: Request is missing a Bearer or PoP token.' },
            },
            headers: {
              'www-authenticate':
                'Bearer authorization="https://login.microsoftonline.com/tenant-1", resource="https://vault.azure.net"',
            },
          }
        : ((await script?.(seen, request.abortSignal)) ?? defaultAnswer(seen));
      return {
        request,
        status: answer.status,
        headers: headersOf({ 'content-type': 'application/json', ...answer.headers }),
        bodyAsText: answer.body === undefined ? '' : JSON.stringify(answer.body),
      };
    },
  };
  return {
    requests,
    httpClient,
    operations: () => requests.filter((r) => r.authorized && r.method === 'POST'),
  };
}

function defaultAnswer(request: SeenRequest): ScriptedAnswer {
  if (request.method === 'GET') {
    return {
      status: 403,
      body: { error: { code: 'Forbidden', message: 'The user does not have keys get permission.' } },
    };
  }
  const body = JSON.parse(request.body ?? '{}') as { value: string };
  return { status: 200, body: { kid: VERSIONED, value: xor(body.value) } };
}

const credential = {
  getToken: async () => ({ token: 'seam-token', expiresOnTimestamp: Date.now() + 3_600_000 }),
};

function providerWith(script?: Script, keyId = `${VAULT}/keys/kek`) {
  const vault = scriptedVault(script);
  const provider = createAzureKvProvider({
    keyId,
    credential,
    clientOptions: { httpClient: vault.httpClient },
    allowPublicKeyWrap: true, // the scripted vault's key is RSA
  });
  return { vault, provider };
}

const ctx = (signal?: AbortSignal) => ({
  index: parseIndexName('idx-1'),
  slot: parseSlotName('kv'),
  encryptionContext: {},
  ...(signal ? { signal } : {}),
});

const errorBody = (code: string, message: string, innerCode?: string) => ({
  error: { code, message, ...(innerCode ? { innererror: { code: innerCode } } : {}) },
});

describe('azure-kv through the SDK pipeline seam', () => {
  it('records the versioned kid Key Vault answered although the slot key is versionless and the SDK could not read it', async () => {
    const { vault, provider } = providerWith();
    const kek = Kek.generate();
    const wrapped = await provider.wrap(kek, ctx());
    expect(wrapped.keyId).toBe(VERSIONED);
    expect(vault.operations().map((r) => new URL(r.url).pathname)).toEqual(['/keys/kek//wrapkey']);
    // The plain SDK in this mode reports the versionless id it was given: that is why the provider reads the answer.
    const sdkVault = scriptedVault();
    const plain = new KeyClient(VAULT, credential, { httpClient: sdkVault.httpClient }).getCryptographyClient(
      'kek',
    );
    expect((await plain.wrapKey('RSA-OAEP-256', Buffer.alloc(32, 1))).keyID).toBe(`${VAULT}/keys/kek`);
    // Unwrap goes to the recorded version.
    expect((await provider.unwrap(wrapped, ctx())).equals(kek)).toBe(true);
    expect(new URL(vault.operations()[1]!.url).pathname).toBe(`/keys/kek/${VERSION}/unwrapkey`);
  });

  it('refuses an answer whose kid is another key, or has no version', async () => {
    for (const kid of [`${VAULT}/keys/other/${VERSION}`, `${VAULT}/keys/kek`, undefined]) {
      const { provider } = providerWith((request) =>
        request.method === 'POST'
          ? { status: 200, body: { ...(kid ? { kid } : {}), value: xor(JSON.parse(request.body!).value) } }
          : undefined,
      );
      await expect(provider.wrap(Kek.generate(), ctx())).rejects.toThrow(ProviderUnavailableError);
    }
  });

  it('an envelope recorded under another vault or key name is refused before any request', async () => {
    const { vault, provider } = providerWith();
    const wrapped = await provider.wrap(Kek.generate(), ctx());
    const sent = vault.requests.length;
    for (const keyId of [
      `https://other.vault.azure.net/keys/kek/${VERSION}`,
      `${VAULT}/keys/kek2/${VERSION}`,
      'not a url',
      `${VAULT}/secrets/kek/${VERSION}`,
    ]) {
      await expect(provider.unwrap({ ...wrapped, keyId }, ctx())).rejects.toThrow(UnwrapFailedError);
    }
    // Another version of the same key is allowed (that is rotation); Key Vault decides.
    expect(vault.requests.length).toBe(sent);
    // Malformed bytes are refused before any request too.
    for (const bytes of [new Uint8Array(0), new Uint8Array([9, 0, 32]), wrapped.wrappedKek.subarray(0, 30)]) {
      await expect(provider.unwrap({ ...wrapped, wrappedKek: bytes }, ctx())).rejects.toThrow(
        UnwrapFailedError,
      );
    }
    expect(vault.requests.length).toBe(sent);
  });

  it.each([
    ['401', 401, errorBody('Unauthorized', 'AKV10022: Invalid audience.'), {}, AccessDeniedError],
    [
      '403 no permission',
      403,
      errorBody('Forbidden', 'does not have keys unwrapKey permission', 'ForbiddenByPolicy'),
      {},
      AccessDeniedError,
    ],
    [
      '403 disabled',
      403,
      errorBody('Forbidden', 'Operation unwrapKey is not allowed on a disabled key.', 'KeyDisabled'),
      {},
      KeyDisabledError,
    ],
    [
      '403 disabled, message only',
      403,
      errorBody('Forbidden', 'Operation unwrapKey is not allowed on a disabled key.'),
      {},
      KeyDisabledError,
    ],
    [
      '403 outside nbf/exp',
      403,
      errorBody('Forbidden', "Operation is not allowed outside the key's validity period."),
      {},
      KeyDisabledError,
    ],
    [
      '404',
      404,
      errorBody('KeyNotFound', 'A key with (name/id) kek was not found in this key vault.'),
      {},
      KeyNotFoundError,
    ],
    [
      '429',
      429,
      errorBody('Throttled', 'Request was not processed because too many requests were received.'),
      { 'retry-after': '4' },
      ThrottledError,
    ],
    ['500', 500, errorBody('InternalServerError', 'oops'), {}, ProviderUnavailableError],
    ['503', 503, errorBody('ServiceUnavailable', 'busy'), { 'retry-after': '1' }, ProviderUnavailableError],
    [
      '400 failed unwrap',
      400,
      errorBody('BadParameter', 'Unable to decrypt specified value with this key.'),
      {},
      UnwrapFailedError,
    ],
  ])('unwrap: %s → %s', async (_name, status, body, headers, type) => {
    let failing = false;
    const { vault, provider } = providerWith((request) =>
      failing && request.method === 'POST' ? { status, body, headers } : undefined,
    );
    const wrapped = await provider.wrap(Kek.generate(), ctx());
    failing = true;
    const before = vault.operations().length;
    const err = (await provider.unwrap(wrapped, ctx()).catch((e: unknown) => e)) as KmsEnvelopeError;
    expect(err).toBeInstanceOf(type);
    expect(err.message).toContain('"idx-1"');
    expect(err.message).toContain('"azure-kv"');
    expect(err.cause).toBeInstanceOf(AzureKeyVaultError);
    expect((err.cause as AzureKeyVaultError).statusCode).toBe(status);
    if (err instanceof ThrottledError) expect(err.retryAfterMs).toBe(4000);
    if (status === 503) expect((err as ProviderUnavailableError).retryAfterMs).toBe(1000);
    // The SDK's own retries are off: one request per call, whatever the status.
    expect(vault.operations().length - before).toBe(1);
  });

  it('a 400 on wrap (algorithm does not fit the key) is a ConfigError, not UnwrapFailedError', async () => {
    const { provider } = providerWith((request) =>
      request.method === 'POST'
        ? {
            status: 400,
            body: errorBody(
              'BadParameter',
              "Algorithm 'RSA-OAEP-256' is not supported for a key of type oct-HSM.",
            ),
          }
        : undefined,
    );
    await expect(provider.wrap(Kek.generate(), ctx())).rejects.toThrow(ConfigError);
  });

  it('no error, message or cause carries the binding key K the wrap request sent', async () => {
    const { vault, provider } = providerWith((request) =>
      request.method === 'POST' ? { status: 500, body: errorBody('InternalServerError', 'boom') } : undefined,
    );
    const err = await provider.wrap(Kek.generate(), ctx()).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ProviderUnavailableError);
    const sentK = (JSON.parse(vault.operations()[0]!.body!) as { value: string }).value;
    expect(sentK.length).toBeGreaterThanOrEqual(42);
    const rendered = [
      inspect(err, { depth: 20, showHidden: true }),
      JSON.stringify(err),
      JSON.stringify((err as Error).cause),
      String((err as Error).message),
    ].join('\n');
    expect(rendered).not.toContain(sentK);
    expect(rendered).not.toContain(Buffer.from(sentK, 'base64url').toString('base64'));
    expect(rendered).not.toContain(Buffer.from(sentK, 'base64url').toString('hex'));
  });

  it('an already aborted signal: DeadlineExceededError and no request', async () => {
    const { vault, provider } = providerWith();
    const controller = new AbortController();
    controller.abort();
    await expect(provider.wrap(Kek.generate(), ctx(controller.signal))).rejects.toThrow(
      DeadlineExceededError,
    );
    expect(vault.requests).toHaveLength(0);
  });

  it('a signal that fires while Key Vault has not answered: the SDK request is aborted, DeadlineExceededError', async () => {
    let hang = false;
    let sawSignal = false;
    const { provider } = providerWith((request, signal) => {
      if (!hang || request.method !== 'POST') return undefined;
      sawSignal = signal !== undefined;
      return new Promise<ScriptedAnswer>((_, reject) => {
        signal?.addEventListener('abort', () =>
          reject(Object.assign(new Error('The operation was aborted.'), { name: 'AbortError' })),
        );
      });
    });
    const wrapped = await provider.wrap(Kek.generate(), ctx());
    hang = true;
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 50);
    await expect(provider.unwrap(wrapped, ctx(controller.signal))).rejects.toThrow(DeadlineExceededError);
    expect(sawSignal).toBe(true);
  });

  it('a connection error is ProviderUnavailableError (retryable)', async () => {
    const { provider } = providerWith((request) => {
      if (request.method === 'POST')
        throw Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED' });
      return undefined;
    });
    const err = await provider.wrap(Kek.generate(), ctx()).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ProviderUnavailableError);
    expect((err as ProviderUnavailableError).retryable).toBe(true);
  });

  it('the SDK refusing an expired key it read (a plain Error) is KeyDisabledError; unknown errors stay non-retryable', () => {
    const where = { index: 'idx-1', slot: 'kv', provider: 'azure-kv' };
    const expired = mapAzureError(
      new Error(`Key ${VERSIONED} expired at 2020-01-01T00:00:00.000Z`),
      'wrap',
      where,
      undefined,
    );
    expect(expired).toBeInstanceOf(KeyDisabledError);
    const early = mapAzureError(
      new Error(`Key ${VERSIONED} can't be used before 2999-01-01T00:00:00.000Z`),
      'wrap',
      where,
      undefined,
    );
    expect(early).toBeInstanceOf(KeyDisabledError);
    const ops = mapAzureError(
      new Error(`Operation wrapKey is not supported on key ${VERSIONED}`),
      'wrap',
      where,
      undefined,
    );
    expect(ops).toBeInstanceOf(ConfigError);
    const unknown = mapAzureError(new TypeError('x is not a function'), 'unwrap', where, undefined);
    expect(unknown).toBeInstanceOf(KmsEnvelopeError);
    expect(unknown.retryable).toBe(false);
    // A transport timeout whose call's signal did not fire is not the deadline: unavailable.
    const timeout = Object.assign(new Error('The operation was aborted due to timeout'), {
      name: 'TimeoutError',
    });
    const timedOut = mapAzureError(timeout, 'unwrap', where, new AbortController().signal);
    expect(timedOut).toBeInstanceOf(ProviderUnavailableError);
    expect(timedOut).not.toBeInstanceOf(DeadlineExceededError);
    expect(timedOut.retryable).toBe(true);
    const fired = AbortSignal.abort();
    expect(mapAzureError(timeout, 'unwrap', where, fired)).toBeInstanceOf(DeadlineExceededError);
  });

  it('a credential that cannot get a token is AccessDeniedError (or retryable for a token-endpoint outage), never an unwrap failure', () => {
    const where = { index: 'idx-1', slot: 'kv', provider: 'azure-kv' };
    // @azure/identity's errors carry the token endpoint's status, not Key Vault's.
    const authError = (status: number) =>
      Object.assign(new Error('AADSTS700016: application not found in the directory'), {
        name: 'AuthenticationError',
        statusCode: status,
      });
    for (const operation of ['wrap', 'unwrap'] as const) {
      expect(mapAzureError(authError(400), operation, where, undefined)).toBeInstanceOf(AccessDeniedError);
      expect(mapAzureError(authError(401), operation, where, undefined)).toBeInstanceOf(AccessDeniedError);
      const outage = mapAzureError(authError(503), operation, where, undefined);
      expect(outage).toBeInstanceOf(ProviderUnavailableError);
      expect(outage.retryable).toBe(true);
      for (const name of ['CredentialUnavailableError', 'AggregateAuthenticationError']) {
        const err = Object.assign(new Error('no credential'), { name });
        expect(mapAzureError(err, operation, where, undefined)).toBeInstanceOf(AccessDeniedError);
      }
    }
  });
});

describe('azure-kv clients and configuration', () => {
  it('clientFactory is asked for the slot key, then for each recorded version, once each', async () => {
    const vault = scriptedVault();
    const asked: string[] = [];
    const keyClient = new KeyClient(VAULT, credential, { httpClient: vault.httpClient });
    const provider = createAzureKvProvider({
      keyId: `${VAULT}/keys/kek`,
      allowPublicKeyWrap: true,
      clientFactory: (keyId) => {
        asked.push(keyId);
        const { name, version } = parseAzureKeyId(keyId);
        return keyClient.getCryptographyClient(name, version ? { keyVersion: version } : {});
      },
    });
    const kek = Kek.generate();
    const wrapped = await provider.wrap(kek, ctx());
    await provider.wrap(kek, ctx());
    expect((await provider.unwrap(wrapped, ctx())).equals(kek)).toBe(true);
    expect((await provider.unwrap(wrapped, ctx())).equals(kek)).toBe(true);
    expect(asked).toEqual([`${VAULT}/keys/kek`, VERSIONED]);
  });

  it('a ready KeyClient in the slot options is used for every version', async () => {
    const vault = scriptedVault();
    const client = new KeyClient(VAULT, credential, { httpClient: vault.httpClient });
    const provider = createAzureKvProviderForSlot(
      parseKmsSlot('kv', {
        provider: 'azure-kv',
        keyId: `${VAULT}/keys/kek`,
        allowPublicKeyWrap: true,
        options: { client },
      }),
    );
    const kek = Kek.generate();
    expect((await provider.unwrap(await provider.wrap(kek, ctx()), ctx())).equals(kek)).toBe(true);
    // One pipeline: one challenge for both key ids.
    expect(vault.requests.filter((r) => !r.authorized)).toHaveLength(1);
  });

  it('without a credential or client it needs @azure/identity, and says so', async () => {
    let identityInstalled = true;
    try {
      const name = '@azure/identity';
      await import(name);
    } catch {
      identityInstalled = false;
    }
    if (identityInstalled) return; // never instantiate DefaultAzureCredential in a test
    const provider = createAzureKvProvider({ keyId: `${VAULT}/keys/kek` });
    const err = await provider.wrap(Kek.generate(), ctx()).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(MissingDependencyError);
    expect((err as MissingDependencyError).packageName).toBe('@azure/identity');
  });

  it('slot validation: key_id present and a key URL, options of the right types', () => {
    const slot = (input: Record<string, unknown>) => parseKmsSlot('kv', { provider: 'azure-kv', ...input });
    expect(() => createAzureKvProviderForSlot(slot({}))).toThrow(/needs "key_id"/);
    for (const keyId of [
      'kek',
      'https://v.vault.azure.net/secrets/x',
      'https://v.vault.azure.net/keys/',
      'ftp://v/keys/k',
    ]) {
      expect(() => createAzureKvProviderForSlot(slot({ keyId }))).toThrow(ConfigError);
    }
    const keyId = `${VAULT}/keys/kek`;
    expect(() => createAzureKvProviderForSlot(slot({ keyId, options: { algorithm: 'RSA1_5' } }))).toThrow(
      /algorithm/,
    );
    expect(() => createAzureKvProviderForSlot(slot({ keyId, options: { credential: 'secret' } }))).toThrow(
      /credential/,
    );
    expect(() => createAzureKvProviderForSlot(slot({ keyId, options: { client: {} } }))).toThrow(/client/);
    expect(() => createAzureKvProviderForSlot(slot({ keyId, options: { clientFactory: 1 } }))).toThrow(
      /clientFactory/,
    );
    const err = (() => {
      try {
        createAzureKvProviderForSlot(slot({ keyId: 'nope' }));
      } catch (e) {
        return e as ConfigError;
      }
    })();
    expect(err?.slot).toBe('kv');
    expect(parseAzureKeyId(`${VAULT.toUpperCase()}/keys/Kek/${VERSION}`)).toEqual({
      vaultUrl: VAULT,
      name: 'Kek',
      version: VERSION,
    });
  });
});
