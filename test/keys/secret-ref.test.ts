import { randomBytes } from 'node:crypto';
import { chmodSync, chownSync, mkdtempSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { KmsEnvelopeClient } from '../../src/client.js';
import { ConfigError } from '../../src/errors.js';
import {
  decodeKeyMaterial,
  forgetEnvSecrets,
  registerSecretScheme,
  resolveSecretRef,
} from '../../src/keys/secret-ref.js';
import { StorageConfig } from '../../src/storage/config.js';

const key = Buffer.from(Array.from({ length: 32 }, (_, i) => i + 100));
/** `key` raw and as text in every accepted form. */
const keyForms = [
  key,
  Buffer.from(key.toString('hex')),
  Buffer.from(key.toString('base64')),
  Buffer.from(` ${key.toString('base64url')}\n`),
];

describe('resolveSecretRef', () => {
  it('reads env:, removes the variable, and keeps the value for later reads in the process', async () => {
    const env: NodeJS.ProcessEnv = { MY_KEY: key.toString('base64url') };
    const bytes = await resolveSecretRef('env:MY_KEY', { env });
    expect(decodeKeyMaterial(bytes, 32, 'k')).toEqual(key);
    expect(env.MY_KEY).toBeUndefined();
    expect(Object.keys(env)).toEqual([]);
    // A second reader gets a copy of its own: wiping the first leaves it intact, and vice versa.
    bytes.fill(0);
    const again = await resolveSecretRef('env:MY_KEY', { env });
    expect(decodeKeyMaterial(again, 32, 'k')).toEqual(key);
    expect(again.buffer).not.toBe(bytes.buffer);
    again.fill(0);
    expect(decodeKeyMaterial(await resolveSecretRef('env:MY_KEY', { env }), 32, 'k')).toEqual(key);
    // Kept per environment object: another environment never sees it.
    await expect(resolveSecretRef('env:MY_KEY', { env: {} })).rejects.toThrow(/MY_KEY is not set/);
    forgetEnvSecrets(env);
  });

  it('env: a variable never set is "not set", naming the variable and nothing else', async () => {
    const err = await resolveSecretRef('env:NEVER_SET', { env: {} }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).message).toBe('environment variable NEVER_SET is not set');
  });

  it('forgetEnvSecrets zeroes and drops the kept bytes: "not set" afterwards', async () => {
    const env: NodeJS.ProcessEnv = { A: key.toString('hex'), B: key.toString('base64') };
    await resolveSecretRef('env:A', { env });
    await resolveSecretRef('env:B', { env });
    const fill = vi.spyOn(Buffer.prototype, 'fill');
    forgetEnvSecrets(env, ['A']);
    // The kept copy of A was zeroed (fill(0) on a buffer of A's text length), not just dropped.
    expect(fill.mock.calls.some(([value]) => value === 0)).toBe(true);
    fill.mockRestore();
    await expect(resolveSecretRef('env:A', { env })).rejects.toThrow(/A is not set/);
    expect(decodeKeyMaterial(await resolveSecretRef('env:B', { env }), 32, 'k')).toEqual(key);
    forgetEnvSecrets(env);
    await expect(resolveSecretRef('env:B', { env })).rejects.toThrow(/B is not set/);
    // Forgetting what was never read, or twice, is a no-op.
    forgetEnvSecrets(env, ['B', 'NEVER']);
    forgetEnvSecrets({});
  });

  it('env: a variable set again wins over the kept value, and set to empty reads as not set', async () => {
    const other = Buffer.from(Array.from({ length: 32 }, (_, i) => 255 - i));
    const env: NodeJS.ProcessEnv = { ROTATED: key.toString('hex') };
    expect(decodeKeyMaterial(await resolveSecretRef('env:ROTATED', { env }), 32, 'k')).toEqual(key);
    env.ROTATED = other.toString('base64');
    expect(decodeKeyMaterial(await resolveSecretRef('env:ROTATED', { env }), 32, 'k')).toEqual(other);
    expect(env.ROTATED).toBeUndefined();
    expect(decodeKeyMaterial(await resolveSecretRef('env:ROTATED', { env }), 32, 'k')).toEqual(other);
    env.ROTATED = '';
    await expect(resolveSecretRef('env:ROTATED', { env })).rejects.toThrow(/ROTATED is not set/);
    expect('ROTATED' in env).toBe(false);
    await expect(resolveSecretRef('env:ROTATED', { env })).rejects.toThrow(/ROTATED is not set/);
  });

  it('env: on process.env by default: two clients in one process both unwrap, none after forgetting', async () => {
    const name = `KMS_ENVELOPE_TEST_MASTER_${process.pid}`;
    const master = randomBytes(32);
    process.env[name] = master.toString('base64');
    const options = () => ({
      store: StorageConfig.memory(),
      kms: { slots: { dev: { provider: 'local' as const, masterKey: `env:${name}` } } },
    });
    const first = new KmsEnvelopeClient(options());
    const second = new KmsEnvelopeClient({ ...options(), store: first.store });
    try {
      const kek = await first.createIndex('orders', { slot: 'dev' });
      expect(process.env[name]).toBeUndefined();
      const unwrapped = await second.unwrap('orders');
      expect(unwrapped.equals(kek)).toBe(true);
      unwrapped.zero();
      kek.zero();
      forgetEnvSecrets(process.env, [name]);
      const third = new KmsEnvelopeClient({ ...options(), store: StorageConfig.memory() });
      const err = await third.createIndex('orders', { slot: 'dev' }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ConfigError);
      expect((err as Error).message).toMatch(new RegExp(`${name} is not set`));
      for (const form of ['hex', 'base64', 'base64url'] as const) {
        expect(String(err)).not.toContain(master.toString(form));
      }
      await third.close();
    } finally {
      forgetEnvSecrets(process.env, [name]);
      delete process.env[name];
      await second.close();
      await first.close().catch(() => {});
    }
  });

  it('reads file: only under an allowed prefix, after resolving symlinks', async () => {
    const allowed = mkdtempSync(join(tmpdir(), 'ke-allowed-'));
    const outside = mkdtempSync(join(tmpdir(), 'ke-outside-'));
    writeFileSync(join(allowed, 'k'), key.toString('hex'), { mode: 0o600 });
    writeFileSync(join(outside, 'k'), key.toString('hex'), { mode: 0o600 });
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
    writeFileSync(join(dir, 'master'), key, { mode: 0o400 });
    const env = { CREDENTIALS_DIRECTORY: dir };
    expect(await resolveSecretRef('secret:master', { env })).toEqual(key);
    await expect(resolveSecretRef('secret:../etc/passwd', { env })).rejects.toThrow(ConfigError);
    await expect(resolveSecretRef('secret:absent', { env })).rejects.toThrow(/not found/);
  });

  it('supports literal: (when allowed) and registered schemes, rejects unknown ones', async () => {
    expect(await resolveSecretRef('literal:abc', { allowLiteral: true })).toEqual(Buffer.from('abc'));
    registerSecretScheme('test-vault', (rest) => Buffer.from(`vault:${rest}`));
    expect((await resolveSecretRef('test-vault:x')).toString()).toBe('vault:x');
    await expect(resolveSecretRef('nope:x')).rejects.toThrow(/unknown secret reference scheme/);
    await expect(resolveSecretRef('no-scheme')).rejects.toThrow(ConfigError);
    expect(() => registerSecretScheme('env', () => Buffer.alloc(0))).toThrow(ConfigError);
  });
});

describe('decodeKeyMaterial', () => {
  it('accepts raw, hex, base64 and base64url forms of exactly the length', () => {
    for (const form of keyForms) expect(decodeKeyMaterial(form, 32, 'k')).toEqual(key);
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

describe('literal: references', () => {
  it('are refused unless the caller opts in, and the error says how without echoing the value', async () => {
    const value = key.toString('base64url');
    for (const options of [{}, { allowLiteral: false }]) {
      const err = await resolveSecretRef(`literal:${value}`, options).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ConfigError);
      expect((err as ConfigError).code).toBe('KMS_ENVELOPE_CONFIG');
      expect((err as Error).message).toMatch(/allowLiteral: true/);
      expect((err as Error).message).toMatch(/env:NAME, file:\/abs\/path or secret:name/);
      expect((err as Error).message).not.toContain(value);
      expect(JSON.stringify(err)).not.toContain(value);
    }
    expect(
      decodeKeyMaterial(await resolveSecretRef(`literal:${value}`, { allowLiteral: true }), 32, 'k'),
    ).toEqual(key);
  });

  it('are not suggested by the message for a reference without a scheme', async () => {
    await expect(resolveSecretRef('no-scheme')).rejects.toThrow(/^(?!.*literal).*env:NAME/);
  });
});

/** True when `buf` owns its memory (not a slice of Node's shared Buffer pool or any other). */
const unpooled = (buf: Buffer) => buf.byteOffset === 0 && buf.buffer.byteLength === buf.length;

describe('key hygiene', () => {
  afterEach(() => vi.restoreAllMocks());

  it('decodeKeyMaterial returns every form in a buffer of its own, never a pool slice', () => {
    for (const form of keyForms) {
      const out = decodeKeyMaterial(form, 32, 'k');
      expect(out).toEqual(key);
      expect(unpooled(out)).toBe(true);
      expect(out.buffer).not.toBe(form.buffer);
    }
  });

  it('env: and literal: bytes are not slices of the shared pool', async () => {
    const env: NodeJS.ProcessEnv = { K: key.toString('hex') };
    expect(unpooled(await resolveSecretRef('env:K', { env }))).toBe(true);
    expect(unpooled(await resolveSecretRef(`literal:${key.toString('hex')}`, { allowLiteral: true }))).toBe(
      true,
    );
  });

  it('decodeKeyMaterial decodes key text without making a JS string of it', () => {
    const bufferToString = vi.spyOn(Buffer.prototype, 'toString');
    const forms = [key.toString('hex'), key.toString('base64'), `${key.toString('base64url')}\n`];
    const texts = forms.map((form) => Buffer.from(form));
    bufferToString.mockClear();
    for (const text of texts) expect(decodeKeyMaterial(text, 32, 'k')).toEqual(key);
    expect(bufferToString).not.toHaveBeenCalled();
  });

  it('decodes like Node for any key in any accepted text form, and refuses other lengths', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 1, maxLength: 64 }),
        fc.constantFrom('hex', 'base64', 'base64url'),
        fc.constantFrom('', ' ', '\n', '\r\n', '\t'),
        (bytes, encoding, space) => {
          const raw = Buffer.from(bytes);
          const text = Buffer.from(`${space}${raw.toString(encoding as BufferEncoding)}${space}`);
          // Text that is also hex of the same length reads as hex (documented; only a 1-byte
          // value in unpadded base64url can be both).
          const hex =
            /^[0-9a-fA-F]*$/.test(text.toString().trim()) && text.toString().trim().length === raw.length * 2;
          const expected = hex ? Buffer.from(text.toString().trim(), 'hex') : raw;
          if (text.length !== raw.length) expect(decodeKeyMaterial(text, raw.length, 'k')).toEqual(expected);
          const other = raw.length === 32 ? 31 : 32;
          if (text.length !== other) expect(() => decodeKeyMaterial(text, other, 'k')).toThrow(ConfigError);
        },
      ),
    );
    for (const bad of [
      '',
      '====',
      `${key.toString('base64').slice(0, 20)}!${key.toString('base64').slice(21)}`,
    ]) {
      expect(() => decodeKeyMaterial(Buffer.from(bad), 32, 'k')).toThrow(ConfigError);
    }
  });
});

describe('key file permissions', () => {
  const keyFile = (mode: number) => {
    const dir = mkdtempSync(join(tmpdir(), 'ke-mode-'));
    const path = join(dir, 'master');
    writeFileSync(path, key.toString('base64'));
    chmodSync(path, mode); // explicit: writeFileSync's mode is filtered by the umask
    return { dir, path };
  };

  it('file: accepts 0600 and 0400 and refuses any group or other read or write bit', async () => {
    for (const mode of [0o600, 0o400]) {
      const { dir, path } = keyFile(mode);
      expect(
        decodeKeyMaterial(await resolveSecretRef(`file:${path}`, { allowedFilePrefixes: [dir] }), 32, 'k'),
      ).toEqual(key);
    }
    for (const mode of [0o644, 0o640, 0o604, 0o620, 0o602, 0o666]) {
      const { dir, path } = keyFile(mode);
      const err = await resolveSecretRef(`file:${path}`, { allowedFilePrefixes: [dir] }).catch(
        (e: unknown) => e,
      );
      expect(err, `mode 0${mode.toString(8)}`).toBeInstanceOf(ConfigError);
      expect((err as Error).message).toMatch(/(readable|writable) by group or others .*refused; chmod 600/);
      expect((err as Error).message).not.toContain(key.toString('base64'));
    }
  });

  it('secret: refuses a group- or world-writable file, and a readable one not owned by root', async () => {
    for (const mode of [0o666, 0o620, 0o602]) {
      const { dir } = keyFile(mode);
      await expect(
        resolveSecretRef('secret:master', { env: { CREDENTIALS_DIRECTORY: dir } }),
      ).rejects.toThrow(/writable by group or others/);
    }
    const { dir, path } = keyFile(0o644);
    if (process.getuid?.() === 0) chownSync(path, 12345, 12345);
    await expect(resolveSecretRef('secret:master', { env: { CREDENTIALS_DIRECTORY: dir } })).rejects.toThrow(
      /readable by group or others/,
    );
  });

  it.skipIf(process.getuid?.() !== 0)(
    'secret: accepts a root-owned world-readable file, as Docker (0444) and Kubernetes (0644) mount them',
    async () => {
      for (const mode of [0o444, 0o644]) {
        const { dir } = keyFile(mode);
        const bytes = await resolveSecretRef('secret:master', { env: { CREDENTIALS_DIRECTORY: dir } });
        expect(decodeKeyMaterial(bytes, 32, 'k')).toEqual(key);
      }
    },
  );
});
