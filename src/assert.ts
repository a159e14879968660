import { InvalidArgumentError } from './errors.js';

/**
 * The one precondition helper: throws {@link InvalidArgumentError} with `message` when `ok` is
 * false. Messages must never contain key material.
 */
export function needs(ok: unknown, message: string): asserts ok {
  if (!ok) throw new InvalidArgumentError(message);
}
