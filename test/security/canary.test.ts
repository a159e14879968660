/**
 * Searches everything the public objects show — error messages, stacks, causes, util.inspect,
 * JSON and string forms — for a canary KEK's and a canary master key's bytes in hex, base64,
 * base64url and latin1 (and for a canary plaintext), and finds none.
 */
import { inspect } from 'node:util';
import { describe, expect, it } from 'vitest';
import { createLocalProvider } from '../../providers/local.js';
import { KmsEnvelopeClient } from '../../src/client.js';
import { IndexKeyring } from '../../src/keyring/keyring.js';
import { Dek } from '../../src/keys/dek.js';
import { Kek } from '../../src/keys/kek.js';
import { decodeKeyMaterial } from '../../src/keys/secret-ref.js';
import { decryptLegacyV2, encryptLegacyV2, LegacyKey, legacyMasterKeyFromEnv } from '../../src/legacy/v2.js';
import { parseIndexName } from '../../src/names.js';
import { KmsRegistry } from '../../src/providers/registry.js';
import { StorageConfig } from '../../src/storage/config.js';
import { decryptString, encryptString } from '../../src/wire/fields.js';
import { newKeyId } from '../../src/wire/key-id.js';

// Distinctive bytes so that a match is never an accident.
const canaryKek = Buffer.from('c4n4ryKEKc4n4ryKEKc4n4ryKEK!!!!!', 'latin1');
const canaryMaster = Buffer.from('MASTERcanaryMASTERcanaryMASTER:)', 'latin1');

function encodings(bytes: Buffer): string[] {
  return [
    bytes.toString('hex'),
    bytes.toString('hex').toUpperCase(),
    bytes.toString('base64'),
    bytes.toString('base64url'),
    bytes.toString('latin1'),
    // Partial leaks count too: any 12-byte window in each encoding.
    bytes.subarray(0, 12).toString('hex'),
    bytes.subarray(10, 22).toString('base64'),
    bytes.subarray(20, 32).toString('latin1'),
  ];
}

const needles = [...encodings(canaryKek), ...encodings(canaryMaster), 'plaintext-canary'];

function shownForms(value: unknown): string[] {
  const forms = [
    inspect(value, { depth: Number.POSITIVE_INFINITY, showHidden: true, getters: true }),
    String(value),
  ];
  try {
    forms.push(JSON.stringify(value) ?? '');
  } catch {
    // circular structures: inspect covers them
  }
  if (value instanceof Error) {
    let err: unknown = value;
    while (err instanceof Error) {
      forms.push(err.message, err.stack ?? '', inspect(err, { showHidden: true, depth: 9 }));
      err = err.cause;
    }
  }
  return forms;
}

function expectNoCanary(label: string, value: unknown) {
  for (const form of shownForms(value)) {
    for (const needle of needles) {
      if (form.includes(needle)) throw new Error(`${label} shows canary key bytes (${needle.length} chars)`);
    }
  }
}

describe('no key material in anything shown', () => {
  it('holds across the client, its errors, and the key objects', async () => {
    const masterRef = `literal:${canaryMaster.toString('base64url')}`;
    const store = StorageConfig.memory();
    const kms = {
      slots: { dev: { provider: 'local', masterKey: masterRef }, byok: { provider: 'none' } },
      secrets: { allowLiteral: true },
    };
    const client = new KmsEnvelopeClient({ store, kms });
    const canary = Kek.fromBytes(canaryKek);
    const shown: [string, unknown][] = [];
    const capture = async (label: string, fn: () => Promise<unknown>) => {
      try {
        shown.push([label, await fn()]);
      } catch (err) {
        shown.push([`${label} (error)`, err]);
      }
    };

    await capture('create', () => client.createIndex('canary', { slot: 'dev', kek: canary }));
    await capture('create again', () => client.createIndex('canary', { slot: 'dev', kek: canary }));
    await capture('create second', () => client.createIndex('canary2', { slot: 'dev', kek: canary }));
    await capture('create none', () => client.createIndex('canary-none', { slot: 'byok', kek: canary }));
    await capture('get', () => client.getEnvelope('canary'));
    await capture('unwrap', () => client.unwrap('canary'));
    await capture('unwrap none wrong KEK', () => client.unwrap('canary-none', { kek: Kek.generate() }));
    await capture('unwrap none with KEK on local', () => client.unwrap('canary', { kek: canary }));
    await capture('rotate', () => client.rotate('canary'));
    await capture('verify', () => client.verify('canary'));
    const blob = await client.getEnvelope('canary');
    await capture('tampered', async () => {
      const tampered = new Uint8Array(blob.wrappedKek);
      tampered[20]! ^= 1;
      await store.push(parseIndexName('canary'), { ...blob, wrappedKek: tampered });
      return client.unwrap('canary');
    });
    await capture('moved', async () => {
      await store.push(parseIndexName('moved'), { ...blob, indexName: 'moved' });
      return client.unwrap('moved');
    });
    const wrongMaster = new KmsEnvelopeClient({
      store,
      kms: {
        slots: { dev: { provider: 'local', masterKey: `literal:${Buffer.alloc(32, 1).toString('base64')}` } },
        secrets: { allowLiteral: true },
      },
    });
    await capture('wrong master key', () => wrongMaster.unwrap('canary2'));
    await capture('bad master key size', async () =>
      new KmsRegistry({
        slots: {
          x: { provider: 'local', masterKey: `literal:${canaryMaster.subarray(0, 31).toString('hex')}` },
        },
        secrets: { allowLiteral: true },
      }).provider('x'),
    );
    await capture('literal: refused', async () =>
      new KmsRegistry({ slots: { x: { provider: 'local', masterKey: masterRef } } }).provider('x'),
    );
    await capture('decode short key', async () => decodeKeyMaterial(canaryMaster.subarray(0, 30), 32, 'key'));
    await capture('Kek wrong size', async () => Kek.fromBytes(canaryKek.subarray(0, 31)));
    shown.push(
      ['client', client],
      ['store', store],
      ['canary Kek', canary],
      ['local provider', createLocalProvider({ masterKey: canaryMaster })],
    );
    shown.push(['registry', client.kms], ['provider', await client.kms.provider('dev')]);

    // The DEK layer: a keyring over a caller-supplied canary KEK, a canary DEK, a canary legacy key.
    await capture('keyring create', () =>
      IndexKeyring.createIndex(client, 'canary-ring', { slot: 'byok', kek: canary }),
    );
    const ring = new IndexKeyring(client, 'canary-ring', { kek: canary });
    await capture('keyring dek', () => ring.createDek());
    const token = await ring.encryptValue('plaintext-canary');
    await capture('keyring wrong KEK', () =>
      new IndexKeyring(client, 'canary-ring', { kek: Kek.generate() }).decryptValue(token),
    );
    await capture('keyring unknown id', () =>
      ring.decryptValue(token.replace(token.split('$')[2]!, newKeyId())),
    );
    await capture('keyring tampered', () => ring.decryptValue(`${token.slice(0, -6)}AAAA==`));
    await capture('keyring list', () => ring.listDeks());
    await capture('keyring rotate', () => ring.rotateKek({ newKek: Kek.fromBytes(canaryMaster) }));
    const dek = Dek.fromBytes(canaryKek);
    const ctx = { keyid: newKeyId(), key: dek, alg: 'A256GCM' };
    const wire = encryptString('plaintext-canary', ctx);
    await capture('wire wrong key', async () => decryptString(wire, { ...ctx, key: Dek.generate() }));
    await capture('wire other id', async () => decryptString(wire, { ...ctx, keyid: newKeyId() }));
    await capture('wire truncated', async () => decryptString(wire.slice(0, 50), ctx));
    await capture('wire context', async () => decryptString(wire, ctx, { context: { a: 'b' } }));
    const legacy = LegacyKey.fromBytes(canaryMaster);
    await capture('v2 wrong key', async () =>
      decryptLegacyV2(encryptLegacyV2('plaintext-canary', legacy), LegacyKey.generate()),
    );
    await capture('v2 env', async () =>
      legacyMasterKeyFromEnv({ API_KEY_MASTER_KEY: canaryMaster.subarray(0, 30).toString('base64url') }),
    );
    shown.push(['dek', dek], ['legacy key', legacy], ['keyring', ring], ['key context', ctx]);

    expect(shown.filter(([label]) => label.endsWith('(error)')).length).toBeGreaterThanOrEqual(16);
    for (const [label, value] of shown) expectNoCanary(label, value);
  });

  it('the search itself finds a leak when there is one', () => {
    expect(() => expectNoCanary('leaky', { key: canaryKek.toString('base64') })).toThrow(/canary/);
    expect(() => expectNoCanary('leaky', new Error(`oops ${canaryMaster.toString('hex')}`))).toThrow(
      /canary/,
    );
  });
});
