/**
 * `diagnoseSlot` on the providers of issue #16 and the break-glass `recipient`: a recipient slot
 * gets a wrap check and an unwrap check marked "not tried" (it never unwraps on the request
 * path); a failing pkcs11, kmip or vault-transit slot gets the provider's permission advice. The
 * provider tests (test/providers) check that good slots pass; here each failure's advice is
 * checked for the words an operator needs, and that no secret is in the report.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { generateRecipientKeyPair } from '../providers/recipient.js';
import { diagnoseSlot } from '../src/doctor.js';
import { AccessDeniedError, ConfigError, KeyNotFoundError } from '../src/errors.js';
import { KmipClient } from '../src/kmip/client.js';
import { KmsRegistry } from '../src/providers/registry.js';
import type { KmsSlotInput } from '../src/providers/slot.js';
import { startFakeVaultTransit } from '../src/testing/fake-vault-transit.js';
import { type PyKmipHandle, startPyKmip } from '../src/testing/pykmip.js';
import { softHsmAvailable, startSoftHsm } from '../src/testing/softhsm.js';
import { hasPyKmip, pyKmipClientOptions } from './helpers/pykmip.js';
import { serviceAvailable } from './helpers/services.js';

/** The report without its error objects, as the CLI prints it. */
const printable = (report: Awaited<ReturnType<typeof diagnoseSlot>>) =>
  JSON.stringify(report.checks.map(({ error: _error, ...check }) => check));

describe('doctor on a recipient slot', () => {
  it.each(['x25519', 'x25519-mlkem768'] as const)(
    '%s: wrap ok, unwrap not tried, report ok',
    async (kind) => {
      const pair = await generateRecipientKeyPair(kind);
      pair.privateKey.fill(0);
      const registry = new KmsRegistry({
        slots: { 'break-glass': { provider: 'recipient', options: { publicKey: pair.publicKey } } },
      });
      const report = await diagnoseSlot(registry, 'break-glass');
      expect(report.ok).toBe(true);
      expect(report.provider).toBe('recipient');
      expect(report.checks.map((c) => [c.name, c.ok])).toEqual([
        ['config', true],
        ['provider', true],
        ['wrap', true],
        ['unwrap', true],
      ]);
      expect(report.checks[2]!.summary).toContain(pair.fingerprint);
      const unwrap = report.checks[3]!;
      expect(unwrap.summary).toMatch(/^not tried: .*offline.*kms-envelope recover/);
      expect(unwrap.ms).toBeUndefined();
      await registry.close();
    },
  );

  it('a malformed public key or a master_key in the slot fails the provider check with ConfigError', async () => {
    const registry = new KmsRegistry({
      slots: {
        garbled: { provider: 'recipient', options: { publicKey: 'kmsr1-x25519:AAAA' } },
        withSecret: { provider: 'recipient', masterKey: 'env:NOPE', options: { publicKey: 'x' } },
      },
    });
    for (const name of ['garbled', 'withSecret']) {
      const report = await diagnoseSlot(registry, name);
      expect(report.ok).toBe(false);
      const failed = report.checks.find((c) => !c.ok)!;
      expect(failed.name).toBe('provider');
      expect(failed.error).toBeInstanceOf(ConfigError);
      expect(failed.advice).toMatch(/^fix the slot's configuration/);
      expect(report.checks.map((c) => c.name)).not.toContain('wrap');
    }
    await registry.close();
  });
});

describe('doctor on a vault-transit slot: a denied token gets the Vault policy', () => {
  it('names the three paths, no "create", and AppRole; the token is not in the report', async () => {
    const fake = await startFakeVaultTransit({ keys: [{ name: 'kek' }] });
    const registry = new KmsRegistry({
      slots: {
        vt: {
          provider: 'vault-transit',
          endpoint: fake.address,
          keyId: 'kek',
          options: { token: 'literal:hvs.denied-by-the-doctor-test' },
        },
      },
      secrets: { allowLiteral: true },
    });
    try {
      const report = await diagnoseSlot(registry, 'vt', { deadlineMs: 5000 });
      expect(report.ok).toBe(false);
      const wrap = report.checks.find((c) => c.name === 'wrap')!;
      expect(wrap.error).toBeInstanceOf(AccessDeniedError);
      for (const words of [
        'path "transit/encrypt/<key>" { capabilities = ["update"] }',
        'path "transit/decrypt/<key>" { capabilities = ["update"] }',
        'path "transit/keys/<key>" { capabilities = ["read"] }',
        'no "create"',
        'AppRole',
      ])
        expect(wrap.advice).toContain(words);
      expect(wrap.advice).not.toContain('rewrap');
      expect(printable(report)).not.toContain('hvs.denied-by-the-doctor-test');
    } finally {
      await registry.close();
      await fake.stop();
    }
  });
});

const hasSoftHsm = serviceAvailable(
  'SoftHSM2',
  softHsmAvailable(),
  'apt-get install softhsm2 (Debian: /usr/lib/softhsm/libsofthsm2.so and softhsm2-util), and pkcs11js',
);

describe.skipIf(!hasSoftHsm)('doctor on a pkcs11 slot (SoftHSM2)', () => {
  it('a wrong PIN: AccessDenied with the token permissions and the per-process caveat, PIN not in the report; a missing key: KeyNotFound; then the right PIN passes', async () => {
    const hsm = await startSoftHsm({ keys: ['kek-a'] });
    try {
      const pin = join(hsm.dir, 'pin');
      const wrong = join(hsm.dir, 'wrong-pin');
      writeFileSync(pin, hsm.pin, { mode: 0o600 });
      writeFileSync(wrong, '0000', { mode: 0o600 });
      const slot = (key: string, pinFile: string): KmsSlotInput => ({
        provider: 'pkcs11',
        keyId: key,
        options: { module: hsm.module, tokenLabel: hsm.tokenLabel, pin: `file:${pinFile}` },
      });
      const secrets = { allowedFilePrefixes: [hsm.dir] };
      // The wrong PIN first: a PKCS#11 login is per process and token, so once this process has
      // logged in, a slot with a wrong PIN would find the token logged in.
      const bad = new KmsRegistry({ slots: { hsm: slot('kek-a', wrong) }, secrets });
      const denied = await diagnoseSlot(bad, 'hsm');
      await bad.close();
      expect(denied.ok).toBe(false);
      const failed = denied.checks.find((c) => !c.ok)!;
      expect(failed.error).toBeInstanceOf(AccessDeniedError);
      for (const words of ['token PIN (CKU_USER login)', 'CKA_SENSITIVE true', 'a login is per process'])
        expect(failed.advice).toContain(words);
      expect(printable(denied)).not.toContain(hsm.pin);

      const good = new KmsRegistry({
        slots: { hsm: slot('kek-a', pin), missing: slot('no-such-key', pin) },
        secrets,
      });
      try {
        const missing = await diagnoseSlot(good, 'missing');
        expect(missing.ok).toBe(false);
        expect(missing.checks.find((c) => !c.ok)!.error).toBeInstanceOf(KeyNotFoundError);
        const passed = await diagnoseSlot(good, 'hsm');
        expect(passed.ok).toBe(true);
        expect(passed.checks.map((c) => c.name)).toEqual(['config', 'provider', 'wrap', 'unwrap']);
      } finally {
        await good.close();
      }
    } finally {
      await hsm.stop();
    }
  });
});

describe.skipIf(!hasPyKmip())('doctor on a kmip slot (PyKMIP)', () => {
  let server: PyKmipHandle | undefined;
  afterAll(async () => {
    await server?.stop();
  });

  it('another identity: AccessDenied with the KMIP operations and the CA advice; the owner passes', async () => {
    server = await startPyKmip();
    const admin = new KmipClient(pyKmipClientOptions(server));
    const uid = await admin.createSymmetricKey({});
    await admin.activate(uid);
    await admin.close();
    // PyKMIP: an object belongs to the identity that created it.
    const stranger = await server.makeClientCertificate('not-the-owner');
    const slot = (cert: string, key: string): KmsSlotInput => ({
      provider: 'kmip',
      keyId: uid,
      endpoint: server!.endpoint,
      options: { ca: server!.caPath, cert, key: `file:${key}` },
    });
    const registry = new KmsRegistry({
      slots: {
        owner: slot(server.clientCertPath, server.clientKeyPath),
        stranger: slot(stranger.certPath, stranger.keyPath),
      },
      secrets: { allowedFilePrefixes: [server.dir] },
    });
    try {
      const denied = await diagnoseSlot(registry, 'stranger');
      expect(denied.ok).toBe(false);
      const failed = denied.checks.find((c) => !c.ok)!;
      expect(failed.name).toBe('wrap');
      expect(failed.error).toBeInstanceOf(AccessDeniedError);
      for (const words of [
        'Get and Get Attributes (mode key',
        'Encrypt, Decrypt and Get Attributes',
        'clientAuth',
      ])
        expect(failed.advice).toContain(words);
      expect((await diagnoseSlot(registry, 'owner')).ok).toBe(true);
    } finally {
      await registry.close();
    }
  });
});
