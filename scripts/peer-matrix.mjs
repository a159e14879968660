#!/usr/bin/env node
// Runs each provider's (and store's) tests against the oldest and the newest release that its
// optional peer range in package.json allows: each version is installed on its own into a
// temporary folder and the tests resolve the package from there (a Vite alias), so the
// checkout's node_modules is never changed.
//
//   node scripts/peer-matrix.mjs              every target
//   node scripts/peer-matrix.mjs aws-kms pg   some targets (see TARGETS)
//   PEER_MATRIX_KEEP=1 ...                    keep the temporary folders
//   PEER_MATRIX_ALL=1 ...                     also run the version the checkout has installed
//
// An install and a test run per version, so it is not part of `npm test`; `.ci/run` runs it after
// `npm test`, skipping each peer's version that the lockfile installs (npm test has just tested
// that one). It needs the npm registry or a warm cache.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));

/** What each target's tests exercise: the peers whose versions are varied, and the test files. */
const TARGETS = {
  aws: { peers: ['@aws-sdk/client-secrets-manager'], tests: ['test/providers/aws.test.ts'] },
  // aws-kms.test.ts also assumes a role through @aws-sdk/credential-providers.
  'aws-kms': {
    peers: ['@aws-sdk/client-kms', '@aws-sdk/credential-providers'],
    tests: ['test/providers/aws-kms.test.ts'],
  },
  'gcp-kms': {
    peers: ['@google-cloud/kms'],
    // The fake and the provider make gRPC credentials that the SDK checks with instanceof: they
    // must come from the same @grpc/grpc-js as the SDK's, as one npm install would give them.
    shared: ['@grpc/grpc-js'],
    tests: ['test/providers/gcp-kms.test.ts', 'test/providers/gcp-kms.fake.test.ts'],
  },
  'azure-kv': { peers: ['@azure/keyvault-keys'], tests: ['test/providers/azure-kv.test.ts'] },
  redis: { peers: ['ioredis'], tests: ['test/storage/redis.test.ts'] },
  postgres: { peers: ['pg'], tests: ['test/storage/postgres.test.ts'] },
  opentelemetry: { peers: ['@opentelemetry/api'], tests: ['test/unwrap/opentelemetry.test.ts'] },
  // A native addon: each version is built by its install script, as in a user's project.
  pkcs11: { peers: ['pkcs11js'], tests: ['test/providers/pkcs11.test.ts'] },
  recipient: { peers: ['@noble/post-quantum'], tests: ['test/providers/recipient.test.ts'] },
};

/** The oldest and newest published (non-prerelease) versions that `range` allows. */
function ends(name, range) {
  const out = execFileSync('npm', ['view', `${name}@${range}`, 'version', '--json'], { encoding: 'utf8' });
  const parts = (v) => v.split('.').map(Number);
  const byVersion = (a, b) => parts(a).reduce((d, n, i) => d || n - parts(b)[i], 0);
  const versions = [JSON.parse(out)]
    .flat()
    .filter((v) => !v.includes('-'))
    .sort(byVersion);
  if (versions.length === 0) throw new Error(`no release of ${name} matches ${range}`);
  return [...new Set([versions[0], versions[versions.length - 1]])];
}

function runTarget(target, peer, version) {
  const dir = mkdtempSync(join(tmpdir(), 'kms-envelope-peer-'));
  try {
    writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'peer-matrix', private: true }));
    execFileSync('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', `${peer}@${version}`], {
      cwd: dir,
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    const installed = JSON.parse(
      readFileSync(join(dir, 'node_modules', peer, 'package.json'), 'utf8'),
    ).version;
    const config = join(dir, 'vitest.config.mjs');
    const alias = [peer, ...(TARGETS[target].shared ?? [])]
      .map((name) => {
        const exact = name.replace(/[./]/g, (c) => `\\${c}`);
        return `{ find: /^${exact}(\\/.*)?$/, replacement: ${JSON.stringify(join(dir, 'node_modules', name))} + '$1' }`;
      })
      .join(', ');
    // The probe checks that the tests see this version, not the checkout's.
    const probe = join(dir, 'peer-version.test.mjs');
    writeFileSync(
      probe,
      `import { expect, it } from 'vitest';\nimport meta from '${peer}/package.json' with { type: 'json' };\nit('sees ${peer}@${installed}', () => expect(meta.version).toBe('${installed}'));\n`,
    );
    const test = {
      include: [...TARGETS[target].tests, probe],
      setupFiles: [join(root, 'test/setup.ts')],
      testTimeout: 60_000,
      hookTimeout: 60_000,
      pool: 'forks',
    };
    writeFileSync(
      config,
      `export default {
  root: ${JSON.stringify(root)},
  resolve: { alias: [${alias}] },
  test: ${JSON.stringify(test)},
};
`,
    );
    const started = Date.now();
    const run = spawnSync(join(root, 'node_modules/.bin/vitest'), ['run', '--config', config], {
      cwd: root,
      encoding: 'utf8',
      env: { ...process.env, NO_COLOR: '1', PEER_MATRIX_VERSION: installed },
    });
    const summary = `${run.stdout}${run.stderr}`.match(/Tests\s+(.*)/)?.[1] ?? '';
    return {
      target,
      peer,
      version: installed,
      ok: run.status === 0,
      seconds: (Date.now() - started) / 1000,
      summary,
      output: run.stdout + run.stderr,
    };
  } finally {
    if (!process.env.PEER_MATRIX_KEEP) rmSync(dir, { recursive: true, force: true });
  }
}

const wanted = process.argv.slice(2);
const unknown = wanted.filter((t) => !(t in TARGETS));
if (unknown.length > 0) {
  console.error(`unknown target ${unknown.join(', ')} (known: ${Object.keys(TARGETS).join(', ')})`);
  process.exit(2);
}
mkdirSync(tmpdir(), { recursive: true });
const results = [];
for (const target of wanted.length > 0 ? wanted : Object.keys(TARGETS)) {
  for (const peer of TARGETS[target].peers) {
    const range = pkg.peerDependencies[peer];
    const checkout = JSON.parse(
      readFileSync(join(root, 'node_modules', peer, 'package.json'), 'utf8'),
    ).version;
    for (const version of ends(peer, range)) {
      if (version === checkout && process.env.PEER_MATRIX_ALL === undefined) {
        // The version the lockfile installs: `npm test` has just run these tests against it.
        console.log(
          `ok   ${target.padEnd(14)} ${`${peer}@${version}`.padEnd(40)} (range ${range}) the checkout's own version: covered by npm test`,
        );
        continue;
      }
      const result = runTarget(target, peer, version);
      results.push(result);
      console.log(
        `${result.ok ? 'ok  ' : 'FAIL'} ${target.padEnd(14)} ${`${peer}@${result.version}`.padEnd(40)} (range ${range}) ${result.summary} ${result.seconds.toFixed(1)} s`,
      );
      if (!result.ok) console.log(result.output.split('\n').slice(-60).join('\n'));
    }
  }
}
process.exit(results.every((r) => r.ok) ? 0 : 1);
