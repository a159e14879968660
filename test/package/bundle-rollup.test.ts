/**
 * An app of the core and the `local` provider, bundled with rollup the way its documentation
 * bundles a Node app (`@rollup/plugin-node-resolve` and `@rollup/plugin-commonjs` with their
 * defaults, nothing marked external), with no cloud SDK or other optional peer installed; then the
 * bundle runs on its own, away from any node_modules, and creates and unwraps an index.
 *
 * The package is the repository built into a temporary folder (tsc, as `npm run build` does) and
 * laid out as npm installs it: its package.json (exports map) and dist, its runtime dependencies
 * beside it, and nothing else. test/package/consumer.test.ts does the same for esbuild from the
 * packed tarball.
 */
import { spawnSync } from 'node:child_process';
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import commonjsImport from '@rollup/plugin-commonjs';
import { nodeResolve } from '@rollup/plugin-node-resolve';
import { type RollupLog, rollup } from 'rollup';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BUNDLED_APP_OUTPUT, bundledAppSource } from './bundled-app.js';

const root = join(import.meta.dirname, '../..');
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as {
  dependencies: Record<string, string>;
  peerDependencies: Record<string, string>;
};

/** The plugin (its types are CommonJS-shaped under NodeNext: the function is their `default`). */
const commonjs = commonjsImport as unknown as typeof commonjsImport.default;

let dir: string;
let app: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'kms-envelope-rollup-'));
  app = join(dir, 'app');
  const installed = join(app, 'node_modules/kms-envelope');
  mkdirSync(installed, { recursive: true });
  // Type errors elsewhere in a work in progress still emit; a missing output fails below.
  spawnSync(
    process.execPath,
    [
      join(root, 'node_modules/typescript/bin/tsc'),
      '-p',
      join(root, 'tsconfig.build.json'),
      '--outDir',
      join(installed, 'dist'),
      '--declaration',
      'false',
    ],
    { cwd: root, encoding: 'utf8' },
  );
  expect(existsSync(join(installed, 'dist/src/index.js'))).toBe(true);
  cpSync(join(root, 'package.json'), join(installed, 'package.json'));
  // Runtime dependencies as npm would install them (their own dependencies resolve from where
  // they really are); no optional peer.
  for (const name of Object.keys(pkg.dependencies)) {
    mkdirSync(dirname(join(app, 'node_modules', name)), { recursive: true });
    symlinkSync(join(root, 'node_modules', name), join(app, 'node_modules', name), 'dir');
  }
  writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'app', private: true, type: 'module' }));
}, 120_000);

afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Bundles `source` with rollup's documented Node setup and no other option; returns its warnings. */
async function bundle(name: string, source: string, format: 'es' | 'cjs'): Promise<RollupLog[]> {
  writeFileSync(join(app, `${name}.js`), source);
  const warnings: RollupLog[] = [];
  const build = await rollup({
    input: join(app, `${name}.js`),
    plugins: [nodeResolve(), commonjs()],
    onwarn: (warning) => warnings.push(warning),
  });
  await build.write({ dir: join(dir, name), format });
  await build.close();
  // The bundle runs alone: its own folder, no node_modules anywhere above it.
  writeFileSync(
    join(dir, name, 'package.json'),
    JSON.stringify({ type: format === 'es' ? 'module' : 'commonjs' }),
  );
  return warnings;
}

/**
 * The warnings rollup may give: none. The stores import `pg` and `ioredis` by a computed
 * specifier (`importPeer`), so no bundler looks for them.
 */
const STORE_PEER_WARNINGS: string[] = [];

describe('an app of the core and local, bundled with rollup with no cloud SDK installed or marked external', () => {
  it('no optional peer is resolvable from the app', () => {
    const resolve = createRequire(join(app, 'app.js')).resolve;
    for (const peer of Object.keys(pkg.peerDependencies)) {
      expect(() => resolve(peer), peer).toThrow();
    }
  });

  const formats = [
    { name: 'esm', format: 'es' as const, topLevelAwait: true },
    { name: 'cjs', format: 'cjs' as const, topLevelAwait: false },
  ];
  it.each(formats)(
    '$format output: builds with no warning but the stores’ peers’, and runs from the bundle alone',
    async ({ name, format, topLevelAwait }) => {
      const warnings = await bundle(name, bundledAppSource(topLevelAwait), format);
      expect(warnings.map((w) => `${w.code} ${w.exporter ?? w.message}`).sort()).toEqual(STORE_PEER_WARNINGS);
      const run = spawnSync(process.execPath, [join(dir, name, `${name}.js`)], {
        cwd: join(dir, name),
        encoding: 'utf8',
        env: { ...process.env, NODE_NO_WARNINGS: '1' },
        timeout: 30_000,
      });
      expect(run.stderr).toBe('');
      expect(JSON.parse(run.stdout)).toEqual(BUNDLED_APP_OUTPUT);
      // Nothing of a cloud SDK went into the bundle; `local` did, as a chunk of its own.
      const chunks = readdirSync(join(dir, name)).filter((f) => f.endsWith('.js'));
      expect(chunks.some((f) => f.startsWith('local-'))).toBe(true);
      for (const chunk of chunks) {
        expect(readFileSync(join(dir, name, chunk), 'utf8'), chunk).not.toMatch(
          /@aws-sdk|@google-cloud|@azure\//,
        );
      }
    },
    60_000,
  );
});
