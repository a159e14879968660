import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/errors.js';
import type { KmsProvider } from '../../src/providers/provider.js';
import { KmsRegistry } from '../../src/providers/registry.js';
import { type KmsSlot, type KmsSlotInput, parseKmsSlot, parseSlotsConfig } from '../../src/providers/slot.js';

const camel = {
  provider: 'aws-kms',
  keyId: 'alias/k',
  roleArn: 'arn:aws:iam::1:role/r',
  externalId: 'ext',
  roleSessionName: 'kms-envelope',
  allowPublicKeyWrap: false,
};
const snake = {
  provider: 'aws-kms',
  key_id: 'alias/k',
  role_arn: 'arn:aws:iam::1:role/r',
  external_id: 'ext',
  role_session_name: 'kms-envelope',
  allow_public_key_wrap: false,
};

describe('slot fields in code: camelCase and snake_case alike, anything else refused', () => {
  it('a slot written in code with role_arn / external_id / key_id assumes the role (snake_case is read)', () => {
    expect(parseKmsSlot('byok', snake)).toEqual({ name: 'byok', ...camel });
    expect(parseKmsSlot('byok', camel)).toEqual(parseKmsSlot('byok', snake));
    expect(parseKmsSlot('dev', { provider: 'local', master_key: 'env:K' })).toEqual({
      name: 'dev',
      provider: 'local',
      masterKey: 'env:K',
    });
    // role_arn without external_id is refused as roleArn is: it is read.
    expect(() => parseKmsSlot('byok', { provider: 'aws-kms', role_arn: 'arn:aws:iam::1:role/r' })).toThrow(
      /external_id/,
    );
  });

  it('the registry hands providers the camelCase slot, whichever spelling the code used', async () => {
    const seen: KmsSlot[] = [];
    const registry = new KmsRegistry({
      slots: { byok: snake },
      providers: {
        'aws-kms': (slot) => {
          seen.push(slot);
          return { id: 'aws-kms' } as unknown as KmsProvider;
        },
      },
    });
    await registry.provider('byok');
    expect(seen[0]).toMatchObject({ roleArn: camel.roleArn, externalId: 'ext', keyId: 'alias/k' });
  });

  it('an unknown field is a ConfigError naming it, in code and in files alike', () => {
    const misspelt = { provider: 'aws-kms', keyId: 'alias/k', rolearn: 'arn:aws:iam::1:role/r' };
    expect(() => parseKmsSlot('byok', misspelt as unknown as KmsSlotInput)).toThrow(ConfigError);
    expect(() => parseKmsSlot('byok', misspelt as unknown as KmsSlotInput)).toThrow(
      /unknown slot setting "rolearn"/,
    );
    expect(() => new KmsRegistry({ slots: { byok: misspelt as unknown as KmsSlotInput } })).toThrow(
      /unknown slot setting "rolearn"/,
    );
    expect(() => parseSlotsConfig('slots: {byok: {provider: aws-kms, rolearn: x}}', {})).toThrow(
      /unknown slot setting "rolearn"/,
    );
    // A key that could be a secret pasted in the wrong place is not echoed.
    expect(() =>
      parseKmsSlot('dev', { provider: 'local', 'literal:c2VjcmV0IGtleQ==': 'x' } as unknown as KmsSlotInput),
    ).toThrow(/unknown slot setting \(not shown\)/);
  });

  it('one field in both spellings is refused (which would win is a guess), in code and in files', () => {
    const both = {
      provider: 'aws-kms',
      roleArn: 'arn:aws:iam::1:role/a',
      role_arn: 'arn:aws:iam::1:role/b',
      externalId: 'e',
    };
    expect(() => parseKmsSlot('byok', both)).toThrow(/"roleArn" is given twice \("roleArn" and "role_arn"\)/);
    expect(() =>
      parseSlotsConfig('slots: {byok: {provider: aws-kms, role_arn: a, roleArn: b, external_id: e}}', {}),
    ).toThrow(/given twice/);
  });

  it('files: both spellings read; a "name" field is refused (the key is the name)', () => {
    const [a] = parseSlotsConfig(
      'slots: {byok: {provider: aws-kms, keyId: alias/k, role_arn: arn:aws:iam::1:role/r, externalId: ext}}',
      {},
    );
    expect(a).toEqual({
      name: 'byok',
      provider: 'aws-kms',
      keyId: 'alias/k',
      roleArn: 'arn:aws:iam::1:role/r',
      externalId: 'ext',
    });
    expect(() => parseSlotsConfig('slots: {a: {provider: none, name: b}}', {})).toThrow(/"name"/);
  });
});
