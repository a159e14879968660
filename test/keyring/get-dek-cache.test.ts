import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { KmsEnvelopeClient } from '../../src/client.js';
import { InvalidKeyIdError, StoreUnavailableError } from '../../src/errors.js';
import { IndexKeyring } from '../../src/keyring/keyring.js';
import { StorageConfig } from '../../src/storage/config.js';
import type { MemoryStore } from '../../src/storage/memory.js';
import type { RecordKind } from '../../src/storage/store.js';

/** The same store, whose next `failures` reads of a record of `kind` throw (an outage). */
function flaky(store: MemoryStore, kind: RecordKind, failures: number): MemoryStore {
  let left = failures;
  return new Proxy(store, {
    get(target, property) {
      const value = Reflect.get(target, property, target) as unknown;
      if (property === 'getRecord') {
        return async (index: never, k: RecordKind, id: string) => {
          if (k === kind && left > 0) {
            left--;
            throw new StoreUnavailableError('simulated store outage');
          }
          return target.getRecord(index, k, id);
        };
      }
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}

async function setup(kind: RecordKind) {
  const store = StorageConfig.memory();
  const slots = { dev: { provider: 'local', masterKey: `literal:${randomBytes(32).toString('base64url')}` } };
  const writer = new KmsEnvelopeClient({ store, kms: { slots, secrets: { allowLiteral: true } } });
  const keyring = await IndexKeyring.createIndex(writer, 'orders', { slot: 'dev' });
  const dek = await keyring.createDek();
  const token = await keyring.encryptValue('hello');
  // A reader in "another process": nothing cached, and its store fails once.
  const reader = new KmsEnvelopeClient({
    store: flaky(store, kind, 1),
    kms: { slots, secrets: { allowLiteral: true } },
  });
  return { dek, token, reader: new IndexKeyring(reader, 'orders') };
}

describe('getDek caches only successes', () => {
  it('a DEK read that failed once (store outage) succeeds on the next call, asked by a non-canonical id', async () => {
    const { dek, token, reader } = await setup('dek');
    const upper = dek.keyid.toUpperCase();
    await expect(reader.getDek(upper)).rejects.toThrow(StoreUnavailableError);
    const again = await reader.getDek(upper);
    expect(again.keyid).toBe(dek.keyid);
    expect(again.key.equals(dek.key)).toBe(true);
    // Every accepted spelling shares the one cache entry, keyed by the canonical id.
    expect(await reader.getDek(`{${dek.keyid}}`)).toBe(again);
    expect(await reader.getDek(dek.keyid.replaceAll('-', ''))).toBe(again);
    expect(await reader.decryptValue(token)).toBe('hello');
  });

  it('a failed canonical-id read is not cached either', async () => {
    const { dek, reader } = await setup('dek');
    await expect(reader.getDek(dek.keyid)).rejects.toThrow(StoreUnavailableError);
    expect((await reader.getDek(dek.keyid)).key.equals(dek.key)).toBe(true);
  });

  it('a KEK load that failed (KEK-check record unreadable) is retried by the next getDek', async () => {
    const { dek, token, reader } = await setup('meta');
    await expect(reader.getDek(dek.keyid)).rejects.toThrow(StoreUnavailableError);
    expect(await reader.decryptValue(token)).toBe('hello');
  });

  it('an id that is no UUID is refused before any cache or store is touched', async () => {
    const { reader } = await setup('dek');
    await expect(reader.getDek('not-a-uuid')).rejects.toThrow(InvalidKeyIdError);
    await expect(reader.getDek('not-a-uuid')).rejects.toThrow(InvalidKeyIdError);
  });
});
