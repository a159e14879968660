import { inspect } from 'node:util';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { ConfigError } from '../../src/errors.js';
import { parseSlotsConfig } from '../../src/providers/slot.js';

// A secret-looking master key: base64 of 32 bytes, as a `literal:` reference.
const SECRET = 'Zm9yZ2VkLWtleS1tYXRlcmlhbC0zMi1ieXRlcyEhISE=';
const REF = `literal:${SECRET}`;

/** Everything an error shows: message, stack, cause chain, util.inspect and JSON. */
function rendered(err: unknown): string {
  const parts: string[] = [inspect(err, { depth: 10, showHidden: true }), JSON.stringify(err)];
  for (let e: unknown = err; e !== undefined && e !== null; e = (e as { cause?: unknown }).cause) {
    parts.push(String((e as Error).message), String((e as Error).stack));
  }
  return parts.join('\n');
}

/** Fails if any 8 characters in a row of the secret appear in `text`. */
function expectNoPartOfSecret(text: string): void {
  for (let i = 0; i + 8 <= SECRET.length; i++) {
    expect(text, `contains ${SECRET.slice(i, i + 8)}`).not.toContain(SECRET.slice(i, i + 8));
  }
  expect(text).not.toContain('literal:');
}

function errorOf(yaml: string, env: NodeJS.ProcessEnv = {}): ConfigError {
  try {
    parseSlotsConfig(yaml, env);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return err as ConfigError;
  }
  throw new Error('parsed');
}

afterEach(() => {
  vi.restoreAllMocks();
});

describe('a slots config that fails to parse never shows its source', () => {
  const broken: Record<string, string> = {
    'a mis-indented line after the secret': `slots:\n  dev:\n    provider: local\n    master_key: ${REF}\n   bad: [\n`,
    'an unclosed quote around the secret': `slots:\n  dev:\n    provider: local\n    master_key: "${REF}\n`,
    'an unclosed flow map holding the secret': `slots:\n  dev: {provider: local, master_key: ${REF}\n`,
    'a tab-indented secret line': `slots:\n  dev:\n\tmaster_key: ${REF}\n`,
    'a duplicate key on the secret line': `slots:\n  dev:\n    master_key: ${REF}\n    master_key: ${REF}\n`,
    'JSON cut short after the secret': `{"slots": {"dev": {"provider": "local", "master_key": "${REF}"`,
  };
  for (const [what, yaml] of Object.entries(broken)) {
    it(`${what}: a ConfigError with kind, line and column, no cause, no source text`, () => {
      const err = errorOf(yaml);
      expect(err.cause).toBeUndefined();
      expect(err.message).toMatch(
        /^slots config is neither valid YAML nor JSON: [A-Z_]+( at line \d+, column \d+)?$/,
      );
      expectNoPartOfSecret(rendered(err));
    });
  }

  it('reports where: kind, line and column of the first error', () => {
    const err = errorOf(`slots:\n  dev:\n    provider: local\n    master_key: ${REF}\n   bad: [\n`);
    expect(err.message).toBe('slots config is neither valid YAML nor JSON: BAD_INDENT at line 5, column 1');
  });

  it('an alias named like the secret (the yaml package echoes alias names) is not echoed', () => {
    const err = errorOf(`slots:\n  dev:\n    master_key: *${SECRET.replace('=', '')}\n`);
    expect(err.message).toMatch(/BAD_ALIAS$/);
    expectNoPartOfSecret(rendered(err).replaceAll('literal:', ''));
  });

  it('a tag made of the secret is not written to the process warnings', () => {
    const warn = vi.spyOn(process, 'emitWarning').mockImplementation(() => {});
    const log = vi.spyOn(console, 'warn').mockImplementation(() => {});
    parseSlotsConfig(`slots:\n  dev:\n    provider: local\n    master_key: !${SECRET} x\n`, {});
    expect(warn).not.toHaveBeenCalled();
    expect(log).not.toHaveBeenCalled();
  });

  it('a secret that a typo turned into a setting name or a slot name is not echoed', () => {
    for (const yaml of [
      `slots:\n  dev:\n    provider: local\n    master_key:${REF}:\n`,
      `slots:\n  dev:\n    provider: local\n    ${SECRET}: 1\n`,
      `slots:\n  ${REF}:\n    provider: local\n`,
      `slots:\n  ${REF}: 1\n`,
    ]) {
      const err = errorOf(yaml);
      expectNoPartOfSecret(rendered(err));
    }
    expect(errorOf('slots:\n  dev:\n    provider: local\n    key_idd: x\n').message).toContain('"key_idd"');
  });

  it('an unset variable is named, never the value, its default, or a key made of the secret', () => {
    const err = errorOf(
      `slots:\n  dev:\n    provider: local\n    options:\n      "${REF}": \${MISSING_VAR}\n`,
    );
    expect(err.message).toContain('MISSING_VAR');
    expect(err.message).toContain('slots.dev.options.[key]');
    expectNoPartOfSecret(rendered(err));
  });
});
