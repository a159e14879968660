/**
 * Argument and option parsers of the CLI. Each refuses a bad value while the command line is
 * parsed, as a usage error (exit 2) that names the argument, before anything touches a store or
 * a KMS. They reuse the library's own validators, so the CLI accepts exactly what the library does.
 *
 * @module
 */
import { InvalidArgumentError as UsageError } from 'commander';
import { KmsEnvelopeError } from '../errors.js';
import { parseIndexName, parseSlotName } from '../names.js';
import { parseKeyPrefix } from '../storage/redis-keys.js';
import { parseDekId } from '../wire/key-id.js';

/** Runs a library validator; its typed error becomes commander's usage error (same message). */
function usage<T>(validate: (value: string) => T): (value: string) => T {
  return (value) => {
    try {
      return validate(value);
    } catch (err) {
      if (err instanceof KmsEnvelopeError) throw new UsageError(err.message);
      throw err;
    }
  };
}

/** An index name (`parseIndexName`). @throws commander's InvalidArgumentError (exit 2) */
export const indexArg = usage((value) => parseIndexName(value) as string);

/** A slot name (`parseSlotName`). @throws commander's InvalidArgumentError (exit 2) */
export const slotArg = usage((value) => parseSlotName(value) as string);

/** A DEK id (a UUID, `parseDekId`). @throws commander's InvalidArgumentError (exit 2) */
export const dekIdArg = usage((value) => parseDekId(value) as string);

/** A Redis key prefix (`parseKeyPrefix`: no `{` or `}`). @throws commander's InvalidArgumentError */
export const redisPrefixArg = usage((value) => parseKeyPrefix(value));

/** A whole number ≥ `min`, written in decimal digits only (no `1e3`, `0x10`, ` 5`). */
export function integerArg(min: number, what: string): (value: string) => number {
  return (value) => {
    const n = /^[0-9]{1,15}$/.test(value) ? Number(value) : Number.NaN;
    if (!Number.isSafeInteger(n) || n < min) throw new UsageError(`${what} must be a whole number ≥ ${min}`);
    return n;
  };
}

/** Collects a repeatable option's values, each validated by `parse`. */
export function repeatable<T = string>(
  parse: (value: string) => T = (value) => value as T,
): (value: string, previous?: T[]) => T[] {
  return (value, previous = []) => [...previous, parse(value)];
}

/** One `key=value` pair of `--context`: a non-empty key. */
export function contextPair(value: string): string {
  if (value.indexOf('=') <= 0) throw new UsageError(`takes key=value, got ${JSON.stringify(value)}`);
  return value;
}

/** Bytes written in standard base64 (canonical: what `--json` prints), e.g. a `kekCheck`. */
export function base64Arg(value: string): Buffer {
  const bytes = Buffer.from(value, 'base64');
  if (value === '' || bytes.toString('base64') !== value)
    throw new UsageError('takes standard base64 (as --json prints it)');
  return bytes;
}
