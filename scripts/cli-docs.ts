// Rewrites the generated synopsis of docs/cli.md from the CLI's command tree:
// `npm run docs:cli` (`--check`: fail when it differs, as test/cli/docs.test.ts does).
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildProgram } from '../src/cli/main.js';
import { cliSynopsis, withSynopsis } from '../src/cli/synopsis.js';

const file = join(import.meta.dirname, '../docs/cli.md');
const current = readFileSync(file, 'utf8');
const wanted = withSynopsis(current, cliSynopsis(buildProgram()));
if (process.argv.includes('--check')) {
  if (wanted !== current) {
    console.error('docs/cli.md: the synopsis differs from the command tree; run npm run docs:cli');
    process.exit(1);
  }
} else if (wanted !== current) {
  writeFileSync(file, wanted);
  console.log('docs/cli.md: synopsis rewritten');
}
