/**
 * `pkcs11` provider lifecycle, in a process of its own (a test file is one): `close()` calls
 * `C_Finalize` when this process's pools initialised the module and the closing pool is the last
 * one using it, and a module that someone else initialised is left initialised; pools that start
 * and close together (a child process, 30 rounds) neither crash nor fail.
 */
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { createPkcs11ProviderForSlot } from '../../providers/pkcs11.js';
import { ProviderUnavailableError } from '../../src/errors.js';
import { Kek } from '../../src/keys/kek.js';
import { parseIndexName, parseSlotName } from '../../src/names.js';
import { parseKmsSlot } from '../../src/providers/slot.js';
import { type SoftHsmHandle, softHsmAvailable, startSoftHsm } from '../../src/testing/softhsm.js';
import { serviceAvailable } from '../helpers/services.js';

const hasSoftHsm = serviceAvailable('SoftHSM2', softHsmAvailable(), 'apt-get install softhsm2, and pkcs11js');

interface Module {
  load(path: string): void;
  C_Initialize(options?: object): void;
  C_Finalize(): void;
  close(): void;
}
const CKR_CRYPTOKI_ALREADY_INITIALIZED = 0x191;

/** Whether the module is initialised in this process now (probing leaves it as it was). */
function initialised(hsm: SoftHsmHandle): boolean {
  const pkcs11 = createRequire(import.meta.url)('pkcs11js') as { PKCS11: new () => Module };
  const lib = new pkcs11.PKCS11();
  lib.load(hsm.module);
  try {
    lib.C_Initialize({ flags: 2 });
    lib.C_Finalize();
    return false;
  } catch (err) {
    if ((err as { code?: number }).code === CKR_CRYPTOKI_ALREADY_INITIALIZED) return true;
    throw err;
  } finally {
    lib.close();
  }
}

const ctx = {
  index: parseIndexName('idx-1'),
  slot: parseSlotName('hsm'),
  encryptionContext: {},
};

describe.skipIf(!hasSoftHsm)('pkcs11 provider lifecycle', () => {
  it('close() finalises the module only after the last provider of the process closes', async () => {
    const hsm = await startSoftHsm({ keys: ['kek-a'] });
    try {
      const pin = join(hsm.dir, 'pin');
      writeFileSync(pin, hsm.pin, { mode: 0o600 });
      const make = () =>
        createPkcs11ProviderForSlot(
          parseKmsSlot('hsm', {
            provider: 'pkcs11',
            keyId: 'kek-a',
            options: { module: hsm.module, tokenLabel: hsm.tokenLabel, pin: `file:${pin}` },
          }),
          { secrets: { allowedFilePrefixes: [hsm.dir] } },
        );
      expect(initialised(hsm)).toBe(false);
      const first = await make();
      const second = await make();
      const kek = Kek.generate();
      const wrapped = await first.wrap(kek, ctx);
      expect(initialised(hsm)).toBe(true);
      // The second has its own worker (and handle on the module) before the first closes: a
      // module no thread has loaded any more is unloaded (dlclose), which ends its state too.
      expect((await second.unwrap(wrapped, ctx)).equals(kek)).toBe(true);
      await first.close?.();
      // The other provider still uses the module: not finalised, and it keeps working.
      expect(initialised(hsm)).toBe(true);
      expect((await second.unwrap(wrapped, ctx)).equals(kek)).toBe(true);
      await second.close?.();
      expect(initialised(hsm)).toBe(false);
      await expect(first.wrap(Kek.generate(), ctx)).rejects.toThrow(ProviderUnavailableError);
    } finally {
      await hsm.stop();
    }
  });

  it('a module the application initialised itself is left initialised by close()', async () => {
    const hsm = await startSoftHsm({ keys: ['kek-a'] });
    const pkcs11 = createRequire(import.meta.url)('pkcs11js') as { PKCS11: new () => Module };
    const app = new pkcs11.PKCS11();
    app.load(hsm.module);
    app.C_Initialize({ flags: 2 });
    try {
      const pin = join(hsm.dir, 'pin');
      writeFileSync(pin, hsm.pin, { mode: 0o600 });
      const p = await createPkcs11ProviderForSlot(
        parseKmsSlot('hsm', {
          provider: 'pkcs11',
          keyId: 'kek-a',
          options: { module: hsm.module, tokenLabel: hsm.tokenLabel, pin: `file:${pin}` },
        }),
        { secrets: { allowedFilePrefixes: [hsm.dir] } },
      );
      const kek = Kek.generate();
      expect((await p.unwrap(await p.wrap(kek, ctx), ctx)).equals(kek)).toBe(true);
      await p.close?.();
      expect(initialised(hsm)).toBe(true);
    } finally {
      app.C_Finalize();
      app.close();
      await hsm.stop();
    }
  });

  it('two pools started, used and closed together, 30 times in one process: no crash, no error, and a script ends after close()', () => {
    // Workers starting together used to call C_Initialize / C_GetTokenInfo at once (SoftHSM2
    // answered CKR_GENERAL_ERROR or crashed the process within a few rounds), and close() of an
    // idle pool did not keep the process alive until its workers exited (a script's last
    // `await provider.close()` never returned).
    const run = spawnSync(
      process.execPath,
      ['--import', 'tsx', join(import.meta.dirname, '../helpers/pkcs11-close-worker.ts'), '30'],
      { encoding: 'utf8', timeout: 120_000 },
    );
    expect(run.signal, run.stderr).toBeNull();
    expect(run.status, run.stderr).toBe(0);
    expect(run.stdout.trim()).toBe('ok');
  });
});
