/**
 * The reserved-key rule of the encryption-context binding: the library's own documented keys pass
 * (the keyring's `kms-envelope:kek-slot`, which made IndexKeyring unusable on aws-kms while it was
 * refused), every other `kms-envelope:` key stays reserved so no context entry can stand in for a
 * part of the binding.
 */
import { expect, it } from 'vitest';
import { InvalidArgumentError } from '../../src/errors.js';
import { KEK_SLOT_CONTEXT_KEY } from '../../src/keyring/records.js';
import { parseIndexName, parseSlotName } from '../../src/names.js';
import { bindingEncryptionContext, LIBRARY_CONTEXT_KEYS } from '../../src/providers/support.js';

const ctx = (encryptionContext: Record<string, string>) => ({
  index: parseIndexName('orders'),
  slot: parseSlotName('prod'),
  encryptionContext,
  version: 3,
  creationId: new Uint8Array(16).fill(0xab),
});

it("the keyring's kek-slot key passes and is bound; the binding's own keys cannot be overridden", () => {
  expect(KEK_SLOT_CONTEXT_KEY).toBe('kms-envelope:kek-slot');
  expect([...LIBRARY_CONTEXT_KEYS]).toEqual([KEK_SLOT_CONTEXT_KEY]);
  expect(bindingEncryptionContext(ctx({ [KEK_SLOT_CONTEXT_KEY]: 'slot-1', tenant: 't' }))).toEqual({
    'kms-envelope:index': 'orders',
    'kms-envelope:slot': 'prod',
    'kms-envelope:version': '3',
    'kms-envelope:creation-id': 'ab'.repeat(16),
    'kms-envelope:kek-slot': 'slot-1',
    tenant: 't',
  });
  for (const key of [
    'kms-envelope:index',
    'kms-envelope:slot',
    'kms-envelope:version',
    'kms-envelope:creation-id',
    'kms-envelope:anything-else',
    'kms-envelope:KEK-SLOT',
  ]) {
    expect(() => bindingEncryptionContext(ctx({ [key]: 'x' })), key).toThrow(InvalidArgumentError);
  }
});
