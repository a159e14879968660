/**
 * `gcp-kms` logic through the SDK's own seam: a real `KeyManagementServiceClient` (pointed at a
 * closed local port, never called) whose `encrypt` / `decrypt` are replaced by vitest fakes.
 * CRC32C checks both ways, the error mapping, the recorded version, the wrong-CryptoKey refusal,
 * deadlines, and the slot factory.
 */
import { KeyManagementServiceClient } from '@google-cloud/kms';
import * as grpc from '@grpc/grpc-js';
import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  createGcpKmsProvider,
  createGcpKmsProviderForSlot,
  DEFAULT_CALL_TIMEOUT_MS,
  type GcpKmsClient,
  gcpKmsClientOptions,
  mapGcpKmsError,
  plugin,
} from '../../providers/gcp-kms.js';
import { crc32c } from '../../src/envelope/checksum.js';
import {
  AccessDeniedError,
  ConfigError,
  DeadlineExceededError,
  IntegrityError,
  InvalidArgumentError,
  KeyDisabledError,
  KeyNotFoundError,
  type KmsEnvelopeError,
  ProviderUnavailableError,
  ThrottledError,
  UnwrapFailedError,
} from '../../src/errors.js';
import { Kek } from '../../src/keys/kek.js';
import { parseIndexName, parseSlotName } from '../../src/names.js';
import { parseKmsSlot } from '../../src/providers/slot.js';
import { bindingBytes } from '../../src/providers/support.js';

const KEY = 'projects/p1/locations/us-east1/keyRings/ring/cryptoKeys/kek';
const VERSION = `${KEY}/cryptoKeyVersions/3`;
const ctx = {
  index: parseIndexName('orders'),
  slot: parseSlotName('prod'),
  encryptionContext: { tenant: 't1' },
};
const where = { index: 'orders', slot: 'prod', provider: 'gcp-kms' };

/** A real SDK client that can reach nothing: every test replaces the calls it makes. */
function sdkClient() {
  return new KeyManagementServiceClient({
    apiEndpoint: '127.0.0.1',
    port: 9,
    sslCreds: grpc.credentials.createInsecure(),
    universeDomain: 'googleapis.com',
    projectId: 'p1',
  });
}

function grpcError(code: number, details: string, extra: Record<string, unknown> = {}) {
  return Object.assign(new Error(`${code} ${details}`), { code, details, ...extra });
}

const crc = (bytes: Uint8Array) => ({ value: String(crc32c(bytes)) });

function goodEncryptResponse(ciphertext = Buffer.from('opaque-ciphertext-bytes')) {
  return {
    name: VERSION,
    ciphertext,
    ciphertextCrc32c: crc(ciphertext),
    verifiedPlaintextCrc32c: true,
    verifiedAdditionalAuthenticatedDataCrc32c: true,
    protectionLevel: 'SOFTWARE',
  };
}

function setup(options: { callTimeoutMs?: number } = {}) {
  const client = sdkClient();
  const encrypt = vi.spyOn(client, 'encrypt');
  const decrypt = vi.spyOn(client, 'decrypt');
  // The real client satisfies the provider's structural client type.
  const structural: GcpKmsClient = client;
  const provider = createGcpKmsProvider({ keyName: KEY, client: structural, ...options });
  return { client, encrypt, decrypt, provider };
}

const wrappedOf = (keyId = VERSION) => ({
  wrappedKek: Buffer.from('opaque-ciphertext-bytes'),
  keyId,
  region: 'us-east1',
});

afterEach(() => {
  vi.restoreAllMocks();
  vi.unstubAllEnvs();
});

it('CRC32C is Castagnoli (the published check value)', () => {
  expect(crc32c(Buffer.from('123456789'))).toBe(0xe3069283);
});

describe('wrap (Encrypt)', () => {
  it('sends the KEK, the binding as AAD and both CRC32Cs, without gax retries; records the version', async () => {
    const { encrypt, provider } = setup();
    encrypt.mockResolvedValue([goodEncryptResponse(), undefined, undefined] as never);
    const kek = Kek.generate();
    const wrapped = await provider.wrap(kek, ctx);
    expect(wrapped).toEqual({
      wrappedKek: new Uint8Array(Buffer.from('opaque-ciphertext-bytes')),
      keyId: VERSION,
      region: 'us-east1',
    });
    expect(encrypt).toHaveBeenCalledTimes(1);
    const [request, options] = encrypt.mock.calls[0]! as unknown as [Record<string, unknown>, object];
    const aad = bindingBytes(ctx, 'gcp-kms');
    expect(request.name).toBe(KEY);
    expect(Buffer.from(request.plaintext as Uint8Array).equals(kek.expose())).toBe(true);
    expect(Buffer.from(request.additionalAuthenticatedData as Uint8Array).equals(aad)).toBe(true);
    expect(request.plaintextCrc32c).toEqual({ value: crc32c(kek.expose()) });
    expect(request.additionalAuthenticatedDataCrc32c).toEqual({ value: crc32c(aad) });
    expect(options).toEqual({ timeout: DEFAULT_CALL_TIMEOUT_MS, retry: null });
    // The caller still owns the KEK: the provider did not wipe it.
    expect(kek.expose().some((b) => b !== 0)).toBe(true);
  });

  const broken: [string, Record<string, unknown>][] = [
    ['plaintext checksum not verified', { verifiedPlaintextCrc32c: false }],
    ['AAD checksum not verified', { verifiedAdditionalAuthenticatedDataCrc32c: false }],
    ['no ciphertext checksum', { ciphertextCrc32c: null }],
    ['wrong ciphertext checksum', { ciphertextCrc32c: { value: '12345' } }],
    ['no ciphertext', { ciphertext: Buffer.alloc(0), ciphertextCrc32c: crc(Buffer.alloc(0)) }],
    ['a version of another CryptoKey', { name: `${KEY}-other/cryptoKeyVersions/1` }],
    ['no version name', { name: '' }],
  ];
  for (const [what, change] of broken) {
    it(`an answer with ${what} is an IntegrityError`, async () => {
      const { encrypt, provider } = setup();
      encrypt.mockResolvedValue([{ ...goodEncryptResponse(), ...change }, undefined, undefined] as never);
      const err = await provider.wrap(Kek.generate(), ctx).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(IntegrityError);
      expect((err as IntegrityError).retryable).toBe(true);
      expect((err as Error).message).toContain('"orders"');
    });
  }

  it('a number or Long-like ciphertext CRC32C is accepted as well as a string', async () => {
    const { encrypt, provider } = setup();
    const response = goodEncryptResponse();
    const value = crc32c(response.ciphertext);
    for (const form of [value, { toString: () => String(value) }]) {
      encrypt.mockResolvedValueOnce([{ ...response, ciphertextCrc32c: { value: form } }, undefined] as never);
      await expect(provider.wrap(Kek.generate(), ctx)).resolves.toMatchObject({ keyId: VERSION });
    }
  });
});

describe('unwrap (Decrypt)', () => {
  it('decrypts with the CryptoKey of the recorded version, sending the ciphertext and AAD CRC32Cs', async () => {
    const { decrypt, provider } = setup({ callTimeoutMs: 750 });
    const kek = Kek.generate();
    const plaintext = Buffer.from(kek.expose());
    decrypt.mockResolvedValue([
      { plaintext, plaintextCrc32c: crc(plaintext) },
      undefined,
      undefined,
    ] as never);
    const wrapped = wrappedOf();
    const unwrapped = await provider.unwrap(wrapped, ctx);
    expect(unwrapped.equals(kek)).toBe(true);
    const [request, options] = decrypt.mock.calls[0]! as unknown as [Record<string, unknown>, object];
    const aad = bindingBytes(ctx, 'gcp-kms');
    expect(request).toEqual({
      name: KEY,
      ciphertext: wrapped.wrappedKek,
      additionalAuthenticatedData: aad,
      ciphertextCrc32c: { value: crc32c(wrapped.wrappedKek) },
      additionalAuthenticatedDataCrc32c: { value: crc32c(aad) },
    });
    expect(options).toEqual({ timeout: 750, retry: null });
    // The SDK's plaintext buffer was wiped once copied into the Kek.
    expect(plaintext.every((b) => b === 0)).toBe(true);
  });

  for (const [what, plaintextCrc32c] of [
    ['a wrong', { value: '1' }],
    ['no', null],
  ] as const) {
    it(`a plaintext with ${what} CRC32C is an IntegrityError and is wiped`, async () => {
      const { decrypt, provider } = setup();
      const plaintext = Kek.generate().expose();
      const copy = Buffer.from(plaintext);
      decrypt.mockResolvedValue([{ plaintext, plaintextCrc32c }, undefined, undefined] as never);
      const err = await provider.unwrap(wrappedOf(), ctx).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(IntegrityError);
      expect(plaintext.every((b) => b === 0)).toBe(true);
      expect((err as Error).message).not.toContain(copy.toString('hex'));
      expect((err as Error).message).not.toContain(copy.toString('base64'));
    });
  }

  it('a plaintext of the wrong length (with a good CRC32C) is UnwrapFailedError, wiped', async () => {
    const { decrypt, provider } = setup();
    const plaintext = Buffer.alloc(16, 7);
    decrypt.mockResolvedValue([{ plaintext, plaintextCrc32c: crc(plaintext) }, undefined] as never);
    await expect(provider.unwrap(wrappedOf(), ctx)).rejects.toThrow(UnwrapFailedError);
    expect(plaintext.every((b) => b === 0)).toBe(true);
  });

  for (const keyId of [
    `${KEY}-other/cryptoKeyVersions/1`,
    'projects/p2/locations/us-east1/keyRings/ring/cryptoKeys/kek/cryptoKeyVersions/1',
    KEY,
    'arn:aws:kms:us-east-1:1:key/abc',
  ]) {
    it(`an envelope recorded under "${keyId}" is refused before any call`, async () => {
      const { decrypt, provider } = setup();
      await expect(provider.unwrap(wrappedOf(keyId), ctx)).rejects.toThrow(UnwrapFailedError);
      expect(decrypt).not.toHaveBeenCalled();
    });
  }
});

describe('error mapping', () => {
  const table: [
    number,
    string,
    'encrypt' | 'decrypt',
    new (...args: never[]) => KmsEnvelopeError,
    boolean,
  ][] = [
    [7, 'PERMISSION_DENIED', 'decrypt', AccessDeniedError, false],
    [16, 'UNAUTHENTICATED', 'encrypt', AccessDeniedError, false],
    [5, 'NOT_FOUND', 'decrypt', KeyNotFoundError, false],
    [9, 'FAILED_PRECONDITION', 'decrypt', KeyDisabledError, false],
    [8, 'RESOURCE_EXHAUSTED', 'decrypt', ThrottledError, true],
    [14, 'UNAVAILABLE', 'encrypt', ProviderUnavailableError, true],
    [13, 'INTERNAL', 'decrypt', ProviderUnavailableError, true],
    [4, 'DEADLINE_EXCEEDED', 'decrypt', DeadlineExceededError, true],
    [3, 'INVALID_ARGUMENT', 'decrypt', UnwrapFailedError, false],
    [3, 'INVALID_ARGUMENT', 'encrypt', InvalidArgumentError, false],
  ];
  for (const [code, status, operation, type, retryable] of table) {
    it(`${status} on ${operation} → ${type.name}, SDK error as cause`, async () => {
      const { encrypt, decrypt, provider } = setup();
      const sdkError = grpcError(code, `${status}: something about ${KEY}`);
      (operation === 'encrypt' ? encrypt : decrypt).mockRejectedValue(sdkError);
      const kek = Kek.generate();
      const err = await (operation === 'encrypt'
        ? provider.wrap(kek, ctx)
        : provider.unwrap(wrappedOf(), ctx)
      ).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(type);
      expect((err as KmsEnvelopeError).retryable).toBe(retryable);
      expect((err as Error).cause).toBe(sdkError);
      expect((err as KmsEnvelopeError).index).toBe('orders');
      expect((err as Error).message).toContain('"prod"');
      expect((err as Error).message).toContain(status);
      expect((err as Error).message).not.toContain(kek.expose().toString('hex'));
    });
  }

  it('a request checksum refused by Cloud KMS (INVALID_ARGUMENT) is an IntegrityError', () => {
    const err = mapGcpKmsError(
      grpcError(3, 'The checksum in field ciphertext_crc32c did not match the data in field ciphertext.'),
      where,
      undefined,
      'decrypt',
    );
    expect(err).toBeInstanceOf(IntegrityError);
  });

  it('a failed decryption says little: the status, not Cloud KMS’s text', () => {
    const err = mapGcpKmsError(
      grpcError(3, "Decryption failed: verify that 'name' refers to the correct CryptoKey."),
      where,
      undefined,
      'decrypt',
    );
    expect(err).toBeInstanceOf(UnwrapFailedError);
    expect(err.message).not.toContain('verify that');
  });

  it('RESOURCE_EXHAUSTED with a RetryInfo detail carries retryAfterMs', () => {
    const err = mapGcpKmsError(
      grpcError(8, 'Quota exceeded', {
        statusDetails: [{ retryDelay: { seconds: '2', nanos: 500_000_000 } }],
      }),
      where,
      undefined,
      'encrypt',
    );
    expect(err).toBeInstanceOf(ThrottledError);
    expect((err as ThrottledError).retryAfterMs).toBe(2500);
  });

  it('errors with no gRPC status: credentials → AccessDeniedError, anything else → unavailable', () => {
    expect(
      mapGcpKmsError(new Error('Could not load the default credentials.'), where, undefined, 'encrypt'),
    ).toBeInstanceOf(AccessDeniedError);
    expect(mapGcpKmsError(new Error('socket hang up'), where, undefined, 'encrypt')).toBeInstanceOf(
      ProviderUnavailableError,
    );
  });

  it('CANCELLED while our signal has aborted is DeadlineExceededError; otherwise unavailable', () => {
    const signal = AbortSignal.abort();
    expect(mapGcpKmsError(grpcError(1, 'Cancelled'), where, signal, 'decrypt')).toBeInstanceOf(
      DeadlineExceededError,
    );
    const err = mapGcpKmsError(grpcError(1, 'Cancelled'), where, new AbortController().signal, 'decrypt');
    expect(err).toBeInstanceOf(ProviderUnavailableError);
    expect(err).not.toBeInstanceOf(DeadlineExceededError);
  });
});

describe('deadlines', () => {
  it('an already aborted signal fails before any call', async () => {
    const { encrypt, decrypt, provider } = setup();
    const signal = AbortSignal.abort();
    await expect(provider.wrap(Kek.generate(), { ...ctx, signal })).rejects.toThrow(DeadlineExceededError);
    await expect(provider.unwrap(wrappedOf(), { ...ctx, signal })).rejects.toThrow(DeadlineExceededError);
    expect(encrypt).not.toHaveBeenCalled();
    expect(decrypt).not.toHaveBeenCalled();
  });

  it('an abort mid-call rejects at once, hands gRPC a cancelling interceptor, and wipes a late plaintext', async () => {
    const { decrypt, provider } = setup();
    let answer!: (value: unknown) => void;
    decrypt.mockReturnValue(new Promise((resolve) => (answer = resolve)) as never);
    const controller = new AbortController();
    const pending = provider.unwrap(wrappedOf(), { ...ctx, signal: controller.signal });
    await vi.waitFor(() => expect(decrypt).toHaveBeenCalled());
    const options = decrypt.mock.calls[0]![1] as { otherArgs?: { options?: { interceptors?: unknown[] } } };
    expect(options.otherArgs?.options?.interceptors).toHaveLength(1);
    controller.abort();
    await expect(pending).rejects.toThrow(DeadlineExceededError);
    const late = Kek.generate().expose();
    answer([{ plaintext: late, plaintextCrc32c: crc(late) }, undefined]);
    await vi.waitFor(() => expect(late.every((b) => b === 0)).toBe(true));
  });
});

describe('slots', () => {
  const slot = (input: Record<string, unknown>) =>
    parseKmsSlot('prod', { provider: 'gcp-kms', keyId: KEY, ...input } as never);

  it('rejects a missing or malformed key_id, a region that is not the key’s location, a bad timeout', async () => {
    await expect(
      plugin.create(parseKmsSlot('prod', { provider: 'gcp-kms' }), { secrets: {} }),
    ).rejects.toThrow(ConfigError);
    await expect(createGcpKmsProviderForSlot(slot({ keyId: `${KEY}/cryptoKeyVersions/1` }))).rejects.toThrow(
      /CryptoKey name/,
    );
    await expect(createGcpKmsProviderForSlot(slot({ region: 'europe-west1' }))).rejects.toThrow(/us-east1/);
    await expect(createGcpKmsProviderForSlot(slot({ options: { callTimeoutMs: 0 } }))).rejects.toThrow(
      ConfigError,
    );
    expect(() => createGcpKmsProvider({ keyName: 'kek' })).toThrow(ConfigError);
  });

  it('plaintext gRPC ("insecure") only to a loopback endpoint', async () => {
    await expect(
      gcpKmsClientOptions(slot({ endpoint: 'kms.example.com:443', options: { insecure: true } })),
    ).rejects.toThrow(/loopback/);
    await expect(gcpKmsClientOptions(slot({ options: { insecure: true } }))).rejects.toThrow(ConfigError);
    await expect(gcpKmsClientOptions(slot({ endpoint: 'not a host:port' }))).rejects.toThrow(/host:port/);
  });

  it('client options: project and universe always set, endpoint split, insecure credentials, extras merged', async () => {
    expect(await gcpKmsClientOptions(slot({}))).toEqual({
      projectId: 'p1',
      universeDomain: 'googleapis.com',
    });
    const local = await gcpKmsClientOptions(
      slot({ endpoint: '127.0.0.1:8443', options: { insecure: true, clientOptions: { fallback: false } } }),
    );
    expect(local).toMatchObject({ apiEndpoint: '127.0.0.1', port: 8443, projectId: 'p1', fallback: false });
    expect(local.sslCreds).toBeInstanceOf(grpc.ChannelCredentials);
    const ipv6 = await gcpKmsClientOptions(slot({ endpoint: '[::1]:9000', options: { insecure: true } }));
    expect(ipv6).toMatchObject({ apiEndpoint: '::1', port: 9000 });
    const tls = await gcpKmsClientOptions(
      slot({
        endpoint: 'private-kms.example.com',
        options: { credentials: { client_email: 'e', private_key: 'k' } },
      }),
    );
    expect(tls).toMatchObject({
      apiEndpoint: 'private-kms.example.com',
      port: 443,
      credentials: { client_email: 'e' },
    });
    expect(tls.sslCreds).toBeUndefined();
  });

  it('a clientFactory gets the options, is built on first use and closed by close(); a ready client is not closed', async () => {
    const made = { encrypt: vi.fn(), decrypt: vi.fn(), close: vi.fn(async () => {}) };
    const clientFactory = vi.fn((_options: Record<string, unknown>) => made);
    const provider = await createGcpKmsProviderForSlot(
      slot({ endpoint: '127.0.0.1:1234', options: { insecure: true, clientFactory } }),
    );
    expect(clientFactory).not.toHaveBeenCalled();
    made.encrypt.mockResolvedValue([goodEncryptResponse()]);
    await provider.wrap(Kek.generate(), ctx);
    expect(clientFactory).toHaveBeenCalledTimes(1);
    expect(clientFactory.mock.calls[0]![0]).toMatchObject({
      apiEndpoint: '127.0.0.1',
      port: 1234,
      projectId: 'p1',
    });
    await provider.close?.();
    expect(made.close).toHaveBeenCalledTimes(1);

    const ready = { encrypt: vi.fn(), decrypt: vi.fn(), close: vi.fn(async () => {}) };
    const withReady = await createGcpKmsProviderForSlot(slot({ options: { client: ready } }));
    await withReady.close?.();
    expect(ready.close).not.toHaveBeenCalled();
  });

  it('a failing clientFactory is a typed error and is tried again on the next call', async () => {
    let attempts = 0;
    const made = { encrypt: vi.fn(async () => [goodEncryptResponse()]), decrypt: vi.fn() };
    const provider = await createGcpKmsProviderForSlot(
      slot({
        options: {
          clientFactory: () => {
            attempts++;
            if (attempts === 1) throw new Error('Could not load the default credentials.');
            return made;
          },
        },
      }),
    );
    await expect(provider.wrap(Kek.generate(), ctx)).rejects.toThrow(AccessDeniedError);
    await expect(provider.wrap(Kek.generate(), ctx)).resolves.toMatchObject({ keyId: VERSION });
    expect(attempts).toBe(2);
  });

  it('refuses to start while GOOGLE_SDK_NODE_LOGGING would log request bodies (the plaintext KEK)', async () => {
    for (const value of ['kms', 'all', '*', 'pubsub,kms']) {
      vi.stubEnv('GOOGLE_SDK_NODE_LOGGING', value);
      expect(() => createGcpKmsProvider({ keyName: KEY, client: sdkClient() }), value).toThrow(
        /GOOGLE_SDK_NODE_LOGGING/,
      );
      await expect(createGcpKmsProviderForSlot(slot({})), value).rejects.toThrow(ConfigError);
    }
    vi.stubEnv('GOOGLE_SDK_NODE_LOGGING', 'pubsub');
    expect(() => createGcpKmsProvider({ keyName: KEY, client: sdkClient() })).not.toThrow();
  });
});
