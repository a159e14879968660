/**
 * The package as npm users get it: `npm pack`, then the tarball installed into a fresh consumer
 * project with no optional peer, checked as ESM, as CommonJS (`require`), as TypeScript
 * (`node16`, `bundler` and CommonJS `nodenext`, `skipLibCheck: false`), for what `import
 * 'kms-envelope'` loads, and bundled with esbuild. Needs the npm registry or a warm npm cache (the
 * consumer installs typescript, @types/node and esbuild with `--prefer-offline`), never Docker.
 */
import { type ExecFileSyncOptions, execFile, execFileSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BUNDLED_APP_OUTPUT, bundledAppSource } from './bundled-app.js';

const root = new URL('../..', import.meta.url).pathname;
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as {
  exports: Record<string, unknown>;
  dependencies: Record<string, string>;
  peerDependencies: Record<string, string>;
  devDependencies: Record<string, string>;
  engines: { node: string };
  scripts: Record<string, string>;
};
const entries = Object.keys(pkg.exports)
  .filter((subpath) => subpath !== './package.json')
  .map((subpath) => (subpath === '.' ? 'kms-envelope' : `kms-envelope/${subpath.slice(2)}`));
const installed = (name: string): string =>
  JSON.parse(execFileSync('npm', ['ls', name, '--json', '--depth=0'], { cwd: root, encoding: 'utf8' }))
    .dependencies[name].version;

let dir: string;
let app: string;

function run(cmd: string, args: readonly string[], options: ExecFileSyncOptions = {}): string {
  return execFileSync(cmd, args, { cwd: app, encoding: 'utf8', stdio: 'pipe', ...options }) as string;
}

function newest(path: string): number {
  let time = 0;
  for (const name of readdirSync(path, { recursive: true, encoding: 'utf8' })) {
    if (name.endsWith('.ts')) time = Math.max(time, statSync(join(path, name)).mtimeMs);
  }
  return time;
}

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'kms-envelope-consumer-'));
  app = join(dir, 'app');
  mkdirSync(app);
  // `prepack` builds dist; the build is skipped when dist is newer than every source (CI has just
  // built it), since a cold tsc run is most of this test's time.
  const distTime = existsSync(join(root, 'dist/src/index.js'))
    ? statSync(join(root, 'dist/src/index.js')).mtimeMs
    : 0;
  // A dist made by tsc alone (not `npm run build`) still has the CLI's modules unbundled.
  const fresh =
    distTime > Math.max(newest(join(root, 'src')), newest(join(root, 'providers'))) &&
    !existsSync(join(root, 'dist/src/cli/main.js'));
  const packArgs = ['pack', '--pack-destination', dir, ...(fresh ? ['--ignore-scripts'] : [])];
  const tarball = join(
    dir,
    execFileSync('npm', packArgs, { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
      .trim()
      .split('\n')
      .pop() ?? '',
  );
  writeFileSync(
    join(app, 'package.json'),
    JSON.stringify({ name: 'consumer', private: true, type: 'module' }),
  );
  run('npm', [
    'install',
    '--prefer-offline',
    '--no-audit',
    '--no-fund',
    tarball,
    `typescript@${installed('typescript')}`,
    `@types/node@${installed('@types/node')}`,
    `esbuild@${installed('esbuild')}`,
  ]);
}, 120_000);

afterAll(() => rmSync(dir, { recursive: true, force: true }));

it('ships prepack, a LICENSE and dist, and no optional peer is installed with it', () => {
  expect(pkg.scripts.prepack).toContain('build');
  const shipped = readdirSync(join(app, 'node_modules/kms-envelope'));
  expect(shipped).toEqual(expect.arrayContaining(['dist', 'LICENSE', 'README.md', 'package.json']));
  for (const peer of Object.keys(pkg.peerDependencies)) {
    expect(existsSync(join(app, 'node_modules', peer)), peer).toBe(false);
  }
});

it('every entry imports as ESM and requires as CommonJS, with no peer installed', () => {
  const list = JSON.stringify(entries);
  writeFileSync(
    join(app, 'import-all.mjs'),
    `for (const e of ${list}) { const m = await import(e); if (Object.keys(m).length === 0) throw new Error(e); }\nconsole.log('ok');`,
  );
  writeFileSync(
    join(app, 'require-all.cjs'),
    `for (const e of ${list}) { const m = require(e); if (Object.keys(m).length === 0) throw new Error(e); }\nconsole.log('ok');`,
  );
  expect(run('node', ['import-all.mjs']).trim()).toBe('ok');
  expect(run('node', ['require-all.cjs']).trim()).toBe('ok');
  // require(esm) is on by default from Node 20.19 and 22.12: engines says so.
  expect(pkg.engines.node).toBe('^20.19.0 || >=22.12.0');
});

it("import 'kms-envelope' loads neither the CLI's modules nor yaml; yaml is loaded by the first slots file", () => {
  writeFileSync(
    join(app, 'record-hooks.mjs'),
    `import { appendFileSync } from 'node:fs';
export async function resolve(specifier, context, next) {
  const result = await next(specifier, context);
  appendFileSync(process.env.RESOLVED_LOG, result.url + '\\n');
  return result;
}`,
  );
  writeFileSync(
    join(app, 'register.mjs'),
    `import { register } from 'node:module'; register('./record-hooks.mjs', import.meta.url);`,
  );
  writeFileSync(
    join(app, 'loaded.mjs'),
    `import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
const { parseSlotsConfig } = await import('kms-envelope');
const cache = () => Object.keys(createRequire(import.meta.url).cache);
const resolved = () => readFileSync(process.env.RESOLVED_LOG, 'utf8').split('\\n');
const names = (list) => [...new Set(list.flatMap((p) => p.match(/node_modules\\/((@[^/]+\\/)?[^/]+)/)?.[1] ?? []))].sort();
const atImport = names([...cache(), ...resolved()]);
parseSlotsConfig('slots:\\n  dev:\\n    provider: none\\n');
console.log(JSON.stringify({ atImport, afterParse: names(cache()) }));`,
  );
  const log = join(dir, 'resolved.log');
  writeFileSync(log, '');
  const out = JSON.parse(
    run('node', ['--import', './register.mjs', 'loaded.mjs'], { env: { ...process.env, RESOLVED_LOG: log } }),
  );
  expect(out.atImport).toContain('kms-envelope');
  for (const cliOnly of ['commander', 'cli-progress', 'yaml']) expect(out.atImport).not.toContain(cliOnly);
  expect(out.afterParse).toContain('yaml');
});

describe('TypeScript with skipLibCheck: false', () => {
  const source = `import { DiskStore, type DiskStoreOptions, type DekState, KmsEnvelopeClient, MemoryStore, RedisStore,
  type RedisStoreOptions, StorageConfig, type WireParams } from 'kms-envelope';
import { plugin as local } from 'kms-envelope/providers/local';
import { startFakeAws, type FakeAws } from 'kms-envelope/testing';
const disk: DiskStoreOptions | undefined = undefined;
const redis: RedisStoreOptions | undefined = undefined;
const state: DekState = 'enabled';
const params: WireParams = {};
const stores: unknown[] = [DiskStore, MemoryStore, RedisStore, disk, redis, state, params];
export const client = new KmsEnvelopeClient({ store: StorageConfig.memory(), kms: { slots: { dev: { provider: 'none' } }, providers: { local: local.create } } });
export const fake: Promise<FakeAws> = startFakeAws();
export { stores };
`;
  const cases = [
    { name: 'node16', type: 'module', module: 'node16', moduleResolution: 'node16' },
    { name: 'bundler', type: 'module', module: 'esnext', moduleResolution: 'bundler' },
    // A CommonJS project: TS compiles the import to require(), which TS 5.8+ allows of an ES module
    // under nodenext (node16 reports TS1479, as the README says).
    { name: 'cjs-nodenext', type: 'commonjs', module: 'nodenext', moduleResolution: 'nodenext' },
  ];
  it.concurrent.each(cases)(
    '$name type-checks the main entry and kms-envelope/testing without @grpc/grpc-js',
    async (c) => {
      const project = join(app, `ts-${c.name}`);
      mkdirSync(project, { recursive: true });
      writeFileSync(join(project, 'package.json'), JSON.stringify({ type: c.type }));
      writeFileSync(join(project, 'index.ts'), source);
      writeFileSync(
        join(project, 'tsconfig.json'),
        JSON.stringify({
          compilerOptions: {
            target: 'ES2022',
            module: c.module,
            moduleResolution: c.moduleResolution,
            strict: true,
            skipLibCheck: false,
            noEmit: true,
            types: ['node'],
          },
          files: ['index.ts'],
        }),
      );
      const tsc = join(app, 'node_modules/typescript/bin/tsc');
      // tsc's diagnostics are on stdout; anything else that fails (a missing tsc) is shown too.
      const output = await promisify(execFile)('node', [tsc, '-p', project], { cwd: app }).then(
        ({ stdout, stderr }) => `${stdout}${stderr}`,
        (err: { stdout?: string; stderr?: string; message: string }) =>
          `${err.stdout ?? ''}${err.stderr ?? ''}` || err.message,
      );
      expect(output).toBe('');
    },
  );
});

describe('an app of the core and local, bundled with esbuild with no cloud SDK installed or marked external', () => {
  beforeAll(() => writeFileSync(join(app, 'app.js'), bundledAppSource()));
  const formats = [
    // esbuild's default for --platform=node.
    { name: 'CommonJS output, no options', out: 'app.cjs', flags: [] },
    // esbuild's ESM output needs its documented require shim for any CommonJS dependency
    // (opossum requires 'events'); that is esbuild's, not this package's, configuration.
    {
      name: 'ESM output with the createRequire banner',
      out: 'app.mjs',
      flags: [
        '--format=esm',
        "--banner:js=import { createRequire as bannerRequire } from 'node:module'; const require = bannerRequire(import.meta.url);",
      ],
    },
  ];
  it.each(formats)('$name: builds without a warning and runs from the bundle alone', ({ out, flags }) => {
    const bundled = join(dir, 'bundled');
    mkdirSync(bundled, { recursive: true });
    // Nothing external: the stores load pg and ioredis by computed specifiers too.
    const log = run(join(app, 'node_modules/.bin/esbuild'), [
      'app.js',
      '--bundle',
      '--platform=node',
      '--log-level=warning',
      ...flags,
      `--outfile=${join(bundled, out)}`,
    ]);
    expect(log).toBe('');
    const result = JSON.parse(run('node', [out], { cwd: bundled }));
    expect(result).toEqual(BUNDLED_APP_OUTPUT);
  });
});

describe('the kms-envelope bin, bundled: what only the CLI needs is not installed for library users', () => {
  // read: the prompt's package until it was replaced by node:readline; it must not come back.
  const cliOnly = ['commander', 'cli-progress', 'read'];

  it('commander and cli-progress are devDependencies, and no CLI-only package is in the installed tree', () => {
    for (const name of cliOnly) expect(pkg.dependencies[name], name).toBeUndefined();
    for (const name of ['commander', 'cli-progress']) expect(pkg.devDependencies[name], name).toBeDefined();
    // npm ls exits 1 on problems it finds (an extraneous package): read what it says either way.
    let listing: string;
    try {
      listing = run('npm', ['ls', '--all', '--json']);
    } catch (err) {
      listing = (err as { stdout: string }).stdout;
    }
    const names = new Set<string>();
    const walk = (deps: Record<string, { dependencies?: Record<string, unknown> }> = {}) => {
      for (const [name, dep] of Object.entries(deps)) {
        names.add(name);
        walk(dep.dependencies as Record<string, { dependencies?: Record<string, unknown> }>);
      }
    };
    walk(JSON.parse(listing).dependencies);
    expect(names).toContain('kms-envelope');
    expect(names).toContain('flatbuffers');
    for (const name of cliOnly) {
      expect(names.has(name), name).toBe(false);
      expect(existsSync(join(app, 'node_modules', name)), name).toBe(false);
    }
    // The bin is one file; the CLI's own modules are not shipped beside it.
    expect(readdirSync(join(app, 'node_modules/kms-envelope/dist/src/cli'))).toEqual(['bin.js']);
  });

  it('npx kms-envelope runs: --version, --help, a usage error, and create / get on disk with the local provider', () => {
    const npx = (args: readonly string[], env: Record<string, string> = {}) =>
      run('npx', ['--no-install', 'kms-envelope', ...args], { env: { ...process.env, ...env } });
    expect(npx(['--version']).trim()).toBe(
      JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).version,
    );
    const help = npx(['--help']);
    for (const command of ['create', 'get', 'rotate', 'delete', 'keygen', 'completion'])
      expect(help).toMatch(new RegExp(`^  ${command}\\b`, 'm'));
    let usage: { status: number; stderr: string } | undefined;
    try {
      npx(['--json', 'frobnicate']);
    } catch (err) {
      usage = err as { status: number; stderr: string };
    }
    expect(usage?.status).toBe(2);
    expect(JSON.parse(usage?.stderr ?? '')).toMatchObject({
      code: 'KMS_ENVELOPE_INVALID_ARGUMENT',
      exitCode: 2,
    });

    const master = { APP_MASTER: Buffer.alloc(32, 7).toString('base64url') };
    const flags = ['--store', `disk:${join(dir, 'cli-store')}`, '--provider', 'local', '--slot', 'dev'];
    const withKey = [...flags, '--master-key', 'env:APP_MASTER'];
    expect(npx([...withKey, 'create', 'orders'], master)).toMatch(/created envelope of "orders"/);
    const got = JSON.parse(npx([...withKey, '--json', 'get', 'orders'], master));
    expect(got).toMatchObject({ indexName: 'orders', kmsName: 'dev', provider: 'local', version: 1 });
    expect(npx([...withKey, 'verify', 'orders'], master)).toMatch(/^ok: "orders" version 1/);
  });
});
