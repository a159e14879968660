/**
 * What the cloud providers share: optional SDK loading, the binding as encryption context,
 * Retry-After parsing — and the rule that the core imports no cloud SDK.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import { InvalidArgumentError, MissingDependencyError } from '../../src/errors.js';
import { parseIndexName, parseSlotName } from '../../src/names.js';
import { bindingEncryptionContext, importOptional, parseRetryAfter } from '../../src/providers/support.js';
import { repo } from '../helpers/cli.js';

describe('provider support', () => {
  it('a missing optional SDK is a MissingDependencyError naming the package to install', async () => {
    const err = await importOptional(
      '@aws-sdk/client-kms',
      'provider "aws-kms"',
      () =>
        // A package that is not installed: the same ERR_MODULE_NOT_FOUND a missing SDK gives.
        import(['kms-envelope', 'no-such-package'].join('-')),
    ).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(MissingDependencyError);
    expect((err as Error).message).toBe(
      'provider "aws-kms" needs the optional package "@aws-sdk/client-kms": npm install @aws-sdk/client-kms',
    );
    // Other failures while loading are not disguised as a missing package.
    const boom = new SyntaxError('broken module');
    await expect(importOptional('x', 'y', () => Promise.reject(boom))).rejects.toBe(boom);
  });

  it('the binding context carries index and slot; callers may not forge them', () => {
    const ctx = {
      index: parseIndexName('orders'),
      slot: parseSlotName('prod'),
      encryptionContext: { tenant: 't' },
    };
    expect(bindingEncryptionContext(ctx)).toEqual({
      'kms-envelope:index': 'orders',
      'kms-envelope:slot': 'prod',
      tenant: 't',
    });
    expect(() =>
      bindingEncryptionContext({ ...ctx, encryptionContext: { 'kms-envelope:slot': 'other' } }),
    ).toThrow(InvalidArgumentError);
  });

  it('parses Retry-After in seconds or as a date', () => {
    expect(parseRetryAfter('2')).toBe(2000);
    expect(parseRetryAfter('0')).toBe(0);
    expect(parseRetryAfter(undefined)).toBeUndefined();
    expect(parseRetryAfter('-1')).toBeUndefined();
    expect(parseRetryAfter('soon')).toBeUndefined();
    const now = Date.parse('2026-11-23T10:00:00Z');
    expect(parseRetryAfter('Mon, 23 Nov 2026 10:00:05 GMT', now)).toBe(5000);
  });

  it('no core file imports a cloud SDK; providers import theirs only as types or lazily', () => {
    const sdk =
      /^\s*import\s+(?!type\b)[^;]*?from\s+'(@aws-sdk|@google-cloud|@azure|@grpc|google-gax)[^']*'/m;
    const walk = (dir: string): string[] =>
      readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
        e.isDirectory() ? walk(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : [],
      );
    const offenders = [...walk(join(repo, 'src')), ...walk(join(repo, 'providers'))]
      .filter((file) => sdk.test(readFileSync(file, 'utf8')))
      .map((file) => relative(repo, file));
    expect(offenders).toEqual([]);
  });
});
