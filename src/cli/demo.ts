import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { KmsEnvelopeClient } from '../client.js';
import { EnvelopeNotFoundError } from '../errors.js';
import { StorageConfig } from '../storage/config.js';
import { fingerprint, formatBlob } from './format.js';

/**
 * The README's first command: on the embedded default (disk store, `local` provider, a master key
 * file made on first run) create an index's envelope, read it back, unwrap the KEK, rotate it
 * (version 2, new wrapped bytes, the same KEK) and delete it. Prints fields, never the key.
 */
export async function runDemo(dir: string, print: (line: string) => void): Promise<void> {
  const root = resolve(dir);
  mkdirSync(root, { recursive: true, mode: 0o700 });
  chmodSync(root, 0o700);
  const keyFile = join(root, 'master.key');
  if (!existsSync(keyFile)) {
    // Base64url text of 32 random bytes, readable only by this user.
    writeFileSync(keyFile, `${randomBytes(32).toString('base64url')}\n`, { mode: 0o600, flag: 'wx' });
  }
  const store = StorageConfig.disk(join(root, 'indexes'));
  const client = new KmsEnvelopeClient({
    store,
    kms: {
      slots: { 'demo-local': { provider: 'local', masterKey: `file:${keyFile}` } },
      secrets: { allowedFilePrefixes: [root] },
    },
  });
  const index = 'demo-index';
  try {
    print(
      `kms-envelope demo — store ${store.description}, slot "demo-local" (provider local, master key ${keyFile})\n`,
    );
    await client.delete(index); // a previous run may have stopped half way

    print(
      `1. create: a new random 32-byte KEK for index "${index}", wrapped with AES-256-GCM under the master key`,
    );
    const kek = await client.createIndex(index, {
      slot: 'demo-local',
      encryptionContext: { purpose: 'demo' },
    });
    print(`   returned ${kek} (keys print redacted)\n`);

    print('2. get: the stored KMSBlob envelope, verified (structure and CRC32C) on read');
    const v1 = await client.getEnvelope(index);
    print(`${formatBlob(v1)}\n`);

    print('3. unwrap: read the envelope, unwrap with its slot, check the KEK check value');
    const unwrapped = await client.unwrap(index);
    print(
      `   unwrapped ${unwrapped}; equal to the created KEK (constant-time compare): ${unwrapped.equals(kek)}\n`,
    );
    unwrapped.zero();

    print('4. rotate: re-wrap the same KEK, version + 1, compare-and-set on version 1');
    const v2 = await client.rotate(index);
    const rotated = await client.unwrap(index);
    print(`   version ${v1.version} → ${v2.version}`);
    print(
      `   wrapped_kek ${fingerprint(v1.wrappedKek)} → ${fingerprint(v2.wrappedKek)} (new nonce, new bytes)`,
    );
    print(`   same KEK after rotation: ${rotated.equals(kek)}\n`);
    rotated.zero();
    kek.zero();

    print('5. delete: remove the envelope (idempotent)');
    await client.delete(index);
    try {
      await client.getEnvelope(index);
      print('   unexpected: the envelope is still there');
    } catch (err) {
      if (!(err instanceof EnvelopeNotFoundError)) throw err;
      print(`   get now fails with ${err.name} (${err.code})`);
    }
    print(`\ndone. The store and master key stay in ${root}; remove the folder to start afresh.`);
  } finally {
    await client.close();
  }
}
