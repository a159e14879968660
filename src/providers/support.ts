/**
 * What the cloud providers share: loading an optional SDK, the error context of a call, the
 * binding of a wrap to its index and slot in the shapes a KMS takes (encryption context, AAD),
 * turning an unwrapped plaintext into a {@link Kek}, and the deadline of a call.
 *
 * @module
 */
import { bindingAadOf } from '../crypto/binding.js';
import {
  DeadlineExceededError,
  type ErrorContext,
  InvalidArgumentError,
  MissingDependencyError,
  UnwrapFailedError,
} from '../errors.js';
import { KEK_LENGTH, Kek } from '../keys/kek.js';
import type { WrapContext } from './provider.js';

/**
 * Loads an optional peer dependency with `load` (a literal `() => import('pkg')`, which bundlers
 * see, or {@link importPeer}, which they do not); a package that is not installed becomes a
 * `MissingDependencyError` naming it.
 */
export async function importOptional<T>(
  packageName: string,
  usedBy: string,
  load: () => Promise<T>,
): Promise<T> {
  try {
    return await load();
  } catch (cause) {
    const code = (cause as { code?: string }).code;
    // Node says so by code; Vite-based runners (vitest) by a message naming the package.
    const message = String((cause as { message?: unknown })?.message ?? '');
    if (
      code === 'ERR_MODULE_NOT_FOUND' ||
      code === 'MODULE_NOT_FOUND' ||
      (code === undefined && message.startsWith(`Could not resolve "${packageName}"`))
    ) {
      throw new MissingDependencyError(packageName, usedBy, cause);
    }
    throw cause;
  }
}

/**
 * `import()` of an optional peer by a computed specifier. Bundlers follow only string literals, so
 * an app bundled without the peer builds with no `--external` and no warning (the magic comments
 * keep webpack and Vite from trying either); the import runs, and fails as a missing package,
 * only when the feature is used. An app that bundles the peer passes its client or pool instead
 * (the stores' `client` / `pool` options), which bundles it through the app's own import.
 */
export function importPeer<T>(packageName: string): Promise<T> {
  return import(/* webpackIgnore: true */ /* @vite-ignore */ packageName) as Promise<T>;
}

/** The error context of a call about `context` through `provider`. */
export function whereOf(context: Pick<WrapContext, 'index' | 'slot'>, provider: string): ErrorContext {
  return { index: context.index, slot: context.slot, provider };
}

/** Prefix of the encryption-context keys kms-envelope itself sets. */
export const BINDING_KEY_PREFIX = 'kms-envelope:';

/**
 * Encryption-context key under which an envelope made by `IndexKeyring` names its KEK slot id
 * (the keyring's `KEK_SLOT_CONTEXT_KEY`). It is part of the envelope's context like a caller's
 * key, so it is bound by the KMS like one; it names none of the binding's own parts.
 */
export const KEK_SLOT_CONTEXT_KEY = `${BINDING_KEY_PREFIX}kek-slot`;

/**
 * The `kms-envelope:` keys an envelope's context may carry: the library's own documented keys,
 * none of which is one of the binding's (`index`, `slot`, `version`, `creation-id`). Every other
 * key under the prefix stays reserved, so no context can stand in for a part of the binding,
 * today's or a future one.
 */
export const LIBRARY_CONTEXT_KEYS: ReadonlySet<string> = new Set([KEK_SLOT_CONTEXT_KEY]);

/**
 * The binding as a KMS encryption context (string map): `kms-envelope:index`,
 * `kms-envelope:slot`, for a schema 2 envelope (one with a creation id) also
 * `kms-envelope:version` (decimal) and `kms-envelope:creation-id` (lower-case hex), for a
 * threshold share also `kms-envelope:threshold`, `kms-envelope:shares` and `kms-envelope:share`
 * (decimal), then the envelope's own context. A context key may not start with `kms-envelope:` unless it is one of
 * the library's own ({@link LIBRARY_CONTEXT_KEYS}: the keyring's `kms-envelope:kek-slot`).
 * @throws InvalidArgumentError for any other such key.
 */
export function bindingEncryptionContext(context: WrapContext): Record<string, string> {
  const out: Record<string, string> = {
    [`${BINDING_KEY_PREFIX}index`]: context.index,
    [`${BINDING_KEY_PREFIX}slot`]: context.slot,
  };
  if (context.creationId !== undefined) {
    out[`${BINDING_KEY_PREFIX}version`] = String(context.version ?? 0);
    out[`${BINDING_KEY_PREFIX}creation-id`] = Buffer.from(context.creationId).toString('hex');
    if (context.policy !== undefined) {
      // A threshold envelope's share: the policy and its position are bound as well.
      out[`${BINDING_KEY_PREFIX}threshold`] = String(context.policy.threshold);
      out[`${BINDING_KEY_PREFIX}shares`] = String(context.policy.shares);
      out[`${BINDING_KEY_PREFIX}share`] = String(context.policy.share);
    }
  }
  for (const [key, value] of Object.entries(context.encryptionContext)) {
    if (key.startsWith(BINDING_KEY_PREFIX) && !LIBRARY_CONTEXT_KEYS.has(key)) {
      throw new InvalidArgumentError(`encryption context key "${key}" is reserved`, {
        index: context.index,
        slot: context.slot,
      });
    }
    out[key] = value;
  }
  return out;
}

/** The binding as additional authenticated data bytes (see `src/crypto/binding.ts`). */
export function bindingBytes(context: WrapContext, provider: string): Buffer {
  return bindingAadOf(provider, context);
}

/**
 * Takes ownership of an unwrapped plaintext: a {@link Kek} when it is 32 bytes, else the bytes
 * are wiped and `UnwrapFailedError` is thrown.
 */
export function kekFromPlaintext(plaintext: Uint8Array | undefined, where: ErrorContext): Kek {
  if (plaintext === undefined || plaintext.length !== KEK_LENGTH) {
    plaintext?.fill(0);
    throw new UnwrapFailedError(
      `the KMS returned ${plaintext === undefined ? 'no' : `${plaintext.length} bytes of`} plaintext, not a ${KEK_LENGTH}-byte KEK`,
      where,
    );
  }
  return Kek.fromBytesAndWipe(plaintext);
}

/** Throws `DeadlineExceededError` when `signal` has already aborted. */
export function throwIfAborted(signal: AbortSignal | undefined, where: ErrorContext): void {
  if (signal?.aborted) throw new DeadlineExceededError('the KMS call was aborted (deadline)', where);
}

/**
 * Whether `err` is the abort of a call whose signal fired (any SDK's spelling of it). A
 * `TimeoutError` counts only when the signal fired: otherwise it is the SDK's own timeout, or
 * what the AWS SDK calls the reset of a kept-alive socket, and the KMS is unavailable, not the
 * deadline passed.
 */
export function isAbort(err: unknown, signal: AbortSignal | undefined): boolean {
  const name = (err as { name?: string } | null)?.name;
  return (signal?.aborted ?? false) || name === 'AbortError';
}

/** Parses an HTTP `Retry-After` (seconds or a date) into milliseconds. */
export function parseRetryAfter(value: string | null | undefined, now = Date.now()): number | undefined {
  if (value === undefined || value === null || value === '') return undefined;
  const seconds = Number(value);
  if (Number.isFinite(seconds)) return seconds >= 0 ? seconds * 1000 : undefined;
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}
