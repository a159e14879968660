/**
 * `kmip` end to end against a real PyKMIP server: the provider conformance suite in key mode
 * (by Unique Identifier and by `name:`) and in delegated mode (PyKMIP does AES-GCM with AAD under
 * KMIP 1.4), then the faults PyKMIP can produce honestly — a slow server (a TCP proxy that holds
 * the bytes), a revoked (Deactivated) key, another identity (permission denied), a key that does
 * not exist, a stopped server — and `diagnoseSlot`. Throttling is left out: KMIP has no
 * throttling result (the conformance suite's throttle case needs one), and a revoked key cannot
 * be re-enabled in KMIP, so the suite's "works again once enabled" case cannot run either.
 */
import { randomBytes } from 'node:crypto';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';
import { createKmipProvider, KMIP_WRAPPED_LENGTH, parseKmipEndpoint } from '../../providers/kmip.js';
import { KmsEnvelopeClient } from '../../src/client.js';
import { diagnoseSlot } from '../../src/doctor.js';
import {
  AccessDeniedError,
  ConfigError,
  DeadlineExceededError,
  KeyDisabledError,
  KeyNotFoundError,
  ProviderUnavailableError,
  UnsupportedAlgorithmError,
  UnwrapFailedError,
} from '../../src/errors.js';
import { Kek } from '../../src/keys/kek.js';
import { KMIP_1_2, KMIP_1_4, KmipClient } from '../../src/kmip/client.js';
import { parseIndexName, parseSlotName } from '../../src/names.js';
import { KmsRegistry, type KmsRegistryOptions } from '../../src/providers/registry.js';
import type { KmsSlotInput } from '../../src/providers/slot.js';
import { StorageConfig } from '../../src/storage/config.js';
import { type PyKmipHandle, startPyKmip } from '../../src/testing/pykmip.js';
import { hasPyKmip, pyKmipClientOptions } from '../helpers/pykmip.js';
import { runProviderConformance } from './conformance.js';

const available = hasPyKmip();

let shared: Promise<{ server: PyKmipHandle; admin: KmipClient }> | undefined;
function pykmip() {
  shared ??= (async () => {
    const server = await startPyKmip();
    const admin = new KmipClient(pyKmipClientOptions(server));
    return { server, admin };
  })();
  return shared;
}
afterAll(async () => {
  if (shared === undefined) return;
  const { server, admin } = await shared;
  await admin.close();
  await server.stop();
});

async function activeKey(admin: KmipClient, name?: string): Promise<string> {
  const uid = await admin.createSymmetricKey(name === undefined ? {} : { name });
  await admin.activate(uid);
  return uid;
}

const slotOf = (
  server: PyKmipHandle,
  keyId: string,
  options: Record<string, unknown> = {},
  endpoint = server.endpoint,
): KmsSlotInput => ({
  provider: 'kmip',
  keyId,
  endpoint,
  options: {
    ca: server.caPath,
    cert: server.clientCertPath,
    key: `file:${server.clientKeyPath}`,
    ...options,
  },
});

const registry = (server: PyKmipHandle, slots: Record<string, KmsSlotInput>): KmsRegistryOptions => ({
  slots,
  secrets: { allowedFilePrefixes: [server.dir] },
});

if (available) {
  for (const [label, mode, byName] of [
    ['key mode, by Unique Identifier', 'key', false],
    ['key mode, by name:', 'key', true],
    ['delegated mode (server-side AES-GCM with the binding as AAD)', 'delegated', false],
  ] as const) {
    runProviderConformance(`kmip (${label})`, async () => {
      const { server, admin } = await pykmip();
      const name = `kek-${randomBytes(4).toString('hex')}`;
      const a = await activeKey(admin, name);
      const other = await activeKey(admin, `${name}-other`);
      const ref = (uid: string, n: string) => (byName ? `name:${n}` : uid);
      return {
        kms: registry(server, {
          a: slotOf(server, ref(a, name), { mode }),
          b: slotOf(server, ref(a, name), { mode }),
        }),
        wrongKeyKms: registry(server, {
          a: slotOf(server, ref(other, `${name}-other`), { mode }),
          b: slotOf(server, ref(other, `${name}-other`), { mode }),
        }),
      };
    });
  }
}

const ctx = (index = 'idx-1', signal?: AbortSignal) => ({
  index: parseIndexName(index),
  slot: parseSlotName('kmip-slot'),
  encryptionContext: { tenant: 't1' },
  ...(signal ? { signal } : {}),
});

/** The fault cases' client: no KEK cache, fast retries, no breaker (as in the conformance suite). */
const faultClientOptions = {
  cache: false as const,
  kmsCalls: { deadlineMs: 1500, retries: 2, minBackoffMs: 5, maxBackoffMs: 20, breaker: false },
};

/** A client over a memory store with slot `a` on object `uid`, no provider key cache, fault options. */
const faultClient = (server: PyKmipHandle, uid: string, endpoint = server.endpoint) =>
  new KmsEnvelopeClient({
    store: StorageConfig.memory(),
    kms: registry(server, { a: slotOf(server, uid, { keyCacheMs: 0 }, endpoint) }),
    ...faultClientOptions,
  });

/** A TCP proxy that forwards to `port`, holding every byte while `hold` is set. */
async function holdingProxy(
  port: number,
): Promise<{ endpoint: string; hold(on: boolean): void; close(): void }> {
  let holding = false;
  const sockets: Socket[] = [];
  const server: Server = createServer((inbound) => {
    const outbound = createConnection({ host: '127.0.0.1', port });
    sockets.push(inbound, outbound);
    const relay = (from: Socket, to: Socket) =>
      from.on('data', (d) => {
        if (!holding) to.write(d);
      });
    relay(inbound, outbound);
    relay(outbound, inbound);
    inbound.on('error', () => outbound.destroy());
    outbound.on('error', () => inbound.destroy());
    inbound.on('close', () => outbound.destroy());
    outbound.on('close', () => inbound.destroy());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return {
    endpoint: `kmips://127.0.0.1:${(server.address() as { port: number }).port}`,
    hold: (on) => {
      holding = on;
    },
    close: () => {
      for (const s of sockets) s.destroy();
      server.close();
    },
  };
}

describe.skipIf(!available)('kmip faults PyKMIP can produce (key mode, no key cache)', () => {
  it('a slow server: the unwrap fails at its deadline with DeadlineExceededError', async () => {
    const { server, admin } = await pykmip();
    const uid = await activeKey(admin);
    const proxy = await holdingProxy(server.port);
    const client = faultClient(server, uid, proxy.endpoint);
    try {
      await client.createIndex('idx-1', { slot: 'a' });
      proxy.hold(true);
      const started = performance.now();
      await expect(client.unwrap('idx-1')).rejects.toThrow(DeadlineExceededError);
      expect(performance.now() - started).toBeLessThan(4000);
    } finally {
      await client.close();
      proxy.close();
    }
  });

  it('a revoked (Deactivated) or never activated key fails with KeyDisabledError after one request, not retried', async () => {
    const { server, admin } = await pykmip();
    const uid = await activeKey(admin);
    const client = faultClient(server, uid);
    try {
      const kek = await client.createIndex('idx-1', { slot: 'a' });
      expect((await client.unwrap('idx-1')).equals(kek)).toBe(true);
      await admin.revoke(uid);
      const before = server.requests();
      const err = await client.unwrap('idx-1').catch((e: unknown) => e);
      expect(err).toBeInstanceOf(KeyDisabledError);
      expect((err as KeyDisabledError).retryable).toBe(false);
      expect((err as Error).message).toContain('idx-1');
      expect((err as Error).message).toContain('Deactivated');
      expect(server.requests() - before).toBe(1);
    } finally {
      await client.close();
    }
    const preActive = await admin.createSymmetricKey();
    const p = createKmipProvider({ keyId: preActive, client: admin, keyCacheMs: 0 });
    await expect(p.wrap(Kek.generate(), ctx())).rejects.toThrow(/not Active \(State PreActive\)/);
  });

  it('another identity (PyKMIP: objects belong to their creator) fails with AccessDeniedError after one request', async () => {
    const { server, admin } = await pykmip();
    const uid = await activeKey(admin);
    const other = await server.makeClientCertificate('not-the-owner');
    const store = StorageConfig.memory();
    const owner = new KmsEnvelopeClient({
      store,
      kms: registry(server, { a: slotOf(server, uid) }),
      ...faultClientOptions,
    });
    await owner.createIndex('idx-1', { slot: 'a' });
    await owner.close();
    const stranger = new KmsEnvelopeClient({
      store,
      kms: registry(server, {
        a: {
          ...slotOf(server, uid),
          options: { ca: server.caPath, cert: other.certPath, key: `file:${other.keyPath}` },
        },
      }),
      ...faultClientOptions,
    });
    try {
      const before = server.requests();
      const err = await stranger.unwrap('idx-1').catch((e: unknown) => e);
      expect(err).toBeInstanceOf(AccessDeniedError);
      expect(server.requests() - before).toBe(1);
    } finally {
      await stranger.close();
    }
  });

  it('a key that does not exist (destroyed) fails with KeyNotFoundError after one request', async () => {
    const { server, admin } = await pykmip();
    const uid = await activeKey(admin);
    const client = faultClient(server, uid);
    try {
      await client.createIndex('idx-1', { slot: 'a' });
      await admin.revoke(uid);
      await admin.destroy(uid);
      const before = server.requests();
      await expect(client.unwrap('idx-1')).rejects.toThrow(KeyNotFoundError);
      expect(server.requests() - before).toBe(1);
      await expect(
        new KmsEnvelopeClient({
          store: StorageConfig.memory(),
          kms: registry(server, { a: slotOf(server, 'name:no-such-name') }),
        }).createIndex('idx-2', { slot: 'a' }),
      ).rejects.toThrow(KeyNotFoundError);
    } finally {
      await client.close();
    }
  });

  it('a stopped server: a retryable ProviderUnavailableError', async () => {
    const server = await startPyKmip();
    const admin = new KmipClient(pyKmipClientOptions(server));
    const uid = await activeKey(admin);
    await admin.close();
    const client = faultClient(server, uid);
    try {
      await client.createIndex('idx-1', { slot: 'a' });
      await server.kill();
      const err = await client.unwrap('idx-1').catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ProviderUnavailableError);
      expect((err as ProviderUnavailableError).retryable).toBe(true);
      expect((err as Error).message).toContain('idx-1');
    } finally {
      await client.close();
      await server.stop();
    }
  });
});

describe.skipIf(!available)('kmip provider details', () => {
  it('key mode: the wrapping key is cached (one Get for many wraps), wiped on close; a Secret Data works too', async () => {
    const { server, admin } = await pykmip();
    const uid = await activeKey(admin);
    const p = createKmipProvider({ keyId: uid, client: admin });
    const before = server.requests();
    const kek = Kek.generate();
    const w1 = await p.wrap(kek, ctx());
    const w2 = await p.wrap(kek, ctx('idx-2'));
    expect(server.requests() - before).toBe(1);
    expect(w1.wrappedKek.length).toBe(KMIP_WRAPPED_LENGTH);
    expect(w1.wrappedKek[0]).toBe(1);
    expect((await p.unwrap(w2, ctx('idx-2'))).equals(kek)).toBe(true);
    await expect(p.unwrap(w2, ctx('idx-1'))).rejects.toThrow(UnwrapFailedError);

    const secret = await admin.registerSecretData(randomBytes(32), { name: 'wrapping-secret' });
    await admin.activate(secret);
    const s = createKmipProvider({ keyId: 'name:wrapping-secret', client: admin });
    const ws = await s.wrap(kek, ctx());
    expect(ws.keyId).toBe(secret);
    expect((await s.unwrap(ws, ctx())).equals(kek)).toBe(true);
    // A name: slot refuses an envelope that names an object without its Name.
    await expect(s.unwrap({ ...ws, keyId: uid }, ctx())).rejects.toThrow(/is not named "wrapping-secret"/);
    // A uid slot refuses an envelope naming another object before any call.
    const mark = server.requests();
    await expect(p.unwrap({ ...w1, keyId: secret }, ctx())).rejects.toThrow(UnwrapFailedError);
    expect(server.requests()).toBe(mark);
  });

  it('key mode: concurrent cold wraps all unwrap; a closed provider refuses to wrap (never under a wiped key)', async () => {
    const { admin } = await pykmip();
    const uid = await activeKey(admin);
    const p = createKmipProvider({ keyId: uid, client: admin });
    const kek = Kek.generate();
    const wrapped = await Promise.all(Array.from({ length: 5 }, (_, i) => p.wrap(kek, ctx(`idx-${i}`))));
    for (const [i, w] of wrapped.entries())
      expect((await p.unwrap(w, ctx(`idx-${i}`))).equals(kek)).toBe(true);
    await p.close?.();
    await expect(p.wrap(kek, ctx())).rejects.toThrow(/closed/);
  });

  it('a key that is not AES-256 is a ConfigError; delegated mode over KMIP 1.2 is refused as unsupported', async () => {
    const { server, admin } = await pykmip();
    const small = await admin.createSymmetricKey({ lengthBits: 128 });
    await admin.activate(small);
    await expect(
      createKmipProvider({ keyId: small, client: admin }).wrap(Kek.generate(), ctx()),
    ).rejects.toThrow(ConfigError);
    // KMIP 1.2 has no additional-data field: PyKMIP cannot read the request, and the provider says
    // delegated mode needs KMIP 1.4 authenticated encryption.
    const uid = await activeKey(admin);
    const old = new KmipClient(pyKmipClientOptions(server, { protocolVersion: KMIP_1_2 }));
    try {
      const err = await createKmipProvider({ keyId: uid, client: old, mode: 'delegated' })
        .wrap(Kek.generate(), ctx())
        .catch((e: unknown) => e);
      expect(err).toBeInstanceOf(UnsupportedAlgorithmError);
      expect((err as Error).message).toMatch(/mode "key"/);
    } finally {
      await old.close();
    }
    const modern = new KmipClient(pyKmipClientOptions(server, { protocolVersion: KMIP_1_4 }));
    try {
      const d = createKmipProvider({ keyId: uid, client: modern, mode: 'delegated' });
      const kek = Kek.generate();
      const wrapped = await d.wrap(kek, ctx());
      expect(wrapped.wrappedKek[0]).toBe(2);
      expect((await d.unwrap(wrapped, ctx())).equals(kek)).toBe(true);
      // A key-mode provider refuses a delegated envelope (format byte) and vice versa.
      await expect(createKmipProvider({ keyId: uid, client: admin }).unwrap(wrapped, ctx())).rejects.toThrow(
        UnwrapFailedError,
      );
    } finally {
      await modern.close();
    }
  });

  it('slot validation names the field, never the key', async () => {
    const { server } = await pykmip();
    const reg = new KmsRegistry(
      registry(server, {
        noKey: {
          provider: 'kmip',
          keyId: '1',
          endpoint: server.endpoint,
          options: { cert: server.clientCertPath },
        },
        noEndpoint: slotOf(server, '1', {}, ''),
        badMode: slotOf(server, '1', { mode: 'cbc' }),
        badCert: slotOf(server, '1', { cert: 'relative/path.pem' }),
      }),
    );
    await expect(reg.provider('noKey')).rejects.toThrow(/option "key"/);
    await expect(reg.provider('noEndpoint')).rejects.toThrow(/endpoint/);
    await expect(reg.provider('badMode')).rejects.toThrow(/mode/);
    await expect(reg.provider('badCert')).rejects.toThrow(/"cert"/);
    expect(parseKmipEndpoint('kmips://kms.example:15696')).toEqual({ host: 'kms.example', port: 15696 });
    expect(parseKmipEndpoint('kms.example')).toEqual({ host: 'kms.example', port: 5696 });
    expect(() => parseKmipEndpoint('https://kms.example/x')).toThrow(ConfigError);
  });

  it('doctor: ok for a good slot; a client certificate from another CA is access denied, with the permissions line', async () => {
    const { server, admin } = await pykmip();
    const uid = await activeKey(admin);
    const foreign = await server.makeClientCertificate('intruder', { foreignCa: true });
    const reg = new KmsRegistry(
      registry(server, {
        good: slotOf(server, uid),
        delegated: slotOf(server, uid, { mode: 'delegated' }),
        wrongCert: {
          ...slotOf(server, uid),
          options: { ca: server.caPath, cert: foreign.certPath, key: `file:${foreign.keyPath}` },
        },
      }),
    );
    const good = await diagnoseSlot(reg, 'good');
    expect(good.ok).toBe(true);
    expect(good.checks.map((c) => c.name)).toEqual(['config', 'provider', 'wrap', 'unwrap']);
    expect((await diagnoseSlot(reg, 'delegated')).ok).toBe(true);
    const bad = await diagnoseSlot(reg, 'wrongCert');
    expect(bad.ok).toBe(false);
    const wrap = bad.checks.find((c) => c.name === 'wrap')!;
    expect(wrap.error).toBeInstanceOf(AccessDeniedError);
    expect(wrap.summary).toMatch(/refused the client certificate/);
    expect(wrap.advice).toMatch(/credentials were refused/);
    await reg.close();
  });
});
