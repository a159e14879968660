/**
 * docs/cli.md lists every command and option the CLI really has: its synopsis is generated from
 * the commander tree (`npm run docs:cli`) and compared here, so the two cannot drift.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ExitCode } from '../../src/cli/exit-codes.js';
import { buildProgram } from '../../src/cli/main.js';
import {
  cliSynopsis,
  commandPaths,
  SYNOPSIS_BEGIN,
  SYNOPSIS_END,
  visibleOptions,
} from '../../src/cli/synopsis.js';
import { repo } from '../helpers/cli.js';

const docs = readFileSync(join(repo, 'docs/cli.md'), 'utf8');
const generated = docs.slice(docs.indexOf(SYNOPSIS_BEGIN), docs.indexOf(SYNOPSIS_END) + SYNOPSIS_END.length);

describe('docs/cli.md', () => {
  it('holds the synopsis generated from the command tree (run npm run docs:cli when this fails)', () => {
    expect(docs).toContain(SYNOPSIS_BEGIN);
    expect(generated).toBe(cliSynopsis(buildProgram()));
  });

  it('names every command, every option and every exit code', () => {
    const tree = commandPaths(buildProgram());
    expect(tree.map((c) => c.path)).toEqual(
      expect.arrayContaining(['create', 'dek create', 'keygen recipient', 'recover']),
    );
    for (const { path, command } of tree) {
      if (path) expect(generated).toContain(`kms-envelope ${path}`);
      for (const option of visibleOptions(command))
        expect(generated, `${path} ${option.flags}`).toContain(`\`${option.flags}\``);
    }
    for (const code of Object.values(ExitCode))
      expect(generated).toMatch(new RegExp(`^\\| ${code} \\| `, 'm'));
  });
});
