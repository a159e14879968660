/**
 * `kmip` delegated mode checks once that the server enforces the additional data: a probe sealed
 * under one AAD must not open under another. PyKMIP enforces it, so the refusal is exercised
 * here with a real PyKMIP behind a client whose Decrypt sends the additional data the probe was
 * sealed with, whatever it is asked for: to the provider, a server that ignores the field.
 * (docs/threat-model.md, "The kmip provider".)
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createKmipProvider } from '../../providers/kmip.js';
import { ConfigError } from '../../src/errors.js';
import { Kek } from '../../src/keys/kek.js';
import { KMIP_1_4, KmipClient } from '../../src/kmip/client.js';
import { parseIndexName, parseSlotName } from '../../src/names.js';
import { type PyKmipHandle, startPyKmip } from '../../src/testing/pykmip.js';
import { hasPyKmip, pyKmipClientOptions } from '../helpers/pykmip.js';

const available = hasPyKmip();

const ctx = {
  index: parseIndexName('idx-1'),
  slot: parseSlotName('kmip-slot'),
  encryptionContext: {},
};

describe.skipIf(!available)('kmip delegated mode: the additional-data probe', () => {
  let server: PyKmipHandle;
  let client: KmipClient;
  let uid: string;
  beforeAll(async () => {
    server = await startPyKmip();
    client = new KmipClient(pyKmipClientOptions(server, { protocolVersion: KMIP_1_4 }));
    uid = await client.createSymmetricKey({});
    await client.activate(uid);
  });
  afterAll(async () => {
    await client?.close();
    await server?.stop();
  });

  it('a server that enforces the additional data passes the probe: wraps and unwraps', async () => {
    const provider = createKmipProvider({ keyId: uid, client, mode: 'delegated' });
    const kek = Kek.generate();
    const wrapped = await provider.wrap(kek, ctx);
    expect((await provider.unwrap(wrapped, ctx)).equals(kek)).toBe(true);
  });

  it('a server that ignores it is refused with ConfigError before any wrap or unwrap, and nothing is sealed', async () => {
    // Seen from the provider, a server that decrypts whatever additional data it is given.
    const ignoring = new Proxy(client, {
      get(target, property, receiver) {
        if (property === 'decrypt') {
          return (id: string, data: Uint8Array, parameters: { aad?: Uint8Array }, call?: unknown) =>
            target.decrypt(
              id,
              data,
              { ...parameters, aad: Buffer.from('kms-envelope/kmip-aad-probe/a') },
              call as never,
            );
        }
        const value = Reflect.get(target, property, receiver);
        return typeof value === 'function' ? value.bind(target) : value;
      },
    });
    const provider = createKmipProvider({ keyId: uid, client: ignoring, mode: 'delegated' });
    const before = server.requests();
    const err = await provider.wrap(Kek.generate(), ctx).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).message).toMatch(/ignores the binding, so delegated mode is refused/);
    // The probe's Encrypt and Decrypt only: no Encrypt of the KEK followed.
    expect(server.requests() - before).toBe(2);
    // A failed probe is not remembered as passed: the next call probes (and fails) again.
    const delegatedFormat = new Uint8Array(61).fill(2);
    await expect(
      provider.unwrap({ wrappedKek: delegatedFormat, keyId: uid, region: '' }, ctx),
    ).rejects.toThrow(ConfigError);
    expect(server.requests() - before).toBe(4);
  });
});
