/**
 * Shell completion scripts for bash, zsh and fish, generated from the commander command tree,
 * so they can never drift from the commands and options the CLI really has. Each script walks
 * the words typed so far (skipping options and the values of options that take one) to find the
 * command path, then offers that path's subcommands, its options plus the global ones, the
 * choices of an option or argument that has them, and otherwise file names. Index and slot names
 * are not completed: that would read the store or the configuration from a completion hook.
 *
 * @module
 */
import type { Argument, Command, Option } from 'commander';

/** The shells {@link completionScript} writes for. */
export const SHELLS = ['bash', 'zsh', 'fish'] as const;
/** One of {@link SHELLS}. */
export type Shell = (typeof SHELLS)[number];

interface OptionModel {
  readonly long: string | undefined;
  readonly short: string | undefined;
  readonly takesValue: boolean;
  readonly choices: readonly string[];
  readonly description: string;
}

interface CommandModel {
  /** Space-separated names from the root ('' for the program itself). */
  readonly path: string;
  readonly description: string;
  readonly subcommands: readonly { name: string; description: string }[];
  readonly options: readonly OptionModel[];
  /** Choices of the command's positional arguments, if any has them. */
  readonly argChoices: readonly string[];
}

function optionModel(option: Option): OptionModel {
  return {
    long: option.long,
    short: option.short,
    takesValue: option.required || option.optional,
    choices: option.argChoices ?? [],
    description: option.description,
  };
}

/** Every command of the tree, depth first, with its visible options (globals only on the root). */
function commandModels(program: Command): CommandModel[] {
  const models: CommandModel[] = [];
  const visit = (command: Command, path: string) => {
    const help = command.createHelp();
    const subcommands = help.visibleCommands(command);
    models.push({
      path,
      description: command.description(),
      subcommands: subcommands.map((sub) => ({ name: sub.name(), description: sub.description() })),
      options: help.visibleOptions(command).map(optionModel),
      argChoices: (command.registeredArguments as readonly Argument[]).flatMap((arg) => arg.argChoices ?? []),
    });
    for (const sub of command.commands as readonly Command[]) {
      if (subcommands.includes(sub)) visit(sub, path ? `${path} ${sub.name()}` : sub.name());
    }
  };
  visit(program, '');
  return models;
}

const flagsOf = (options: readonly OptionModel[], filter: (o: OptionModel) => boolean = () => true) =>
  options.filter(filter).flatMap((o) => [o.long, o.short].filter((f): f is string => f !== undefined));

/** A POSIX-shell `case` function printing a space-separated word list per key. */
function caseFunction(name: string, entries: readonly [string, readonly string[]][], fish = false): string {
  const rows = entries.filter(([, words]) => words.length > 0);
  if (fish) {
    const cases = rows.map(([key, words]) => `    case '${key}'\n      printf '%s\\n' ${words.join(' ')}`);
    return `function ${name}\n  switch "$argv[1]"\n${cases.join('\n')}\n  end\nend`;
  }
  const cases = rows.map(([key, words]) => `    "${key}") echo "${words.join(' ')}" ;;`);
  return `${name}() {\n  case "$1" in\n${cases.join('\n')}\n  esac\n}`;
}

/** The lookup functions all three scripts share (fish spells them its own way). */
function lookups(models: readonly CommandModel[], prefix: string, fish: boolean): string {
  const globals = models[0]!.options;
  const entries = (pick: (m: CommandModel) => readonly string[]) =>
    models.map((m): [string, readonly string[]] => [m.path, pick(m)]);
  const choiceEntries: [string, readonly string[]][] = [];
  for (const m of models) {
    if (m.argChoices.length > 0) choiceEntries.push([m.path, m.argChoices]);
    for (const o of [...m.options, ...(m.path ? globals : [])])
      if (o.choices.length > 0)
        for (const flag of flagsOf([o])) choiceEntries.push([`${m.path}${flag}`, o.choices]);
  }
  return [
    caseFunction(
      `${prefix}_subcommands`,
      entries((m) => m.subcommands.map((s) => s.name)),
      fish,
    ),
    caseFunction(
      `${prefix}_options`,
      entries((m) => flagsOf(m.path ? [...m.options, ...globals] : m.options)),
      fish,
    ),
    caseFunction(
      `${prefix}_value_options`,
      entries((m) => flagsOf(m.path ? [...m.options, ...globals] : m.options, (o) => o.takesValue)),
      fish,
    ),
    // Key: the command path followed directly by the option ('--provider', 'create--context'),
    // or the bare path for the choices of its positional argument.
    caseFunction(`${prefix}_choices`, choiceEntries, fish),
  ].join('\n\n');
}

function bashScript(name: string, models: readonly CommandModel[]): string {
  const fn = `_${name.replace(/[^A-Za-z0-9]/g, '_')}`;
  return `# ${name} completion for bash, generated from the command tree by \`${name} completion bash\`.
# Use it now:        source <(${name} completion bash)
# Or install it:     ${name} completion bash > ~/.local/share/bash-completion/completions/${name}

${lookups(models, fn, false)}

${fn}_words_in() {
  local word
  for word in $2; do [[ "$word" == "$1" ]] && return 0; done
  return 1
}

${fn}() {
  local cur="\${COMP_WORDS[COMP_CWORD]}" cmdpath="" word i expect=""
  for ((i = 1; i < COMP_CWORD; i++)); do
    word="\${COMP_WORDS[i]}"
    if [[ -n "$expect" ]]; then expect=""; continue; fi
    case "$word" in
      --) break ;;
      -*=*) continue ;;
      -*)
        if ${fn}_words_in "$word" "$(${fn}_value_options "$cmdpath")"; then expect="$word"; fi
        continue ;;
    esac
    if ${fn}_words_in "$word" "$(${fn}_subcommands "$cmdpath")"; then
      cmdpath="\${cmdpath:+$cmdpath }$word"
    fi
  done
  local words
  if [[ -n "$expect" ]]; then
    words="$(${fn}_choices "$cmdpath$expect")"
    if [[ -z "$words" ]]; then COMPREPLY=($(compgen -f -- "$cur")); return 0; fi
  elif [[ "$cur" == -* ]]; then
    words="$(${fn}_options "$cmdpath")"
  else
    words="$(${fn}_subcommands "$cmdpath") $(${fn}_choices "$cmdpath")"
    if [[ -z "\${words// /}" ]]; then COMPREPLY=($(compgen -f -- "$cur")); return 0; fi
  fi
  COMPREPLY=($(compgen -W "$words" -- "$cur"))
  return 0
}

complete -o default -F ${fn} ${name}
`;
}

function zshScript(name: string, models: readonly CommandModel[]): string {
  const fn = `_${name.replace(/[^A-Za-z0-9]/g, '_')}`;
  return `#compdef ${name}
# ${name} completion for zsh, generated from the command tree by \`${name} completion zsh\`.
# Use it now:        source <(${name} completion zsh)
# Or install it:     ${name} completion zsh > "\${fpath[1]}/_${name}"

${lookups(models, fn, false)}

${fn}() {
  local cur="\${words[CURRENT]}" cmdpath="" word expect="" i
  local -a candidates
  for ((i = 2; i < CURRENT; i++)); do
    word="\${words[i]}"
    if [[ -n "$expect" ]]; then expect=""; continue; fi
    case "$word" in
      --) break ;;
      -*=*) continue ;;
      -*)
        if (( \${\${=$(${fn}_value_options "$cmdpath")}[(Ie)$word]} )); then expect="$word"; fi
        continue ;;
    esac
    if (( \${\${=$(${fn}_subcommands "$cmdpath")}[(Ie)$word]} )); then
      cmdpath="\${cmdpath:+$cmdpath }$word"
    fi
  done
  if [[ -n "$expect" ]]; then
    candidates=(\${=$(${fn}_choices "$cmdpath$expect")})
  elif [[ "$cur" == -* ]]; then
    candidates=(\${=$(${fn}_options "$cmdpath")})
  else
    candidates=(\${=$(${fn}_subcommands "$cmdpath")} \${=$(${fn}_choices "$cmdpath")})
  fi
  if (( \${#candidates} == 0 )); then _files; else compadd -- "\${candidates[@]}"; fi
}

if [[ "\${funcstack[1]}" == "${fn}" ]]; then
  ${fn} "$@"
else
  compdef ${fn} ${name}
fi
`;
}

/** A fish single-quoted string. */
const fishQuote = (text: string) => `'${text.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;

/** The first sentence of a description, short enough for a completion menu. */
function summary(description: string): string {
  const first = description.split(/[.;:(]|—| - /)[0]!.trim();
  return first.length > 70 ? `${first.slice(0, 69)}…` : first;
}

function fishScript(name: string, models: readonly CommandModel[]): string {
  const fn = `__${name.replace(/[^A-Za-z0-9]/g, '_')}`;
  const lines: string[] = [];
  for (const m of models) {
    const at = `-n ${fishQuote(`${fn}_at '${m.path}'`)}`;
    for (const sub of m.subcommands)
      lines.push(
        `complete -c ${name} ${at} -f -a ${fishQuote(sub.name)} -d ${fishQuote(summary(sub.description))}`,
      );
    if (m.argChoices.length > 0)
      lines.push(`complete -c ${name} ${at} -f -a ${fishQuote(m.argChoices.join(' '))}`);
    for (const o of m.options) {
      const flags = [o.long ? `-l ${o.long.slice(2)}` : '', o.short ? `-s ${o.short.slice(1)}` : '']
        .filter(Boolean)
        .join(' ');
      const value =
        o.choices.length > 0 ? ` -x -a ${fishQuote(o.choices.join(' '))}` : o.takesValue ? ' -r' : '';
      // The program's options apply after any subcommand too: no condition.
      const where = m.path ? ` ${at}` : '';
      lines.push(`complete -c ${name}${where} ${flags}${value} -d ${fishQuote(summary(o.description))}`);
    }
  }
  return `# ${name} completion for fish, generated from the command tree by \`${name} completion fish\`.
# Use it now:        ${name} completion fish | source
# Or install it:     ${name} completion fish > ~/.config/fish/completions/${name}.fish

${lookups(models, fn, true)}

# The command path typed so far (subcommands only; options and their values skipped).
function ${fn}_path
  set -l tokens (commandline -opc)
  set -e tokens[1]
  set -l cmdpath
  set -l expect 0
  for token in $tokens
    if test $expect -eq 1
      set expect 0
      continue
    end
    switch $token
      case '--'
        break
      case '-*=*'
        continue
      case '-*'
        if contains -- $token (${fn}_value_options "$cmdpath")
          set expect 1
        end
        continue
    end
    if contains -- $token (${fn}_subcommands "$cmdpath")
      set cmdpath (string join ' ' $cmdpath $token)
    end
  end
  echo "$cmdpath"
end

function ${fn}_at
  test "$(${fn}_path)" = "$argv[1]"
end

${lines.join('\n')}
`;
}

/**
 * The completion script of `shell` for `program` (its name is the command completed).
 * @throws Error for a shell other than {@link SHELLS} (the CLI refuses it as a usage error first).
 */
export function completionScript(program: Command, shell: Shell): string {
  const models = commandModels(program);
  const name = program.name();
  switch (shell) {
    case 'bash':
      return bashScript(name, models);
    case 'zsh':
      return zshScript(name, models);
    case 'fish':
      return fishScript(name, models);
    default:
      throw new Error(`no completion for shell ${String(shell)}`);
  }
}
