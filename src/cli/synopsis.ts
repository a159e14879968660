/**
 * The CLI's synopsis in Markdown, generated from the commander command tree: every command with
 * its arguments and options, one line each, and the exit codes. docs/cli.md holds it between two
 * markers, and a test compares the two, so the documentation cannot drift from the commands the
 * CLI really has (`npm run docs:cli` rewrites it).
 *
 * @module
 */
import type { Argument, Command, Option } from 'commander';
import { EXIT_CODE_MEANING, ExitCode } from './exit-codes.js';

/** The markers around the generated part of docs/cli.md. */
export const SYNOPSIS_BEGIN =
  '<!-- synopsis: generated from the command tree by `npm run docs:cli`; do not edit -->';
export const SYNOPSIS_END = '<!-- end of synopsis -->';

/** A table cell: one line, pipes escaped. */
const cell = (text: string) => text.replace(/\s+/g, ' ').replace(/\|/g, '\\|').trim();

function argumentUsage(arg: Argument): string {
  const name = `${arg.name()}${arg.variadic ? '...' : ''}`;
  return arg.required ? `<${name}>` : `[${name}]`;
}

function optionRow(option: Option): string {
  const choices = option.argChoices ? ` (one of: ${option.argChoices.join(', ')})` : '';
  const preset =
    option.defaultValue !== undefined && typeof option.defaultValue !== 'boolean'
      ? ` (default: ${String(option.defaultValue)})`
      : '';
  const required = option.mandatory ? ' (required)' : '';
  return `| \`${option.flags}\` | ${cell(`${option.description}${choices}${preset}${required}`)} |`;
}

/** The command and its visible subcommands, depth first, with their space-separated paths. */
export function commandPaths(program: Command): { path: string; command: Command }[] {
  const found: { path: string; command: Command }[] = [];
  const visit = (command: Command, path: string) => {
    found.push({ path, command });
    for (const sub of command.createHelp().visibleCommands(command)) {
      if (sub.name() === 'help') continue; // commander's own `help [command]`
      visit(sub, path ? `${path} ${sub.name()}` : sub.name());
    }
  };
  visit(program, '');
  return found;
}

/** The visible options of a command, without commander's `-h, --help`. */
export function visibleOptions(command: Command): Option[] {
  return command
    .createHelp()
    .visibleOptions(command)
    .filter((o) => o.long !== '--help');
}

/** The generated Markdown (the part of docs/cli.md between the markers, markers included). */
export function cliSynopsis(program: Command): string {
  const name = program.name();
  const lines: string[] = [SYNOPSIS_BEGIN, '', '### Global options', ''];
  lines.push(`Given before or after the command: \`${name} [global options] <command> [options]\`.`, '');
  lines.push('| option | what |', '|---|---|');
  for (const option of visibleOptions(program)) lines.push(optionRow(option));
  for (const { path, command } of commandPaths(program).slice(1)) {
    const args = (command.registeredArguments as readonly Argument[]).map(argumentUsage);
    const subs = command
      .createHelp()
      .visibleCommands(command)
      .filter((c) => c.name() !== 'help');
    if (subs.length > 0 && command.registeredArguments.length === 0 && visibleOptions(command).length === 0) {
      lines.push('', `### \`${name} ${path}\``, '', cell(command.description()), '');
      lines.push(`Subcommands: ${subs.map((s) => `\`${s.name()}\``).join(', ')}.`);
      continue;
    }
    const options = visibleOptions(command);
    const usage = [name, path, ...(options.length > 0 ? ['[options]'] : []), ...args].join(' ');
    lines.push('', `### \`${usage}\``, '', cell(command.description()));
    const rows = [
      ...(command.registeredArguments as readonly Argument[]).map(
        (arg) =>
          `| \`${argumentUsage(arg)}\` | ${cell(`${arg.description}${arg.argChoices ? ` (one of: ${arg.argChoices.join(', ')})` : ''}`)} |`,
      ),
      ...options.map(optionRow),
    ];
    if (rows.length > 0) lines.push('', '| argument or option | what |', '|---|---|', ...rows);
  }
  lines.push('', '### Exit codes', '', '| code | meaning |', '|---|---|');
  for (const [key, code] of Object.entries(ExitCode))
    lines.push(`| ${code} | ${cell(EXIT_CODE_MEANING[key as keyof typeof ExitCode])} |`);
  lines.push('', SYNOPSIS_END);
  return lines.join('\n');
}

/**
 * `text` (docs/cli.md) with its generated part replaced by `synopsis`.
 * @throws Error when the markers are missing.
 */
export function withSynopsis(text: string, synopsis: string): string {
  const begin = text.indexOf(SYNOPSIS_BEGIN);
  const end = text.indexOf(SYNOPSIS_END);
  if (begin === -1 || end === -1 || end < begin) throw new Error('docs/cli.md has no synopsis markers');
  return text.slice(0, begin) + synopsis + text.slice(end + SYNOPSIS_END.length);
}
