#!/usr/bin/env node
// Bundles the CLI (dist/src/cli/*.js, as tsc left it) into the one file the `bin` names,
// dist/src/cli/bin.js, together with the third-party packages only the CLI uses (commander,
// cli-progress, read and what they need). Those are devDependencies: a library user installs
// none of them and pays nothing for them at import. Everything else stays a normal import: the
// library's own modules (`../client.js`, `../../providers/recipient.js`), its dependencies and
// optional peers, and Node's built-ins. The CLI modules that went into the bundle are removed
// from dist (only bin.js is left in dist/src/cli). Run by `npm run build`, after tsc: `node scripts/bundle-cli.mjs [dist folder]`.
import { readdirSync, readFileSync, rmSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
// The build folder: dist, or the one given (a build made elsewhere, e.g. by a test).
const dist = resolve(process.argv[2] ?? join(root, 'dist'));
const cliDir = join(dist, 'src/cli');
const entry = join(cliDir, 'bin.js');
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
/** Packages a library user installs (or may install): never bundled. */
const runtime = new Set([...Object.keys(pkg.dependencies ?? {}), ...Object.keys(pkg.peerDependencies ?? {})]);
const packageName = (specifier) =>
  specifier.startsWith('@') ? specifier.split('/').slice(0, 2).join('/') : specifier.split('/')[0];

/** Library modules and runtime packages stay imports; CLI modules and CLI-only packages go in. */
const keepLibraryExternal = {
  name: 'keep-library-external',
  setup(b) {
    b.onResolve({ filter: /.*/ }, (args) => {
      if (args.kind === 'entry-point') return undefined;
      if (args.path.startsWith('.')) {
        const target = resolve(args.resolveDir, args.path);
        // Only the CLI's own modules are bundled; a relative import from a CLI module to the
        // library keeps its path, which is still right from the bundle (it sits in the same folder).
        if (args.resolveDir === cliDir && !target.startsWith(cliDir + sep)) {
          return { path: args.path, external: true };
        }
        return undefined;
      }
      if (runtime.has(packageName(args.path))) return { path: args.path, external: true };
      return undefined;
    });
  },
};

const result = await build({
  entryPoints: [entry],
  outfile: entry,
  allowOverwrite: true,
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  logLevel: 'warning',
  metafile: true,
  legalComments: 'eof',
  // commander and cli-progress are CommonJS and require() Node built-ins; an ES module has no
  // require of its own (esbuild's documented shim).
  banner: {
    js: "import { createRequire as __cliCreateRequire } from 'node:module'; const require = __cliCreateRequire(import.meta.url);",
  },
  // The checkout's packages, also for a build folder outside it.
  nodePaths: [join(root, 'node_modules')],
  plugins: [keepLibraryExternal],
});

const bundled = Object.keys(result.metafile.inputs).map((input) => resolve(process.cwd(), input));
const escaped = bundled.filter(
  (file) => !file.startsWith(cliDir + sep) && !file.includes(`${sep}node_modules${sep}`),
);
if (escaped.length > 0) throw new Error(`library modules were bundled into the CLI: ${escaped.join(', ')}`);
// Every other file of the CLI's folder is either in the bundle or CLI-only (synopsis.ts, for
// docs/cli.md): none is shipped.
for (const file of readdirSync(cliDir)) if (file !== 'bin.js') rmSync(join(cliDir, file));
const packages = [
  ...new Set(
    bundled
      .filter((file) => file.includes(`${sep}node_modules${sep}`))
      .map((file) => packageName(file.split(`${sep}node_modules${sep}`).pop().split(sep).join('/'))),
  ),
].sort();
console.log(`bundle-cli: ${relative(root, entry)} with ${packages.join(', ')}`);
