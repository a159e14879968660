/**
 * `kms-envelope doctor <slot>`: the CLI run as a child process, against the `local` provider and
 * against the AWS fake (the real SDK in the child, talking HTTP to 127.0.0.1).
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ExitCode } from '../../src/cli/exit-codes.js';
import { diagnoseSlot } from '../../src/doctor.js';
import { Kek } from '../../src/keys/kek.js';
import { KmsRegistry } from '../../src/providers/registry.js';
import { type FakeAws, startFakeAws } from '../../src/testing/fake-aws.js';
import { startFakeAzureKv } from '../../src/testing/fake-azure-kv.js';
import { startFakeGcpKms } from '../../src/testing/fake-gcp-kms.js';

const GCP_KEY = 'projects/p1/locations/europe-west1/keyRings/ring/cryptoKeys/doctor';

import { cli } from './in-process.js';

const awsEnv = {
  AWS_ACCESS_KEY_ID: 'test',
  AWS_SECRET_ACCESS_KEY: 'test',
  AWS_EC2_METADATA_DISABLED: 'true',
  AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
};

describe('kms-envelope doctor', () => {
  const env = { DEV_MASTER: randomBytes(32).toString('base64') };
  const local = ['--provider', 'local', '--slot', 'dev', '--master-key', 'env:DEV_MASTER'];

  it('passes a good local slot: config, provider, wrap and unwrap of a throwaway key', async () => {
    const out = await cli([...local, 'doctor', 'dev'], env);
    expect(out.code).toBe(0);
    expect(out.stdout).toMatch(/ok {4}config: slot "dev": provider local/);
    expect(out.stdout).toMatch(/ok {4}wrap: /);
    expect(out.stdout).toMatch(/ok {4}unwrap: it unwrapped to the same KEK/);
    expect(out.stdout).toContain('all checks passed');
  });

  it('says in plain words what is missing, with the exit code of the error class', async () => {
    const noKey = await cli(['--provider', 'local', 'doctor']);
    expect(noKey.code).toBe(ExitCode.config);
    expect(noKey.stdout).toMatch(/FAIL {2}provider: .*needs "master_key"/);
    expect(noKey.stdout).toContain('what to do: fix the slot');
    const unknown = await cli([...local, 'doctor', 'prod', '--json'], env);
    expect(unknown.code).toBe(ExitCode.config);
    const report = JSON.parse(unknown.stdout) as { ok: boolean; checks: { name: string; code?: string }[] };
    expect(report.ok).toBe(false);
    expect(report.checks[0]).toMatchObject({ name: 'config', ok: false, code: 'KMS_ENVELOPE_CONFIG' });
    expect((await cli(['doctor'])).code).toBe(ExitCode.usage);
  });

  it('a provider that ignores the deadline: the check fails at the deadline and the late KEK is zeroed', async () => {
    let late: Kek | undefined;
    const registry = new KmsRegistry({
      slots: { deaf: { provider: 'deaf' } },
      providers: {
        deaf: () => ({
          id: 'deaf',
          wrap: async () => ({ wrappedKek: new Uint8Array([1]), keyId: 'k', region: '' }),
          unwrap: () =>
            new Promise<Kek>((resolve) =>
              setTimeout(() => {
                late = Kek.generate();
                resolve(late);
              }, 150),
            ),
        }),
      },
    });
    const report = await diagnoseSlot(registry, 'deaf', { deadlineMs: 30 });
    expect(report.checks.at(-1)).toMatchObject({ name: 'unwrap', ok: false });
    await new Promise((r) => setTimeout(r, 250));
    expect(late?.isZeroed).toBe(true);
    await registry.close();
  });

  it('diagnoses Cloud KMS and Key Vault slots too (library call, against their fakes)', async () => {
    const gcp = await startFakeGcpKms({ cryptoKeys: [GCP_KEY] });
    const azure = await startFakeAzureKv();
    await azure.createKey('kek', 'RSA');
    const registry = new KmsRegistry({
      slots: {
        gcp: { provider: 'gcp-kms', keyId: GCP_KEY, endpoint: gcp.endpoint, options: { insecure: true } },
        azure: {
          provider: 'azure-kv',
          allowPublicKeyWrap: true,
          keyId: azure.keyId('kek'),
          options: { credential: azure.credential, clientOptions: azure.clientOptions() },
        },
        'azure-missing': {
          provider: 'azure-kv',
          allowPublicKeyWrap: true,
          keyId: `${azure.vaultUrl}/keys/nope`,
          options: { credential: azure.credential, clientOptions: azure.clientOptions() },
        },
      },
    });
    try {
      for (const slot of ['gcp', 'azure']) {
        const report = await diagnoseSlot(registry, slot);
        expect(report.ok, JSON.stringify(report.checks)).toBe(true);
        expect(report.checks.map((c) => c.name)).toEqual(['config', 'provider', 'wrap', 'unwrap']);
      }
      gcp.setVersionState(GCP_KEY, 'DISABLED');
      const disabled = await diagnoseSlot(registry, 'gcp');
      expect(disabled.checks.at(-1)?.advice).toContain('enable it');
      const missing = await diagnoseSlot(registry, 'azure-missing');
      expect(missing.checks.at(-1)?.error?.code).toBe('KMS_ENVELOPE_KEY_NOT_FOUND');
    } finally {
      await registry.close();
      await gcp.close();
      await azure.close();
    }
  });

  describe('against AWS KMS (the fake, over HTTP)', () => {
    let aws: FakeAws;
    let arn: string;
    beforeAll(async () => {
      aws = await startFakeAws();
      arn = aws.createKey({ alias: 'alias/doctor' }).arn;
    });
    afterAll(() => aws?.close());
    const slot = () => [
      '--provider',
      'aws-kms',
      '--key-id',
      'alias/doctor',
      '--region',
      aws.region,
      '--endpoint',
      aws.endpoint,
    ];

    it('passes, naming the key ARN that wrapped', async () => {
      const out = await cli([...slot(), 'doctor'], awsEnv);
      expect(out.stdout).toContain(`key ${arn}`);
      expect(out.stdout).toContain('all checks passed');
      expect(out.code).toBe(0);
    });

    it('a disabled key, a refused identity and an unreachable endpoint each get their own advice', async () => {
      aws.setKeyState('alias/doctor', 'Disabled');
      const disabled = await cli([...slot(), 'doctor'], awsEnv);
      expect(disabled.code).toBe(ExitCode.keyDisabled);
      expect(disabled.stdout).toMatch(/FAIL {2}wrap: .*DisabledException/);
      expect(disabled.stdout).toContain('enable it');
      aws.setKeyState('alias/doctor', 'Enabled');

      aws.restrictKey('alias/doctor', ['someone-else']);
      const denied = await cli([...slot(), 'doctor'], awsEnv);
      expect(denied.code).toBe(ExitCode.accessDenied);
      expect(denied.stdout).toContain('kms:Encrypt, kms:Decrypt');
      aws.restrictKey('alias/doctor', undefined);

      const missing = await cli([...slot().slice(0, 3), 'alias/nope', ...slot().slice(4), 'doctor'], awsEnv);
      expect(missing.code).toBe(ExitCode.keyNotFound);
      expect(missing.stdout).toContain('does not exist where the slot looks');

      const down = await cli(
        [
          '--provider',
          'aws-kms',
          '--key-id',
          'alias/doctor',
          '--region',
          'us-east-1',
          '--endpoint',
          'http://127.0.0.1:9',
          'doctor',
          '--deadline',
          '3000',
        ],
        awsEnv,
      );
      expect(down.code).toBe(ExitCode.unavailable);
      expect(down.stdout).toContain('check the endpoint, region, DNS and network');
    });

    it('diagnoseSlot as a library call: a slow KMS is cut at the deadline', async () => {
      const registry = new KmsRegistry({
        slots: {
          slow: {
            provider: 'aws-kms',
            keyId: arn,
            region: aws.region,
            endpoint: aws.endpoint,
            options: { credentials: { accessKeyId: 'test', secretAccessKey: 'test' } },
          },
        },
      });
      aws.delay(3000);
      try {
        const report = await diagnoseSlot(registry, 'slow', { deadlineMs: 300 });
        expect(report.ok).toBe(false);
        expect(report.checks.at(-1)).toMatchObject({ name: 'wrap', ok: false });
        expect(report.checks.at(-1)?.error?.code).toBe('KMS_ENVELOPE_DEADLINE_EXCEEDED');
      } finally {
        aws.delay(0);
        await registry.close();
      }
    });
  });
});
