/**
 * The `pkcs11` README section (docs/providers/pkcs11.md): its YAML parses into the slots it
 * describes, and its code example runs as written (imports made relative), through the registry's
 * built-in `pkcs11` id.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { KmsEnvelopeClient } from '../../src/client.js';
import { parseSlotsConfig } from '../../src/providers/slot.js';
import { StorageConfig } from '../../src/storage/config.js';
import { softHsmAvailable, startSoftHsm } from '../../src/testing/softhsm.js';
import { serviceAvailable } from '../helpers/services.js';

const doc = readFileSync(new URL('../../docs/providers/pkcs11.md', import.meta.url), 'utf8');

describe('the pkcs11 README section', () => {
  it('its YAML parses into the slots it names', () => {
    const yaml = /```yaml\n([\s\S]*?)```/.exec(doc)?.[1];
    expect(yaml).toBeDefined();
    const slots = parseSlotsConfig(yaml!, {});
    expect(slots.map((s) => [s.name, s.provider, s.keyId])).toEqual([
      ['prod-hsm', 'pkcs11', 'orders-kek'],
      ['cloudhsm', 'pkcs11', 'orders-kek'],
    ]);
    expect(slots[0]?.options).toMatchObject({
      tokenLabel: 'prod-token',
      pin: 'file:/run/secrets/hsm-pin',
      sessions: 4,
    });
    expect(slots[1]?.options).toMatchObject({ slotId: 1, mechanism: 'wrap-pad' });
  });

  const hasSoftHsm = serviceAvailable(
    'SoftHSM2',
    softHsmAvailable(),
    'apt-get install softhsm2, and pkcs11js',
  );
  it.skipIf(!hasSoftHsm)('its code example runs (against SoftHSM2)', async () => {
    const hsm = await startSoftHsm({ keys: ['orders-kek'] });
    const pinFile = join(hsm.dir, 'pin');
    writeFileSync(pinFile, hsm.pin, { mode: 0o600 });
    const client = new KmsEnvelopeClient({
      store: StorageConfig.memory(),
      kms: {
        slots: {
          'prod-hsm': {
            provider: 'pkcs11',
            keyId: 'orders-kek',
            options: { module: hsm.module, tokenLabel: hsm.tokenLabel, pin: `file:${pinFile}` },
          },
        },
        secrets: { allowedFilePrefixes: [hsm.dir] },
      },
    });
    const kek = await client.createIndex('orders', { slot: 'prod-hsm' });
    expect((await client.getEnvelope('orders')).keyId).toBe(
      'pkcs11:token=kms-envelope-test;object=orders-kek',
    );
    expect((await client.unwrap('orders')).equals(kek)).toBe(true);
    await client.close();
    await hsm.stop();
  });
});
