/**
 * The KMIP client against a real PyKMIP server (mutual TLS 1.2): Create, Activate, Get, Locate,
 * Register, Get Attributes, Revoke, Destroy, Encrypt/Decrypt (AES-GCM with additional data), the
 * KMIP Result Reasons mapped to typed errors, TLS refusals, and the request builder against the
 * KMIP 1.1 Test Cases' request bytes.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { createServer as createTlsServer } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  AccessDeniedError,
  ConfigError,
  DeadlineExceededError,
  KeyNotFoundError,
  ProviderUnavailableError,
  UnwrapFailedError,
} from '../../src/errors.js';
import {
  buildRequestMessage,
  createPayload,
  KMIP_1_4,
  KmipClient,
  type KmipClientOptions,
  locatePayload,
  olderKmipVersion,
  parseGetPayload,
  parseResponseMessage,
  responseProtocolVersion,
} from '../../src/kmip/client.js';
import { KeyFormatType, ObjectType, Operation, State, Tag } from '../../src/kmip/tags.js';
import { decodeTtlv, requireOne, textString } from '../../src/kmip/ttlv.js';
import { type PyKmipHandle, startPyKmip } from '../../src/testing/pykmip.js';
import { sharedTestTls } from '../../src/testing/test-ca.js';
import { hasPyKmip, pyKmipClientOptions } from '../helpers/pykmip.js';

const vectors = JSON.parse(
  readFileSync(new URL('../vectors/kmip/messages.json', import.meta.url), 'utf8'),
) as {
  messages: {
    name: string;
    hex: string;
    build?: Record<string, unknown>;
    response?: Record<string, unknown>;
  }[];
};

describe('request builder and response parser against the KMIP 1.1 Test Cases', () => {
  const v11 = { major: 1, minor: 1 };
  for (const row of vectors.messages.filter((r) => r.build !== undefined)) {
    it(`builds: ${row.name}`, () => {
      const b = row.build!;
      const payload =
        b.operation === 'Create'
          ? createPayload({
              algorithm: b.algorithm as number,
              lengthBits: b.lengthBits as number,
              usageMask: b.usageMask as number,
            })
          : b.operation === 'Locate'
            ? locatePayload({ name: b.name as string, objectType: b.objectType as number })
            : [textString(Tag.UniqueIdentifier, b.uniqueIdentifier as string)];
      const operation = Operation[b.operation as keyof typeof Operation];
      expect(buildRequestMessage(v11, [{ operation, payload }]).toString('hex')).toBe(row.hex.toLowerCase());
    });
  }
  for (const row of vectors.messages.filter((r) => r.response !== undefined)) {
    it(`parses: ${row.name}`, () => {
      const r = row.response!;
      const failure = r.failure as { status: number; reason: number; message: string } | undefined;
      const operation = failure ? Operation.Get : Operation[r.operation as keyof typeof Operation];
      const [result] = parseResponseMessage(decodeTtlv(Buffer.from(row.hex, 'hex')), [operation]);
      if (failure) {
        expect(result!.failure).toMatchObject({
          resultStatus: failure.status,
          resultReason: failure.reason,
          resultMessage: failure.message,
        });
        return;
      }
      expect(result!.failure).toBeUndefined();
      if (r.operation === 'Get') {
        const got = parseGetPayload(result!.payload!);
        expect(got).toMatchObject({
          uniqueIdentifier: r.uniqueIdentifier,
          objectType: r.objectType,
          keyFormatType: r.keyFormatType,
          algorithm: r.algorithm,
          lengthBits: r.lengthBits,
        });
        expect(got.keyMaterial.toString('hex')).toBe(r.keyMaterial);
      } else if (r.operation === 'Locate') {
        expect(requireOne(result!.payload!, Tag.UniqueIdentifier, 'TextString').value).toBe(
          (r.uniqueIdentifiers as string[])[0],
        );
      } else {
        expect(requireOne(result!.payload!, Tag.UniqueIdentifier, 'TextString').value).toBe(
          r.uniqueIdentifier,
        );
      }
      // The spec's test cases answer in KMIP 1.1: older than anything this client asks for.
      expect(responseProtocolVersion(decodeTtlv(Buffer.from(row.hex, 'hex')))).toEqual({
        major: 1,
        minor: 1,
      });
    });
  }

  it('a success answered in an older protocol version than asked for is refused, never acted on', async () => {
    // A TLS server that answers every request with the spec's Create response (a KMIP 1.1 header).
    const created = vectors.messages.find((r) => r.name.startsWith('Create response'))!;
    const tls = await sharedTestTls();
    const server = createTlsServer({ cert: tls.certPem, key: tls.keyPem }, (socket) =>
      socket.once('data', () => socket.end(Buffer.from(created.hex, 'hex'))),
    );
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const client = new KmipClient({
      host: '127.0.0.1',
      port: (server.address() as { port: number }).port,
      ca: tls.caPem,
      cert: tls.certPem,
      key: Buffer.from(tls.keyPem),
    });
    try {
      const err = await client.createSymmetricKey().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ConfigError);
      expect((err as Error).message).toMatch(/answered in KMIP 1\.1, not the 1\.2 asked for/);
    } finally {
      await client.close();
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it('an answer in an older protocol version than asked for is older; a newer minor is not', () => {
    expect(olderKmipVersion({ major: 1, minor: 1 }, { major: 1, minor: 2 })).toBe(true);
    expect(olderKmipVersion({ major: 1, minor: 2 }, { major: 1, minor: 4 })).toBe(true);
    expect(olderKmipVersion({ major: 1, minor: 4 }, { major: 1, minor: 4 })).toBe(false);
    expect(olderKmipVersion({ major: 1, minor: 4 }, { major: 1, minor: 2 })).toBe(false);
    expect(olderKmipVersion({ major: 2, minor: 0 }, { major: 1, minor: 4 })).toBe(true);
  });
});

describe.skipIf(!hasPyKmip())('KmipClient against PyKMIP', () => {
  let server: PyKmipHandle;
  let client: KmipClient;
  const optionsFor = (over: Partial<KmipClientOptions> = {}) => pyKmipClientOptions(server, over);
  beforeAll(async () => {
    server = await startPyKmip();
    client = new KmipClient(optionsFor());
  });
  afterAll(async () => {
    await client?.close();
    await server?.stop();
  });

  it('Create, Activate, Get Attributes, Get and Locate an AES-256 key', async () => {
    const name = `kek-${randomBytes(4).toString('hex')}`;
    const id = await client.createSymmetricKey({ name });
    expect((await client.getAttributes(id, ['State'])).state).toBe(State.PreActive);
    await client.activate(id);
    const attrs = await client.getAttributes(id, ['State', 'Name', 'Object Type']);
    expect(attrs).toMatchObject({ state: State.Active, names: [name], objectType: ObjectType.SymmetricKey });
    const key = await client.get(id);
    expect(key).toMatchObject({ uniqueIdentifier: id, objectType: ObjectType.SymmetricKey, lengthBits: 256 });
    expect(key.keyFormatType).toBe(KeyFormatType.Raw);
    expect(key.keyMaterial.length).toBe(32);
    key.keyMaterial.fill(0);
    expect(await client.locate({ name })).toEqual([id]);
    expect(await client.locate({ name: `${name}-none` })).toEqual([]);
  });

  it('Register a Secret Data and Get it back', async () => {
    const secret = randomBytes(32);
    const id = await client.registerSecretData(secret, { name: 'secret-1' });
    await client.activate(id);
    const got = await client.get(id);
    expect(got.objectType).toBe(ObjectType.SecretData);
    expect(got.keyMaterial.equals(secret)).toBe(true);
  });

  it('AES-GCM Encrypt/Decrypt with additional data (KMIP 1.4); a changed AAD or tag fails to decrypt', async () => {
    const gcm = new KmipClient(optionsFor({ protocolVersion: KMIP_1_4 }));
    try {
      const id = await gcm.createSymmetricKey();
      await gcm.activate(id);
      const iv = randomBytes(12);
      const aad = Buffer.from('binding');
      const plaintext = randomBytes(32);
      const sealed = await gcm.encrypt(id, plaintext, { iv, aad });
      expect(sealed.tag?.length).toBe(16);
      expect(sealed.data.length).toBe(32);
      const opened = await gcm.decrypt(id, sealed.data, { iv, aad, tag: sealed.tag! });
      expect(opened.equals(plaintext)).toBe(true);
      await expect(
        gcm.decrypt(id, sealed.data, { iv, aad: Buffer.from('other'), tag: sealed.tag! }),
      ).rejects.toThrow(UnwrapFailedError);
      const badTag = Buffer.from(sealed.tag!);
      badTag[0]! ^= 1;
      await expect(gcm.decrypt(id, sealed.data, { iv, aad, tag: badTag })).rejects.toThrow(UnwrapFailedError);
    } finally {
      await gcm.close();
    }
  });

  it('Item Not Found → KeyNotFoundError; another identity → AccessDeniedError (PyKMIP owner policy)', async () => {
    await expect(client.get('no-such-object')).rejects.toThrow(KeyNotFoundError);
    const id = await client.createSymmetricKey();
    const other = await server.makeClientCertificate('someone-else');
    const stranger = new KmipClient(optionsFor({ cert: other.cert, key: Buffer.from(other.key) }));
    try {
      const err = await stranger.get(id).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(AccessDeniedError);
      expect((err as Error).message).toMatch(/Get/);
    } finally {
      await stranger.close();
    }
  });

  it('Revoke then Destroy; a destroyed key is gone', async () => {
    const id = await client.createSymmetricKey();
    await client.activate(id);
    await client.revoke(id);
    expect((await client.getAttributes(id, ['State'])).state).toBe(State.Deactivated);
    await client.destroy(id);
    await expect(client.get(id)).rejects.toThrow(KeyNotFoundError);
  });

  it('concurrent calls share a small pool; connections are reused (no listener build-up)', async () => {
    const ids = await Promise.all(Array.from({ length: 6 }, () => client.createSymmetricKey()));
    expect(new Set(ids).size).toBe(6);
    const warnings: Error[] = [];
    const onWarning = (w: Error) => warnings.push(w);
    process.on('warning', onWarning);
    for (let i = 0; i < 25; i++) await client.getAttributes(ids[0]!, ['State']);
    process.removeListener('warning', onWarning);
    expect(warnings.filter((w) => w.name === 'MaxListenersExceededWarning')).toEqual([]);
  });

  it('TLS: a certificate from an untrusted CA is refused (AccessDeniedError); a wrong CA here is a ConfigError', async () => {
    const foreign = await server.makeClientCertificate('intruder', { foreignCa: true });
    const intruder = new KmipClient(optionsFor({ cert: foreign.cert, key: Buffer.from(foreign.key) }));
    const refused = await intruder.get('1').catch((e: unknown) => e);
    await intruder.close();
    expect(refused).toBeInstanceOf(AccessDeniedError);

    const noEku = await server.makeClientCertificate('not-for-clients', { clientAuth: false });
    const wrongUse = new KmipClient(optionsFor({ cert: noEku.cert, key: Buffer.from(noEku.key) }));
    const denied = await wrongUse.get('1').catch((e: unknown) => e);
    await wrongUse.close();
    expect(denied).toBeInstanceOf(AccessDeniedError);

    const blind = new KmipClient(optionsFor({ ca: foreign.cert }));
    const untrusted = await blind.get('1').catch((e: unknown) => e);
    await blind.close();
    expect(untrusted).toBeInstanceOf(ConfigError);
  });

  it('a key that is not PEM is a ConfigError that does not show it', () => {
    const secret = 'not-a-key-but-a-secret-value';
    let err: unknown;
    try {
      new KmipClient(optionsFor({ key: Buffer.from(secret) }));
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect(String((err as Error).message)).not.toContain(secret);
  });

  it('a server that accepts but never answers: the deadline destroys the call (DeadlineExceededError)', async () => {
    const silent = createServer((socket) => socket.on('data', () => {}));
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', () => r()));
    const port = (silent.address() as { port: number }).port;
    const c = new KmipClient(optionsFor({ port }));
    try {
      await expect(c.get('1', { signal: AbortSignal.timeout(200) })).rejects.toThrow(DeadlineExceededError);
      const own = new KmipClient(optionsFor({ port, requestTimeoutMs: 200 }));
      await expect(own.get('1')).rejects.toThrow(DeadlineExceededError);
      await own.close();
    } finally {
      await c.close();
      silent.close();
    }
  });

  it('a refused connection is a retryable ProviderUnavailableError', async () => {
    const probe = createServer();
    await new Promise<void>((r) => probe.listen(0, '127.0.0.1', () => r()));
    const port = (probe.address() as { port: number }).port;
    await new Promise<void>((r) => probe.close(() => r()));
    const c = new KmipClient(optionsFor({ port }));
    const err = await c.get('1').catch((e: unknown) => e);
    await c.close();
    expect(err).toBeInstanceOf(ProviderUnavailableError);
    expect((err as ProviderUnavailableError).retryable).toBe(true);
  });
});
