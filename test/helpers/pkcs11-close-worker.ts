/**
 * Child process of pkcs11-lifecycle.test.ts: opens two pkcs11 providers (two worker pools) on one
 * SoftHSM2 module, uses both, closes both at once, many times over. C_Finalize while a worker of
 * the other pool still closes its session is undefined behaviour (SoftHSM2 can crash the process):
 * exit 0 and "ok" means every round finalised only after both pools' workers had exited.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createPkcs11ProviderForSlot } from '../../providers/pkcs11.js';
import { Kek } from '../../src/keys/kek.js';
import { parseIndexName, parseSlotName } from '../../src/names.js';
import { parseKmsSlot } from '../../src/providers/slot.js';
import { startSoftHsm } from '../../src/testing/softhsm.js';

const rounds = Number(process.argv[2] ?? '30');
const hsm = await startSoftHsm({ keys: ['kek-a', 'kek-b'] });
const pin = join(hsm.dir, 'pin');
writeFileSync(pin, hsm.pin, { mode: 0o600 });
const ctx = { index: parseIndexName('idx'), slot: parseSlotName('hsm'), encryptionContext: {} };
try {
  for (let i = 0; i < rounds; i++) {
    const providers = await Promise.all(
      ['kek-a', 'kek-b'].map((key) =>
        createPkcs11ProviderForSlot(
          parseKmsSlot('hsm', {
            provider: 'pkcs11',
            keyId: key,
            options: { module: hsm.module, tokenLabel: hsm.tokenLabel, pin: `file:${pin}`, sessions: 3 },
          }),
          { secrets: { allowedFilePrefixes: [hsm.dir] } },
        ),
      ),
    );
    await Promise.all(
      providers.map(async (p) => {
        const kek = Kek.generate();
        const wrapped = await Promise.all([p.wrap(kek, ctx), p.wrap(kek, ctx), p.wrap(kek, ctx)]);
        for (const w of wrapped) (await p.unwrap(w, ctx)).zero();
        kek.zero();
      }),
    );
    await Promise.all(providers.map((p) => p.close?.()));
  }
  console.log('ok');
} finally {
  await hsm.stop();
}
