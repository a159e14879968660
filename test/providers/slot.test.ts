import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/errors.js';
import { KmsRegistry, registerProvider } from '../../src/providers/registry.js';
import { parseKmsSlot, parseSlotsConfig } from '../../src/providers/slot.js';

describe('slots config', () => {
  it('parses YAML with ${VAR} and ${VAR:-default}, snake_case keys', () => {
    const yaml = `
slots:
  prod-kms:
    provider: aws-kms
    key_id: \${KEY_ARN}
    region: \${AWS_REGION:-eu-west-1}
    role_arn: arn:aws:iam::1:role/r
    external_id: ext
  dev:
    provider: local
    master_key: env:DEV_KEY
`;
    const slots = parseSlotsConfig(yaml, { KEY_ARN: 'arn:aws:kms:eu-west-1:1:key/abc' });
    expect(slots).toEqual([
      {
        name: 'prod-kms',
        provider: 'aws-kms',
        keyId: 'arn:aws:kms:eu-west-1:1:key/abc',
        region: 'eu-west-1',
        roleArn: 'arn:aws:iam::1:role/r',
        externalId: 'ext',
      },
      { name: 'dev', provider: 'local', masterKey: 'env:DEV_KEY' },
    ]);
  });

  it('parses JSON too', () => {
    expect(parseSlotsConfig('{"slots":{"a":{"provider":"none"}}}', {})).toEqual([
      { name: 'a', provider: 'none' },
    ]);
  });

  it.each([
    ['slots:\n  a:\n    provider: local\n    key_id: ${MISSING}', /MISSING is not set/],
    ['slots: {a: {key_id: x}}', /needs a "provider"/],
    ['slots: {a: {provider: local, colour: blue}}', /unknown slot setting "colour"/],
    ['slots: {a: {provider: aws-kms, role_arn: arn}}', /external_id/],
    ['slots: {"../x": {provider: local}}', /invalid slot name/],
    ['nothing: here', /top-level "slots"/],
    ['slots: [', /neither valid YAML nor JSON/],
  ])('rejects %s', (text, message) => {
    expect(() => parseSlotsConfig(text, {})).toThrow(message);
    expect(() => parseSlotsConfig(text, {})).toThrow(ConfigError);
  });
});

describe('KmsRegistry', () => {
  it('builds a provider lazily once per slot and names unknown slots and providers', async () => {
    const calls: string[] = [];
    const registry = new KmsRegistry({
      slots: { a: { provider: 'counting' }, b: { provider: 'mystery' } },
      providers: {
        counting: (slot) => {
          calls.push(slot.name);
          return {
            id: 'counting',
            wrap: async () => ({ wrappedKek: new Uint8Array(), keyId: '', region: '' }),
            unwrap: async () => {
              throw new Error('unused');
            },
          };
        },
      },
    });
    const [p1, p2] = await Promise.all([registry.provider('a'), registry.provider('a')]);
    expect(p1).toBe(p2);
    expect(calls).toEqual(['a']);
    await expect(registry.provider('zzz')).rejects.toThrow(/unknown KMS slot.*configured: a, b/);
    await expect(registry.provider('b')).rejects.toThrow(/unknown provider "mystery"/);
  });

  it('reports a slot missing a provider field on first use, not before', async () => {
    const registry = new KmsRegistry({ slots: { dev: { provider: 'local' } } });
    await expect(registry.provider('dev')).rejects.toThrow(/needs "master_key"/);
  });

  it('rejects duplicate slots and registering a built-in id', () => {
    expect(
      () =>
        new KmsRegistry({
          slots: [
            { name: 'a', provider: 'none' },
            { name: 'a', provider: 'none' },
          ],
        }),
    ).toThrow(/twice/);
    expect(() =>
      registerProvider({
        id: 'local',
        create: () => {
          throw new Error();
        },
      }),
    ).toThrow();
    expect(() => parseKmsSlot('ok', { provider: 'Bad Id' })).toThrow(ConfigError);
  });
});
