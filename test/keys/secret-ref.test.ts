import { mkdtempSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/errors.js';
import { decodeKeyMaterial, registerSecretScheme, resolveSecretRef } from '../../src/keys/secret-ref.js';

const key = Buffer.from(Array.from({ length: 32 }, (_, i) => i + 100));

describe('resolveSecretRef', () => {
  it('reads env: and then removes the variable', async () => {
    const env: NodeJS.ProcessEnv = { MY_KEY: key.toString('base64url') };
    const bytes = await resolveSecretRef('env:MY_KEY', { env });
    expect(decodeKeyMaterial(bytes, 32, 'k')).toEqual(key);
    expect(env.MY_KEY).toBeUndefined();
    await expect(resolveSecretRef('env:MY_KEY', { env })).rejects.toThrow(ConfigError);
  });

  it('reads file: only under an allowed prefix, after resolving symlinks', async () => {
    const allowed = mkdtempSync(join(tmpdir(), 'ke-allowed-'));
    const outside = mkdtempSync(join(tmpdir(), 'ke-outside-'));
    writeFileSync(join(allowed, 'k'), key.toString('hex'));
    writeFileSync(join(outside, 'k'), key.toString('hex'));
    symlinkSync(join(outside, 'k'), join(allowed, 'link'));
    const opts = { allowedFilePrefixes: [allowed] };
    expect(decodeKeyMaterial(await resolveSecretRef(`file:${join(allowed, 'k')}`, opts), 32, 'k')).toEqual(
      key,
    );
    await expect(resolveSecretRef(`file:${join(outside, 'k')}`, opts)).rejects.toThrow(
      /not under an allowed folder/,
    );
    await expect(resolveSecretRef(`file:${join(allowed, 'link')}`, opts)).rejects.toThrow(
      /not under an allowed folder/,
    );
    await expect(resolveSecretRef(`file:${allowed}/../${outside.split('/').pop()}/k`, opts)).rejects.toThrow(
      ConfigError,
    );
    await expect(resolveSecretRef('file:relative/path', opts)).rejects.toThrow(/absolute/);
  });

  it('reads secret: from CREDENTIALS_DIRECTORY and rejects path tricks', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ke-creds-'));
    writeFileSync(join(dir, 'master'), key);
    const env = { CREDENTIALS_DIRECTORY: dir };
    expect(await resolveSecretRef('secret:master', { env })).toEqual(key);
    await expect(resolveSecretRef('secret:../etc/passwd', { env })).rejects.toThrow(ConfigError);
    await expect(resolveSecretRef('secret:absent', { env })).rejects.toThrow(/not found/);
  });

  it('supports literal: and registered schemes, rejects unknown ones', async () => {
    expect(await resolveSecretRef('literal:abc')).toEqual(Buffer.from('abc'));
    registerSecretScheme('test-vault', (rest) => Buffer.from(`vault:${rest}`));
    expect((await resolveSecretRef('test-vault:x')).toString()).toBe('vault:x');
    await expect(resolveSecretRef('nope:x')).rejects.toThrow(/unknown secret reference scheme/);
    await expect(resolveSecretRef('no-scheme')).rejects.toThrow(ConfigError);
    expect(() => registerSecretScheme('env', () => Buffer.alloc(0))).toThrow(ConfigError);
  });
});

describe('decodeKeyMaterial', () => {
  it('accepts raw, hex, base64 and base64url forms of exactly the length', () => {
    for (const form of [
      key,
      Buffer.from(key.toString('hex')),
      Buffer.from(key.toString('base64')),
      Buffer.from(`${key.toString('base64url')}\n`),
    ]) {
      expect(decodeKeyMaterial(form, 32, 'k')).toEqual(key);
    }
  });

  it('rejects other lengths without printing the value', () => {
    const short = Buffer.from(key.subarray(0, 31).toString('base64'));
    expect(() => decodeKeyMaterial(short, 32, 'master key')).toThrow(ConfigError);
    try {
      decodeKeyMaterial(short, 32, 'master key');
    } catch (err) {
      expect((err as Error).message).not.toContain(short.toString());
      expect((err as Error).message).toMatch(/master key must be 32 bytes/);
    }
  });
});
