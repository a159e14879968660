/**
 * `kms-envelope completion bash|zsh|fish`: each script is valid for its shell and offers the
 * commands and options of the real command tree. bash is always there; zsh and fish are
 * skipped, saying so, where they are not installed.
 */

import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { buildProgram } from '../../src/cli/main.js';
import { commandPaths, visibleOptions } from '../../src/cli/synopsis.js';
import { serviceAvailable } from '../helpers/services.js';
import { cli } from './in-process.js';

const dir = mkdtempSync(join(tmpdir(), 'ke-completion-'));
const has = (shell: string) => spawnSync(shell, ['--version'], { encoding: 'utf8' }).status === 0;
const tree = commandPaths(buildProgram());
/** Subcommands of a command path ('' for the program). */
const subcommandsOf = (path: string) =>
  tree
    .filter((c) => c.path !== '' && c.path.split(' ').slice(0, -1).join(' ') === path)
    .map((c) => c.path.split(' ').at(-1)!);

async function script(shell: string): Promise<string> {
  const out = await cli(['completion', shell]);
  expect(out.code, out.stderr).toBe(0);
  const file = join(dir, `completion.${shell}`);
  writeFileSync(file, out.stdout);
  return file;
}

function run(shell: string, args: string[]) {
  const out = spawnSync(shell, args, {
    encoding: 'utf8',
    timeout: 30_000,
    env: { ...process.env, HOME: dir },
  });
  return { code: out.status, stdout: out.stdout, stderr: out.stderr };
}

/** zsh or fish on the PATH; outside CI a missing one skips its check with how to get it. */
function shellAvailable(shell: string): boolean {
  return serviceAvailable(
    shell,
    has(shell),
    `apt-get install ${shell} (its completion script is checked by ${shell} itself)`,
  );
}

describe('shell completion', () => {
  it('bash: bash -n accepts it; it offers the real subcommands, options and choices', async () => {
    const file = await script('bash');
    expect(run('bash', ['-n', file])).toMatchObject({ code: 0, stderr: '' });
    /** What bash would offer for the words typed so far (the last one being completed). */
    const offer = (...words: string[]) => {
      const array = ['kms-envelope', ...words].map((w) => `'${w}'`).join(' ');
      const out = run('bash', [
        '-c',
        `source '${file}'; COMP_WORDS=(${array}); COMP_CWORD=${words.length}; _kms_envelope; printf '%s\\n' "\${COMPREPLY[@]}"`,
      ]);
      expect(out.stderr).toBe('');
      return out.stdout.trim().split('\n').filter(Boolean).sort();
    };
    // commander's `help [command]` is offered too, at every level that has subcommands.
    const withoutHelp = (words: string[]) => words.filter((w) => w !== 'help');
    expect(offer('')).toEqual([...subcommandsOf(''), 'help'].sort());
    expect(offer('cr')).toEqual(['create']);
    expect(withoutHelp(offer('dek', ''))).toEqual(['create', 'deactivate', 'list']);
    expect(withoutHelp(offer('keygen', ''))).toEqual(['recipient']);
    // Global options are skipped with their values when finding the command.
    expect(offer('--store', 'memory:', 'dek', 'l')).toEqual(['list']);
    const createOptions = offer('create', '--');
    for (const flag of [
      '--context',
      '--threshold',
      '--reveal',
      '--json',
      '--quiet',
      '--slot',
      '--redis-prefix',
    ])
      expect(createOptions).toContain(flag);
    expect(offer('--provider', '')).toEqual(['aws', 'aws-kms', 'azure-kv', 'gcp-kms', 'local', 'none']);
    expect(offer('completion', '')).toEqual(['bash', 'fish', 'zsh']);
    expect(offer('keygen', 'recipient', '--kind', '')).toEqual(['x25519', 'x25519-mlkem768']);
  });

  it.skipIf(!shellAvailable('zsh'))('zsh: zsh -n accepts it, and it names every command path', async () => {
    const file = await script('zsh');
    expect(run('zsh', ['-n', file])).toMatchObject({ code: 0, stderr: '' });
    // Loaded into zsh's completion system without an error.
    const loaded = run('zsh', [
      '-f',
      '-c',
      `autoload -Uz compinit && compinit -u -D && source '${file}' && echo loaded`,
    ]);
    expect(loaded).toMatchObject({ code: 0, stdout: 'loaded\n' });
  });

  it.skipIf(!shellAvailable('fish'))(
    'fish: fish --no-execute accepts it; complete -C offers the real subcommands',
    async () => {
      const file = await script('fish');
      expect(run('fish', ['--no-execute', file])).toMatchObject({ code: 0, stderr: '' });
      const offer = (line: string) => {
        const out = run('fish', ['-c', `source '${file}'; complete -C '${line}'`]);
        expect(out.stderr).toBe('');
        return out.stdout
          .trim()
          .split('\n')
          .map((l) => l.split('\t')[0]!)
          .filter(Boolean)
          .sort();
      };
      expect(offer('kms-envelope ')).toEqual(expect.arrayContaining(subcommandsOf('')));
      expect(offer('kms-envelope dek ')).toEqual(expect.arrayContaining(['create', 'deactivate', 'list']));
      expect(offer('kms-envelope create --thr')).toEqual(['--threshold']);
    },
  );

  it('every command and option of the tree appears in each script', async () => {
    for (const shell of ['bash', 'zsh', 'fish']) {
      const text = (await cli(['completion', shell])).stdout;
      for (const { path, command } of tree) {
        if (path) expect(text, `${shell}: ${path}`).toContain(path.split(' ').at(-1));
        for (const option of visibleOptions(command))
          expect(text, `${shell}: ${option.long}`).toContain(option.long!.slice(2));
      }
    }
  });
});
