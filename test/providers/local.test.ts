import { randomBytes } from 'node:crypto';
import { chmodSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, expect, it, vi } from 'vitest';
import { createLocalProvider, LOCAL_WRAPPED_LENGTH, localKeyFingerprint } from '../../providers/local.js';
import { ConfigError, UnwrapFailedError } from '../../src/errors.js';
import { Kek } from '../../src/keys/kek.js';
import { forgetEnvSecrets } from '../../src/keys/secret-ref.js';
import { parseIndexName, parseSlotName } from '../../src/names.js';
import { KmsRegistry } from '../../src/providers/registry.js';
import { runProviderConformance } from './conformance.js';

const literal = (key: Buffer) => `literal:${key.toString('base64url')}`;

runProviderConformance('local', async () => {
  const key = randomBytes(32);
  const other = randomBytes(32);
  return {
    kms: {
      slots: {
        a: { provider: 'local', masterKey: literal(key) },
        b: { provider: 'local', masterKey: literal(key) },
      },
      secrets: { allowLiteral: true },
    },
    wrongKeyKms: {
      slots: {
        a: { provider: 'local', masterKey: literal(other) },
        b: { provider: 'local', masterKey: literal(other) },
      },
      secrets: { allowLiteral: true },
    },
  };
});

const ctx = { index: parseIndexName('i'), slot: parseSlotName('s'), encryptionContext: {} };

it('local wraps into nonce ‖ ciphertext ‖ tag and records the key id', async () => {
  const master = randomBytes(32);
  const provider = createLocalProvider({ masterKey: master });
  const wrapped = await provider.wrap(Kek.generate(), ctx);
  expect(wrapped.wrappedKek).toHaveLength(LOCAL_WRAPPED_LENGTH);
  expect(wrapped.keyId).toBe(localKeyFingerprint(master));
  expect(wrapped.keyId).not.toContain(master.toString('hex').slice(0, 16));
  const named = createLocalProvider({ masterKey: master, keyId: 'dev-key-1' });
  expect((await named.wrap(Kek.generate(), ctx)).keyId).toBe('dev-key-1');
  // An envelope recorded under another key id is refused by id before any decryption.
  await expect(named.unwrap(wrapped, ctx)).rejects.toThrow(/wrapped under master key/);
  // Truncated wrapped bytes fail cleanly.
  await expect(
    provider.unwrap({ ...wrapped, wrappedKek: wrapped.wrappedKek.subarray(0, 20) }, ctx),
  ).rejects.toThrow(UnwrapFailedError);
});

it('a local slot resolves its master key once and rejects keys of the wrong size', async () => {
  const env: NodeJS.ProcessEnv = { DEV_KEY: randomBytes(32).toString('base64') };
  const registry = new KmsRegistry({
    slots: { dev: { provider: 'local', masterKey: 'env:DEV_KEY' } },
    secrets: { env },
  });
  await registry.provider('dev');
  expect(env.DEV_KEY).toBeUndefined();
  const bad = new KmsRegistry({
    slots: { dev: { provider: 'local', masterKey: literal(randomBytes(16)) } },
    secrets: { allowLiteral: true },
  });
  await expect(bad.provider('dev')).rejects.toThrow(ConfigError);
  expect(() => createLocalProvider({ masterKey: randomBytes(31) })).toThrow(ConfigError);
});

it('a local slot refuses a literal: master key unless the registry allows it', async () => {
  const registry = new KmsRegistry({
    slots: { dev: { provider: 'local', masterKey: literal(randomBytes(32)) } },
  });
  await expect(registry.provider('dev')).rejects.toThrow(
    /literal: secret references are refused.*allowLiteral/,
  );
});

it('a local slot reads a 0600 key file and refuses a 0644 one', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ke-local-key-'));
  const master = randomBytes(32);
  const path = join(dir, 'master.key');
  writeFileSync(path, `${master.toString('base64')}\n`);
  const slot = { dev: { provider: 'local', masterKey: `file:${path}` } };
  chmodSync(path, 0o600);
  const ok = new KmsRegistry({ slots: slot, secrets: { allowedFilePrefixes: [dir] } });
  const wrapped = await (await ok.provider('dev')).wrap(Kek.generate(), ctx);
  expect(wrapped.keyId).toBe(localKeyFingerprint(master));
  chmodSync(path, 0o644);
  const refused = new KmsRegistry({ slots: slot, secrets: { allowedFilePrefixes: [dir] } });
  const err = await refused.provider('dev').catch((e: unknown) => e);
  expect(err).toBeInstanceOf(ConfigError);
  expect((err as Error).message).toMatch(/readable by group or others \(mode 0644\): refused/);
});

/** Every buffer the Buffer factories return while `fn` runs (copies of key bytes among them). */
async function buffersMadeDuring(fn: () => Promise<void>): Promise<Buffer[]> {
  const made: Buffer[] = [];
  for (const name of ['from', 'alloc', 'allocUnsafe', 'allocUnsafeSlow', 'concat'] as const) {
    const original = Buffer[name] as (...args: unknown[]) => Buffer;
    vi.spyOn(Buffer, name).mockImplementation(((...args: unknown[]) => {
      const out = original.apply(Buffer, args);
      made.push(out);
      return out;
    }) as never);
  }
  try {
    await fn();
  } finally {
    vi.restoreAllMocks();
  }
  return made;
}

afterEach(() => vi.restoreAllMocks());

it('local leaves no copy of the master key behind once closed (createLocalProvider)', async () => {
  const master = randomBytes(32);
  const made = await buffersMadeDuring(async () => {
    const provider = createLocalProvider({ masterKey: master });
    const kek = Kek.generate();
    const wrapped = await provider.wrap(kek, ctx);
    (await provider.unwrap(wrapped, ctx)).zero();
    kek.zero();
    await provider.close();
  });
  expect(made.length).toBeGreaterThan(0);
  for (const buf of made) expect(buf.includes(master)).toBe(false);
});

it('local leaves no copy of the master key or its text behind once closed and the env: value forgotten (slot from env:)', async () => {
  const master = randomBytes(32);
  const text = Buffer.from(master.toString('base64'));
  const env: NodeJS.ProcessEnv = { DEV_KEY: text.toString() };
  const made = await buffersMadeDuring(async () => {
    const registry = new KmsRegistry({
      slots: { dev: { provider: 'local', masterKey: 'env:DEV_KEY' } },
      secrets: { env },
    });
    const provider = await registry.provider('dev');
    (await provider.unwrap(await provider.wrap(Kek.generate(), ctx), ctx)).zero();
    await registry.close();
    // An env: value is kept for the process (a second client may need it) until forgotten.
    forgetEnvSecrets(env);
  });
  for (const buf of made) {
    expect(buf.includes(master)).toBe(false);
    expect(buf.includes(text)).toBe(false);
  }
});
