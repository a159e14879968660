import { closeSync, fstatSync, openSync, readSync, realpathSync, type Stats } from 'node:fs';
import { isAbsolute, join, sep } from 'node:path';
import { ConfigError } from '../errors.js';

/**
 * Resolves secret references: where a secret value (a `local` master key, a caller-supplied KEK)
 * comes from, without the value ever appearing in configuration.
 *
 * | reference | meaning |
 * |---|---|
 * | `env:NAME` | the environment variable, removed from `process.env` once read and kept for the process (see {@link forgetEnvSecrets}) |
 * | `file:/abs/path` | a file under one of the allowed prefixes (symlinks resolved first) |
 * | `secret:name` | `$CREDENTIALS_DIRECTORY/name` (systemd), `/run/secrets/name`, `/var/run/secrets/name` |
 * | `literal:<text>` | the value itself: refused unless {@link SecretRefOptions.allowLiteral} (tests) |
 * | `<prefix>:…` | a plugin registered with {@link registerSecretScheme} |
 *
 * Security: a key file (`file:` and `secret:`) must not be writable by group or others (a local
 * user who can replace the master key chooses the KEKs of every index created afterwards), and a
 * `file:` must not be readable by group or others either: use mode 0600 or 0400. Such a file is
 * refused with a {@link ConfigError} before it is read, never just warned about. The one exception
 * is a `secret:` file owned by root, which may be group- or world-readable: that is how Docker
 * (0444) and Kubernetes (0644 by default) mount secrets into a container, and they are not the
 * caller's to chmod — reference those as `secret:name`, not `file:/run/secrets/name`. The check
 * uses the `fstat` of the opened file (no race with a rename) and is skipped on Windows, where
 * mode bits mean nothing. Key bytes are returned in buffers of their own (never a slice of
 * Node's shared `Buffer` pool), so wiping them wipes the only copy this module made; an `env:`
 * or `literal:` value was a JS string before it got here, which no code can wipe.
 *
 * @module
 */

/** Options for {@link resolveSecretRef}. */
export interface SecretRefOptions {
  /** Folders under which `file:` references may point. Defaults to {@link defaultSecretFilePrefixes}. */
  readonly allowedFilePrefixes?: readonly string[];
  /** Environment to read `env:` from (default `process.env`); the variable is deleted after reading. */
  readonly env?: NodeJS.ProcessEnv;
  /**
   * Accept `literal:` references (the secret written into the reference itself). Off by default:
   * a key in a config file, a command line or a test fixture that reached production is a key
   * in clear text in every copy of it. Tests and demos turn it on.
   */
  readonly allowLiteral?: boolean;
}

/** A plugin that resolves `scheme:rest` references to bytes. */
export type SecretSchemeResolver = (rest: string, options: SecretRefOptions) => Buffer | Promise<Buffer>;

const schemes = new Map<string, SecretSchemeResolver>();

/** Largest secret file read, in bytes (keys are tiny; anything larger is a misconfiguration). */
const MAX_SECRET_FILE_BYTES = 4096;

/**
 * Folders `file:` may read from by default: `/run/secrets`, `/var/run/secrets`,
 * `/etc/kms-envelope`, `$CREDENTIALS_DIRECTORY` and the `:`-separated `KMS_ENVELOPE_SECRET_DIRS`.
 */
export function defaultSecretFilePrefixes(env: NodeJS.ProcessEnv = process.env): string[] {
  const prefixes = ['/run/secrets', '/var/run/secrets', '/etc/kms-envelope'];
  if (env.CREDENTIALS_DIRECTORY) prefixes.push(env.CREDENTIALS_DIRECTORY);
  for (const dir of (env.KMS_ENVELOPE_SECRET_DIRS ?? '').split(':')) if (dir) prefixes.push(dir);
  return prefixes;
}

/**
 * Registers a plugin scheme (e.g. `vault:`). Built-in schemes cannot be replaced.
 * @throws ConfigError for an invalid or built-in scheme name.
 */
export function registerSecretScheme(scheme: string, resolver: SecretSchemeResolver): void {
  if (!/^[a-z][a-z0-9+.-]*$/.test(scheme) || ['env', 'file', 'secret', 'literal'].includes(scheme)) {
    throw new ConfigError(`cannot register secret scheme "${scheme}"`);
  }
  schemes.set(scheme, resolver);
}

function schemeOf(ref: string): [string, string] {
  const colon = ref.indexOf(':');
  if (colon <= 0) {
    throw new ConfigError('a secret reference must look like env:NAME, file:/abs/path or secret:name');
  }
  return [ref.slice(0, colon), ref.slice(colon + 1)];
}

/** Mode bits that let group or others write a file (replace the key) / read it. */
const SHARED_WRITE_BITS = 0o022;
const SHARED_READ_BITS = 0o044;

/**
 * Refuses a key file whose permissions let other local users replace or read it (see the module
 * documentation for the rule and why root-owned `secret:` files may be world-readable).
 */
function checkSecretFile(stat: Stats, scheme: 'file' | 'secret', shownAs: string): void {
  if (!stat.isFile()) throw new ConfigError(`secret file ${shownAs} is not a regular file`);
  if (process.platform === 'win32') return;
  const mode = `0${(stat.mode & 0o777).toString(8)}`;
  if ((stat.mode & SHARED_WRITE_BITS) !== 0) {
    throw new ConfigError(
      `secret file ${shownAs} is writable by group or others (mode ${mode}): refused; chmod 600 it`,
    );
  }
  const orchestratorMounted = scheme === 'secret' && stat.uid === 0;
  if ((stat.mode & SHARED_READ_BITS) !== 0 && !orchestratorMounted) {
    throw new ConfigError(
      `secret file ${shownAs} is readable by group or others (mode ${mode}): refused; chmod 600 it` +
        (scheme === 'file' ? ' (a secret mounted by Docker or Kubernetes: reference it as secret:name)' : ''),
    );
  }
}

/**
 * Reads a key file, or returns `undefined` when it does not exist (so `secret:` can try the next
 * folder). Every other failure, a refused mode included, throws.
 */
function readSecretFile(path: string, scheme: 'file' | 'secret', shownAs: string): Buffer | undefined {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (cause) {
    const code = (cause as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    throw new ConfigError(`cannot open secret file ${shownAs}`, { cause });
  }
  try {
    const stat = fstatSync(fd);
    checkSecretFile(stat, scheme, shownAs);
    if (stat.size > MAX_SECRET_FILE_BYTES)
      throw new ConfigError(`secret file ${shownAs} is larger than a key file can be`);
    // Buffer.alloc, not allocUnsafe: its own zeroed memory, never a slice of the shared pool.
    const out = Buffer.alloc(stat.size);
    let read = 0;
    while (read < stat.size) {
      const n = readSync(fd, out, read, stat.size - read, read);
      if (n === 0) break;
      read += n;
    }
    return out.subarray(0, read);
  } finally {
    closeSync(fd);
  }
}

/** The UTF-8 bytes of `text` in a buffer of their own (`Buffer.from` would slice the shared pool). */
function unpooledUtf8(text: string): Buffer {
  const out = Buffer.allocUnsafeSlow(Buffer.byteLength(text, 'utf8'));
  out.write(text, 'utf8');
  return out;
}

/** `bytes` copied into a buffer of its own. */
function unpooledCopy(bytes: Uint8Array): Buffer {
  const out = Buffer.allocUnsafeSlow(bytes.length);
  out.set(bytes);
  return out;
}

/**
 * The bytes of every `env:` variable read so far, per environment object (`process.env`, or the
 * {@link SecretRefOptions.env} a caller passed): the variable is removed from the environment
 * on the first read, and every later read in the process (a second client, a CLI subcommand
 * that opens another) gets a copy of these bytes instead of "not set". A variable set again
 * (to a new value, or to the empty string, which reads as "not set") replaces what was kept.
 *
 * Why a copy is acceptable: removing the variable protects child processes and environment
 * dumps, not code in this process (which could read `process.env` before us). The copy lives in
 * a buffer of its own that this module never logs, returns only as a fresh copy, and zeroes on
 * {@link forgetEnvSecrets} or when the variable is set again; the JS string the value arrived
 * in cannot be wiped either way.
 */
const envReads = new WeakMap<NodeJS.ProcessEnv, Map<string, Buffer>>();

/**
 * Zeroes and drops what `env:` references read from `env` (default `process.env`): the named
 * variables only, or all of them. A later `env:` reference to a dropped variable fails with
 * "not set" (the variable was removed from the environment on its first read), unless it was set
 * again. Call it once every client that needs the secret has been created, to keep no copy of
 * it in this module.
 */
export function forgetEnvSecrets(env: NodeJS.ProcessEnv = process.env, names?: readonly string[]): void {
  const reads = envReads.get(env);
  if (reads === undefined) return;
  for (const name of names ?? [...reads.keys()]) {
    reads.get(name)?.fill(0);
    reads.delete(name);
  }
}

function underPrefix(path: string, prefixes: readonly string[]): boolean {
  return prefixes.some((prefix) => {
    let real: string;
    try {
      real = realpathSync(prefix);
    } catch {
      return false;
    }
    return path === real || path.startsWith(real.endsWith(sep) ? real : real + sep);
  });
}

/**
 * Resolves a secret reference to its raw bytes. The caller owns the returned buffer and should
 * wipe it (`fill(0)`) once it has made a key of it.
 *
 * @throws ConfigError naming the reference (never the value) when it cannot be resolved: unknown
 * scheme, unset variable, file outside the allowed prefixes, unreadable file, a key file that
 * group or others may write or (for `file:`) read, and `literal:` without `allowLiteral`.
 */
export async function resolveSecretRef(ref: string, options: SecretRefOptions = {}): Promise<Buffer> {
  const [scheme, rest] = schemeOf(ref);
  const env = options.env ?? process.env;
  switch (scheme) {
    case 'env': {
      const value = env[rest];
      let reads = envReads.get(env);
      if (value === undefined) {
        // Read (and removed) earlier in this process: a second client gets the same bytes.
        const kept = reads?.get(rest);
        if (kept !== undefined) return unpooledCopy(kept);
        throw new ConfigError(`environment variable ${rest} is not set`);
      }
      if (value === '') {
        // Set again, to nothing: that wins over what an earlier read kept, as any new value does.
        delete env[rest];
        forgetEnvSecrets(env, [rest]);
        throw new ConfigError(`environment variable ${rest} is not set`);
      }
      // Removed so child processes and later diagnostics never see it. (The string itself stays
      // in the heap until collected: environment values reach JS only as strings.)
      delete env[rest];
      const bytes = unpooledUtf8(value);
      if (reads === undefined) {
        reads = new Map();
        envReads.set(env, reads);
      }
      reads.get(rest)?.fill(0); // set again since the last read: the new value wins
      reads.set(rest, unpooledCopy(bytes));
      return bytes;
    }
    case 'file': {
      if (!isAbsolute(rest)) throw new ConfigError(`file: secret references need an absolute path: ${rest}`);
      let real: string;
      try {
        real = realpathSync(rest);
      } catch (cause) {
        throw new ConfigError(`secret file ${rest} does not exist`, { cause });
      }
      const prefixes = options.allowedFilePrefixes ?? defaultSecretFilePrefixes(env);
      if (!underPrefix(real, prefixes)) {
        throw new ConfigError(
          `secret file ${rest} is not under an allowed folder (${prefixes.join(', ')}); add its folder to KMS_ENVELOPE_SECRET_DIRS`,
        );
      }
      const bytes = readSecretFile(real, 'file', rest);
      if (bytes === undefined) throw new ConfigError(`secret file ${rest} does not exist`);
      return bytes;
    }
    case 'secret': {
      if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(rest) || rest.includes('..')) {
        throw new ConfigError(`invalid secret name "${rest}"`);
      }
      const dirs = [env.CREDENTIALS_DIRECTORY, '/run/secrets', '/var/run/secrets'].filter(
        (d): d is string => typeof d === 'string' && d !== '',
      );
      for (const dir of dirs) {
        const bytes = readSecretFile(join(dir, rest), 'secret', `secret:${rest}`);
        if (bytes !== undefined) return bytes;
      }
      throw new ConfigError(`secret "${rest}" not found in ${dirs.join(', ')}`);
    }
    case 'literal':
      if (options.allowLiteral !== true) {
        throw new ConfigError(
          'literal: secret references are refused: the key would sit in clear text in the configuration. ' +
            'Use env:NAME, file:/abs/path or secret:name; tests opt in with the secret option allowLiteral: true',
        );
      }
      return unpooledUtf8(rest);
    default: {
      const resolver = schemes.get(scheme);
      if (resolver === undefined) throw new ConfigError(`unknown secret reference scheme "${scheme}:"`);
      return resolver(rest, options);
    }
  }
}

/** Whitespace that may surround key text (space, tab, CR, LF, VT, FF). */
function isSpace(byte: number): boolean {
  return byte === 0x20 || (byte >= 0x09 && byte <= 0x0d);
}

/** The value of a hex digit, or -1. */
function hexValue(byte: number): number {
  if (byte >= 0x30 && byte <= 0x39) return byte - 0x30;
  if (byte >= 0x61 && byte <= 0x66) return byte - 0x57;
  if (byte >= 0x41 && byte <= 0x46) return byte - 0x37;
  return -1;
}

/** The value of a base64 or base64url digit (`+` and `-` are 62, `/` and `_` are 63), or -1. */
function base64Value(byte: number): number {
  if (byte >= 0x41 && byte <= 0x5a) return byte - 0x41;
  if (byte >= 0x61 && byte <= 0x7a) return byte - 0x47;
  if (byte >= 0x30 && byte <= 0x39) return byte + 4;
  if (byte === 0x2b || byte === 0x2d) return 62;
  if (byte === 0x2f || byte === 0x5f) return 63;
  return -1;
}

function decodeHex(text: Uint8Array, length: number): Buffer | undefined {
  if (text.length !== length * 2) return undefined;
  for (const byte of text) if (hexValue(byte) < 0) return undefined;
  const out = Buffer.allocUnsafeSlow(length);
  for (let i = 0; i < length; i++)
    out[i] = (hexValue(text[2 * i] ?? 0) << 4) | hexValue(text[2 * i + 1] ?? 0);
  return out;
}

function decodeBase64(text: Uint8Array, length: number): Buffer | undefined {
  let digits = text.length;
  while (digits > 0 && text.length - digits < 2 && text[digits - 1] === 0x3d) digits--;
  if (digits === 0 || Math.floor((digits * 6) / 8) !== length) return undefined;
  for (let i = 0; i < digits; i++) if (base64Value(text[i] ?? 0) < 0) return undefined;
  const out = Buffer.allocUnsafeSlow(length);
  let bits = 0;
  let acc = 0;
  let o = 0;
  for (let i = 0; i < digits; i++) {
    acc = ((acc << 6) | base64Value(text[i] ?? 0)) & 0xffffff;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[o++] = (acc >> bits) & 0xff;
    }
  }
  return out;
}

/**
 * Interprets secret bytes as a key of `length` bytes: either exactly `length` raw bytes, or text
 * (surrounding whitespace ignored) in base64, base64url or hex that decodes to exactly `length`.
 * Text that is valid hex of `length` bytes is read as hex: the forms can only collide for a
 * 1-byte value (two base64url digits without padding), never for a key of 16 bytes or more.
 *
 * The key is returned in a buffer of its own (`buf.buffer.byteLength === length`, never a slice
 * of Node's shared `Buffer` pool, so wiping it leaves no copy behind), and the text is decoded
 * straight from `secret`'s bytes: no JS string of the key text is made. `secret` is not wiped:
 * it is the caller's.
 * @throws ConfigError (naming `what`, never the value) for anything else.
 */
export function decodeKeyMaterial(secret: Uint8Array, length: number, what: string): Buffer {
  if (secret.length === length) {
    const out = Buffer.allocUnsafeSlow(length);
    out.set(secret);
    return out;
  }
  let start = 0;
  let end = secret.length;
  while (start < end && isSpace(secret[start] ?? 0)) start++;
  while (end > start && isSpace(secret[end - 1] ?? 0)) end--;
  const text = secret.subarray(start, end);
  const decoded = decodeHex(text, length) ?? decodeBase64(text, length);
  if (decoded === undefined) {
    throw new ConfigError(
      `${what} must be ${length} bytes: raw, or base64/base64url/hex text of ${length} bytes (got ${secret.length} bytes that are neither)`,
    );
  }
  return decoded;
}
