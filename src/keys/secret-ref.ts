import { closeSync, fstatSync, openSync, readSync, realpathSync } from 'node:fs';
import { isAbsolute, join, sep } from 'node:path';
import { ConfigError } from '../errors.js';

/**
 * Resolves secret references: where a secret value (a `local` master key, a caller-supplied KEK)
 * comes from, without the value ever appearing in configuration.
 *
 * | reference | meaning |
 * |---|---|
 * | `env:NAME` | the environment variable, which is then removed from `process.env` |
 * | `file:/abs/path` | a file under one of the allowed prefixes (symlinks resolved first) |
 * | `secret:name` | `$CREDENTIALS_DIRECTORY/name` (systemd), `/run/secrets/name`, `/var/run/secrets/name` |
 * | `literal:<base64>` | the value itself, for tests only |
 * | `<prefix>:…` | a plugin registered with {@link registerSecretScheme} |
 *
 * @module
 */

/** Options for {@link resolveSecretRef}. */
export interface SecretRefOptions {
  /** Folders under which `file:` references may point. Defaults to {@link defaultSecretFilePrefixes}. */
  readonly allowedFilePrefixes?: readonly string[];
  /** Environment to read `env:` from (default `process.env`); the variable is deleted after reading. */
  readonly env?: NodeJS.ProcessEnv;
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
    throw new ConfigError('a secret reference must look like env:NAME, file:/path, secret:name or literal:…');
  }
  return [ref.slice(0, colon), ref.slice(colon + 1)];
}

function readSecretFile(path: string, shownAs: string): Buffer {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (cause) {
    throw new ConfigError(`cannot open secret file ${shownAs}`, { cause });
  }
  try {
    const size = fstatSync(fd).size;
    if (size > MAX_SECRET_FILE_BYTES)
      throw new ConfigError(`secret file ${shownAs} is larger than a key file can be`);
    const out = Buffer.alloc(size);
    let read = 0;
    while (read < size) {
      const n = readSync(fd, out, read, size - read, read);
      if (n === 0) break;
      read += n;
    }
    return out.subarray(0, read);
  } finally {
    closeSync(fd);
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
 * scheme, unset variable, file outside the allowed prefixes, unreadable file.
 */
export async function resolveSecretRef(ref: string, options: SecretRefOptions = {}): Promise<Buffer> {
  const [scheme, rest] = schemeOf(ref);
  const env = options.env ?? process.env;
  switch (scheme) {
    case 'env': {
      const value = env[rest];
      if (value === undefined || value === '')
        throw new ConfigError(`environment variable ${rest} is not set`);
      // Removed so child processes and later diagnostics never see it.
      delete env[rest];
      return Buffer.from(value, 'utf8');
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
      return readSecretFile(real, rest);
    }
    case 'secret': {
      if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(rest) || rest.includes('..')) {
        throw new ConfigError(`invalid secret name "${rest}"`);
      }
      const dirs = [env.CREDENTIALS_DIRECTORY, '/run/secrets', '/var/run/secrets'].filter(
        (d): d is string => typeof d === 'string' && d !== '',
      );
      for (const dir of dirs) {
        try {
          return readSecretFile(join(dir, rest), `secret:${rest}`);
        } catch {
          // try the next folder
        }
      }
      throw new ConfigError(`secret "${rest}" not found in ${dirs.join(', ')}`);
    }
    case 'literal':
      return Buffer.from(rest, 'utf8');
    default: {
      const resolver = schemes.get(scheme);
      if (resolver === undefined) throw new ConfigError(`unknown secret reference scheme "${scheme}:"`);
      return resolver(rest, options);
    }
  }
}

/**
 * Interprets secret bytes as a key of `length` bytes: either exactly `length` raw bytes, or text
 * (surrounding whitespace ignored) in base64, base64url or hex that decodes to exactly `length`.
 * Wipes intermediate copies.
 * @throws ConfigError (naming `what`, never the value) for anything else.
 */
export function decodeKeyMaterial(secret: Buffer, length: number, what: string): Buffer {
  if (secret.length === length) return Buffer.from(secret);
  const text = secret.toString('latin1').trim();
  let decoded: Buffer | undefined;
  if (/^[0-9a-fA-F]+$/.test(text) && text.length === length * 2) {
    decoded = Buffer.from(text, 'hex');
  } else if (/^[A-Za-z0-9+/_-]+={0,2}$/.test(text)) {
    decoded = Buffer.from(text.replace(/-/g, '+').replace(/_/g, '/'), 'base64');
  }
  if (decoded === undefined || decoded.length !== length) {
    decoded?.fill(0);
    throw new ConfigError(
      `${what} must be ${length} bytes: raw, or base64/base64url/hex text of ${length} bytes (got ${secret.length} bytes that are neither)`,
    );
  }
  return decoded;
}
