import { InvalidArgumentError } from './errors.js';

/** An index name that was validated by {@link parseIndexName}; safe as a path segment or key part. */
export type IndexName = string & {
  /** Compile-time brand only: there is no such property at run time. */
  readonly __brand: 'IndexName';
};
/** A KMS slot name that was validated by {@link parseSlotName}. */
export type SlotName = string & {
  /** Compile-time brand only: there is no such property at run time. */
  readonly __brand: 'SlotName';
};

/** Longest accepted index or slot name, in characters (ASCII only, so also bytes). */
export const MAX_NAME_LENGTH = 128;

/** ASCII letters, digits, '.', '_' and '-', starting with a letter or digit (plus: no '..'). */
// ASCII letters, digits, '.', '_' and '-', starting with a letter or digit: no '/', '\\', NUL,
// whitespace or control characters, no leading dot, so a name can never leave its folder.
export const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

/** True when `name` follows the name rules (no error built: this is on every store call). */
export function isValidName(name: unknown): name is string {
  return (
    typeof name === 'string' &&
    name.length > 0 &&
    name.length <= MAX_NAME_LENGTH &&
    NAME_PATTERN.test(name) &&
    !name.includes('..')
  );
}

function check(kind: string, name: unknown): string {
  if (isValidName(name)) return name;
  if (typeof name !== 'string') throw new InvalidArgumentError(`${kind} name must be a string`);
  if (name.length === 0) throw new InvalidArgumentError(`${kind} name must not be empty`);
  // JSON.stringify shows control characters escaped; names are not secret.
  const shown = JSON.stringify(name.length > 40 ? `${name.slice(0, 40)}…` : name);
  if (name.length > MAX_NAME_LENGTH) {
    throw new InvalidArgumentError(`${kind} name ${shown} is longer than ${MAX_NAME_LENGTH} characters`);
  }
  throw new InvalidArgumentError(
    `${kind} name ${shown} is not allowed: use letters, digits, '.', '_' and '-', starting with a letter or digit, without '..'`,
  );
}

/**
 * Validates an index name before it becomes a path segment or a Redis key.
 * @throws InvalidArgumentError for empty, over-long, or names with '/', '\\', NUL, '..' or other
 * characters outside `[A-Za-z0-9._-]`.
 */
export function parseIndexName(name: unknown): IndexName {
  return check('index', name) as IndexName;
}

/** Validates a KMS slot name (same rules as index names). @throws InvalidArgumentError */
export function parseSlotName(name: unknown): SlotName {
  return check('slot', name) as SlotName;
}

/** True if `name` is an acceptable index name. */
export function isValidIndexName(name: unknown): name is IndexName {
  return isValidName(name);
}
