/**
 * Two slots, `a` and `b`, of each built-in provider for the keyring conformance suite, against the
 * local fakes of kms-envelope/testing (or LocalStack / moto for the AWS ones under
 * `npm run test:localstack`, as the provider suites do).
 */
import { randomBytes } from 'node:crypto';
import type { KmsSlotInput } from '../../src/providers/slot.js';
import { startFakeAzureKv, startFakeGcpKms } from '../../src/testing/index.js';
import { awsBackend, awsSlot } from '../providers/aws-backend.js';
import type { KeyringProviderFixture } from './conformance.js';

const literal = () => `literal:${randomBytes(32).toString('base64url')}`;

/** The fixture of each provider, by id. */
export const keyringProviders: Record<string, () => Promise<KeyringProviderFixture>> = {
  none: async () => ({
    kms: { slots: { a: { provider: 'none' }, b: { provider: 'none' } } },
    suppliesKek: true,
  }),
  local: async () => ({
    kms: {
      slots: {
        a: { provider: 'local', masterKey: literal() },
        b: { provider: 'local', masterKey: literal() },
      },
      secrets: { allowLiteral: true },
    },
  }),
  aws: async () => {
    const aws = await awsBackend();
    const a = aws.unique('kek-a');
    const b = aws.unique('kek-b');
    await aws.putSecret(a, randomBytes(32));
    const { arn } = await aws.putSecret(b, randomBytes(32).toString('base64'));
    return {
      kms: { slots: { a: awsSlot(aws, 'aws', a), b: awsSlot(aws, 'aws', arn) } },
      cleanup: () => aws.close(),
    };
  },
  'aws-kms': async () => {
    const aws = await awsBackend();
    const a = await aws.createKey();
    const b = await aws.createKey();
    return {
      kms: { slots: { a: awsSlot(aws, 'aws-kms', a.alias), b: awsSlot(aws, 'aws-kms', b.arn) } },
      cleanup: () => aws.close(),
    };
  },
  'gcp-kms': async () => {
    const keyA = 'projects/p1/locations/europe-west1/keyRings/ring/cryptoKeys/kek-a';
    const keyB = 'projects/p1/locations/europe-west1/keyRings/ring/cryptoKeys/kek-b';
    const fake = await startFakeGcpKms({ cryptoKeys: [keyA, keyB] });
    const slot = (keyId: string): KmsSlotInput => ({
      provider: 'gcp-kms',
      keyId,
      region: 'europe-west1',
      endpoint: fake.endpoint,
      options: { insecure: true },
    });
    return { kms: { slots: { a: slot(keyA), b: slot(keyB) } }, cleanup: () => fake.close() };
  },
  'azure-kv': async () => {
    const fake = await startFakeAzureKv();
    await fake.createKey('kek-rsa', 'RSA');
    await fake.createKey('kek-hsm', 'oct-HSM');
    const options = { credential: fake.credential, clientOptions: fake.clientOptions() };
    return {
      kms: {
        slots: {
          // RSA: the wrap needs only the public key, so the slot must opt in (docs/threat-model.md).
          a: { provider: 'azure-kv', keyId: fake.keyId('kek-rsa'), allowPublicKeyWrap: true, options },
          // Managed HSM oct-HSM with A256KW: no opt-in needed.
          b: {
            provider: 'azure-kv',
            keyId: fake.keyId('kek-hsm'),
            options: { ...options, algorithm: 'A256KW' },
          },
        },
      },
      cleanup: () => fake.close(),
    };
  },
};
