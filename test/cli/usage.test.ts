/**
 * What the CLI does with bad command lines and with `--json` / `--quiet`, run in this process
 * (./in-process.ts) except for one check of the real process's exit status.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ExitCode } from '../../src/cli/exit-codes.js';
import { localSlotFlags, runCli } from '../helpers/cli.js';
import { cli } from './in-process.js';

const dir = mkdtempSync(join(tmpdir(), 'ke-usage-'));
const base = localSlotFlags(`disk:${join(dir, 'store')}`);
const env = { DEV_MASTER: randomBytes(32).toString('base64url') };

const usageErrors: [string, string[], RegExp][] = [
  ['a typo of a command', ['creat', 'orders'], /unknown command 'creat'.*create/s],
  ['a typo of a subcommand', ['dek', 'lst', '--index', 'orders'], /unknown command 'lst'/],
  ['an unknown global option', ['--stroe', 'memory:', 'get', 'orders'], /unknown option '--stroe'/],
  ['an unknown option of a command', ['get', 'orders', '--bogus'], /unknown option '--bogus'/],
  [
    'an unknown option of a subcommand',
    ['dek', 'list', '--index', 'o', '--bogus'],
    /unknown option '--bogus'/,
  ],
  [
    'an unknown option of keygen recipient',
    ['keygen', 'recipient', '--out', 'k', '--force'],
    /unknown option '--force'/,
  ],
  ['a missing argument', ['get'], /missing required argument 'index'/],
  [
    'a missing argument of a subcommand',
    ['dek', 'deactivate', '--index', 'o'],
    /missing required argument 'id'/,
  ],
  ['a missing required option', ['encrypt'], /required option '--index <name>' not specified/],
  ['a missing --out', ['keygen', 'recipient'], /required option '--out <file>' not specified/],
  ['no command at all', [], /./],
  ['a bad index name', ['get', '../etc'], /index name "\.\.\/etc" is not allowed/],
  ['a bad --index', ['dek', 'list', '--index', 'a b'], /index name "a b" is not allowed/],
  ['a bad slot name', ['--slot', 'no/slash', 'get', 'orders'], /slot name "no\/slash" is not allowed/],
  ['a DEK id that is no UUID', ['dek', 'deactivate', 'nope', '--index', 'o'], /not a UUID/],
  ['a threshold below 2', ['create', 'orders', '--threshold', '1'], /--threshold must be a whole number ≥ 2/],
  ['a threshold in exponent form', ['create', 'orders', '--threshold', '2e0'], /whole number/],
  ['a deadline of 0', ['doctor', 'dev', '--deadline', '0'], /--deadline must be a whole number ≥ 1/],
  ['a deadline that is not a number', ['doctor', 'dev', '--deadline', '10s'], /--deadline must be/],
  ['a Redis prefix with a brace', ['--redis-prefix', 'a{b', 'get', 'orders'], /\{/],
  ['--context without =', ['create', 'orders', '--context', 'tenant'], /takes key=value/],
  ['an unknown provider', ['--provider', 'vault', 'get', 'orders'], /Allowed choices are none, local/],
  [
    'an unknown recipient kind',
    ['keygen', 'recipient', '--kind', 'rsa', '--out', 'k'],
    /Allowed choices are x25519/,
  ],
  ['an unknown shell', ['completion', 'tcsh'], /Allowed choices are bash, zsh, fish/],
  [
    '--redis-prefix on a disk store',
    ['--redis-prefix', 'x:', 'get', 'orders'],
    /--redis-prefix is for a Redis store/,
  ],
  ['two --slot for a one-slot command', ['--slot', 'a', '--slot', 'b', 'doctor'], /doctor takes one --slot/],
  [
    'a threshold above the slots',
    [...base, 'create', 'orders', '--threshold', '2'],
    /needs at least 2 --slot/,
  ],
];

describe('kms-envelope usage errors exit 2, in text and as JSON', () => {
  it.each(usageErrors)('%s', async (_name, args, message) => {
    const text = await cli(args, env);
    expect(text.code, text.stderr).toBe(ExitCode.usage);
    expect(text.stdout).toBe('');
    expect(text.stderr).toMatch(message);
    expect(text.stderr).not.toMatch(/\n\s+at /); // no stack trace

    const json = await cli(['--json', ...args], env);
    expect(json.code).toBe(ExitCode.usage);
    expect(json.stdout).toBe('');
    // stderr holds the one error object and nothing of commander's usage text.
    expect(json.stderr.trimEnd().split('\n')).toHaveLength(1);
    const report = JSON.parse(json.stderr) as Record<string, unknown>;
    expect(Object.keys(report).sort()).toEqual(['code', 'exitCode', 'message']);
    expect(report).toMatchObject({ code: 'KMS_ENVELOPE_INVALID_ARGUMENT', exitCode: 2 });
    if (args.length > 0) expect(report.message).toMatch(message);
  });

  it('the process itself exits 2 on an unknown option of a subcommand (commander would exit 1)', () => {
    const out = runCli(['dek', 'list', '--index', 'orders', '--bogus']);
    expect(out.code).toBe(ExitCode.usage);
    expect(out.stderr).toMatch(/unknown option '--bogus'/);
    const json = runCli(['--json', 'get', 'orders', 'extra']);
    expect(json.code).toBe(ExitCode.usage);
    expect(JSON.parse(json.stderr)).toMatchObject({ code: 'KMS_ENVELOPE_INVALID_ARGUMENT', exitCode: 2 });
  });

  it('--help and --version exit 0 with their text on stdout', async () => {
    expect(await cli(['--version'])).toMatchObject({ code: 0, stdout: '0.1.0\n', stderr: '' });
    const help = await cli(['dek', 'list', '--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/Usage: kms-envelope dek list \[options\]/);
    // The global options are listed in every command's help.
    expect(help.stdout).toMatch(/Global Options:[\s\S]*--json[\s\S]*--quiet/);
  });
});

describe('kms-envelope errors other than usage, with --json', () => {
  it('a missing envelope is exit 3, as text or as one JSON object; no stack', async () => {
    const text = await cli([...base, 'get', 'nothing'], env);
    expect(text.code).toBe(ExitCode.notFound);
    expect(text.stderr).toMatch(/^kms-envelope: .*nothing/);
    const json = await cli([...base, '--json', 'get', 'nothing'], env);
    expect(json.code).toBe(ExitCode.notFound);
    expect(JSON.parse(json.stderr)).toEqual({
      code: 'KMS_ENVELOPE_NOT_FOUND',
      message: expect.stringContaining('nothing'),
      exitCode: ExitCode.notFound,
    });
  });

  it('migrate of a missing file is a usage error naming the file, before the store is opened', async () => {
    const missing = join(dir, 'no-such-values.txt');
    const out = await cli([...base, 'migrate', missing, '--index', 'never-created'], env);
    expect(out.code).toBe(ExitCode.usage);
    expect(out.stderr).toBe(`kms-envelope: cannot read ${missing}: no such file\n`);
    const folder = await cli([...base, '--json', 'migrate', dir, '--index', 'never-created'], env);
    expect(JSON.parse(folder.stderr)).toMatchObject({ message: `cannot read ${dir}: a folder`, exitCode: 2 });
  });

  it('doctor --json of a bad slot: the report on stdout, the error object on stderr', async () => {
    const out = await cli([...base, '--json', 'doctor', 'prod'], env);
    expect(out.code).toBe(ExitCode.config);
    expect(JSON.parse(out.stdout)).toMatchObject({ ok: false });
    expect(JSON.parse(out.stderr)).toMatchObject({ code: 'KMS_ENVELOPE_CONFIG', exitCode: ExitCode.config });
  });
});

describe('kms-envelope --json on every command, camelCase keys', () => {
  it('create, get, verify, rotate, dek, rotate-kek, migrate, inspect, delete print JSON that parses', async () => {
    const run = async (args: string[]) => {
      const out = await cli([...base, '--json', ...args], env);
      expect(out.code, `${args.join(' ')}: ${out.stderr}`).toBe(0);
      expect(out.stderr).toBe('');
      return out.stdout;
    };
    const created = JSON.parse(await run(['create', 'jsonidx', '--context', 'tenant=acme', '--reveal']));
    expect(created).toMatchObject({
      indexName: 'jsonidx',
      kmsName: 'dev',
      version: 1,
      encryptionContext: { tenant: 'acme' },
    });
    expect(created.kek).toMatch(/^[A-Za-z0-9_-]{43}$/); // --reveal puts the key in the object, not after it
    const keys = (value: unknown): string[] =>
      value && typeof value === 'object'
        ? // encryptionContext's keys are the user's own, not the CLI's.
          Object.entries(value).flatMap(([k, v]) => [k, ...(k === 'encryptionContext' ? [] : keys(v))])
        : [];
    for (const key of keys(JSON.parse(await run(['get', 'jsonidx']))))
      expect(key).toMatch(/^[a-z][A-Za-z0-9]*$/);
    expect(JSON.parse(await run(['verify', 'jsonidx']))).toMatchObject({
      index: 'jsonidx',
      ok: true,
      kekCheck: true,
    });
    expect(JSON.parse(await run(['rotate', 'jsonidx']))).toMatchObject({ version: 2 });
    const dek = JSON.parse(await run(['dek', 'create', '--index', 'jsonidx']));
    expect(dek).toMatchObject({
      index: 'jsonidx',
      active: true,
      id: expect.stringMatching(/^[0-9a-f-]{36}$/),
    });
    expect(JSON.parse(await run(['dek', 'list', '--index', 'jsonidx']))).toMatchObject([
      { id: dek.id, active: true },
    ]);
    expect(JSON.parse(await run(['rotate-kek', '--index', 'jsonidx', '--dry-run']))).toMatchObject({
      dryRun: true,
    });
    const values = join(dir, 'json-values.txt');
    writeFileSync(values, 'one\ntwo\n');
    const migrated = (await run(['migrate', values, '--index', 'jsonidx']))
      .trimEnd()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(migrated).toEqual([
      { kind: 'plaintext', value: expect.stringMatching(/^\$A256GCM\$/) },
      { kind: 'plaintext', value: expect.stringMatching(/^\$A256GCM\$/) },
    ]);
    const blobs = join(dir, 'store', 'jsonidx', 'kmsblob');
    const file = join(blobs, readdirSync(blobs).find((f) => f.endsWith('.kmsb'))!);
    expect(JSON.parse(await run(['inspect', file]))).toMatchObject({ indexName: 'jsonidx' });
    expect(JSON.parse(await run(['completion', 'bash']))).toMatchObject({ shell: 'bash' });
    expect(JSON.parse(await run(['doctor']))).toMatchObject({ ok: true });
    const demo = JSON.parse(await run(['demo', '--dir', join(dir, 'demo')]));
    expect(demo).toMatchObject({
      ok: true,
      lines: expect.arrayContaining(['5. delete: remove the envelope (idempotent)']),
    });
    expect(JSON.parse(await run(['delete', 'jsonidx']))).toMatchObject({ index: 'jsonidx', deleted: true });
  });
});

describe('kms-envelope delete of a missing index, and --quiet', () => {
  it('delete says there was nothing to delete, exits 0 (idempotent), and --json says deleted: false', async () => {
    const text = await cli([...base, 'delete', 'orders-missing'], env);
    expect(text).toMatchObject({
      code: 0,
      stdout: 'orders-missing: no envelope (nothing to delete)\n',
      stderr: '',
    });
    const json = await cli([...base, '--json', 'delete', 'orders-missing'], env);
    expect(json.code).toBe(0);
    expect(JSON.parse(json.stdout)).toMatchObject({
      index: 'orders-missing',
      deleted: false,
      recordsDeleted: 0,
    });

    expect((await cli([...base, 'create', 'kept'], env)).code).toBe(0);
    expect((await cli([...base, 'dek', 'create', '--index', 'kept'], env)).code).toBe(0);
    expect((await cli([...base, 'delete', 'kept', '--keep-records'], env)).stdout).toMatch(/records kept/);
    // No envelope, but its records were kept: they go now, and the message says so.
    const leftovers = await cli([...base, 'delete', 'kept'], env);
    expect(leftovers.stdout).toMatch(/^kept: no envelope; deleted \d+ records left by an earlier delete$/m);
    expect((await cli([...base, 'delete', 'kept'], env)).stdout).toBe(
      'kept: no envelope (nothing to delete)\n',
    );
  });

  it('--quiet drops the information on stderr and keeps the results', async () => {
    expect((await cli([...base, 'create', 'quiet'], env)).code).toBe(0);
    expect((await cli([...base, 'dek', 'create', '--index', 'quiet'], env)).code).toBe(0);
    const values = join(dir, 'quiet-values.txt');
    writeFileSync(values, 'a\nb\nc\n');
    const loud = await cli([...base, 'migrate', values, '--index', 'quiet'], env);
    expect(loud.stderr).toMatch(/^migrated 3 values: 3 plaintext encrypted/);
    for (const flag of ['--quiet', '-q']) {
      const quiet = await cli([...base, flag, 'migrate', values, '--index', 'quiet'], env);
      expect(quiet.code).toBe(0);
      expect(quiet.stderr).toBe('');
      expect(quiet.stdout.trimEnd().split('\n')).toHaveLength(3);
    }
    // Errors are not information: --quiet keeps them.
    const failed = await cli([...base, '--quiet', 'get', 'nothing'], env);
    expect(failed.code).toBe(ExitCode.notFound);
    expect(failed.stderr).toMatch(/kms-envelope: /);
  });
});
