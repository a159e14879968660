/**
 * Unwrapping an envelope that holds its KEK under several slots (issue #15): which wraps are
 * tried, in which order, within which deadline, when the policy is met, and what a wrap that
 * unwraps to the wrong KEK means (a tamper signal: refused, reported, never used).
 *
 * The order (README, "Several KMSs"): every wrap the reader's configuration admits, primary
 * first and then `wraps` in stored order, except that wraps whose slot's circuit breaker is open
 * go after all the others (they fail fast, or serve as the breaker's probe). Wraps the reader
 * does not admit (slot not configured or not allowed for the index, another provider, a slot
 * that unwraps only offline) are never tried; each is reported with its typed reason.
 *
 * One deadline covers the whole unwrap: the caller's `signal`, and `deadlineMs` from the start.
 * A wrap with others still behind it gets at most half of what is left, so a KMS that hangs
 * leaves time for the next one; the last candidate gets all of it.
 *
 * @module
 */

import type { KmsBlob } from '../envelope/kms-blob.js';
import {
  combinationsWith,
  combineShares,
  type WrapEntry,
  wrapBindingOf,
  wrapsOf,
} from '../envelope/wraps.js';
import {
  AllWrapsFailedError,
  DeadlineExceededError,
  ErrorCode,
  KekMismatchError,
  KmsEnvelopeError,
} from '../errors.js';
import type { Kek } from '../keys/kek.js';
import { kekMatchesCheck } from '../keys/kek-check.js';
import type { IndexName, SlotName } from '../names.js';
import type { KmsProvider, WrapContext } from '../providers/provider.js';
import type { Telemetry } from './telemetry.js';

/** What {@link unwrapWraps} needs from the client. */
export interface WrapUnwrapper {
  /**
   * The provider that may unwrap `entry` for this reader, or a typed error saying why not
   * (`SlotNotAllowedError`, `ConfigError`, `UnwrapFailedError` for another provider). No KMS call.
   */
  admit(entry: WrapEntry): Promise<KmsProvider>;
  /** Whether the circuit breaker of `slot` is open. */
  isOpen(slot: string): boolean;
  /** Unwraps one wrap through the KMS call policy (retries, breaker), bounded by `signal`. */
  unwrap(entry: WrapEntry, provider: KmsProvider, context: WrapContext, signal: AbortSignal): Promise<Kek>;
  readonly telemetry: Telemetry;
}

/** Options of {@link unwrapWraps}. */
export interface UnwrapWrapsOptions {
  /** The caller's deadline. */
  readonly signal?: AbortSignal | undefined;
  /** The whole unwrap's deadline, from its start. */
  readonly deadlineMs: number;
  /**
   * Try every admitted wrap instead of stopping once the policy is met (`verify`): each wrap's
   * outcome is then known.
   */
  readonly exhaustive?: boolean;
  /**
   * A wrap already opened (by `recover`, with an offline private key): used as if it had been
   * unwrapped first, and not tried again.
   */
  readonly opened?: { readonly entry: WrapEntry; readonly kek: Kek };
}

/** How one wrap fared in an unwrap. */
export interface WrapOutcome {
  /** The wrap's slot. */
  readonly slot: string;
  /** The wrap's provider id. */
  readonly provider: string;
  /** 1 for the primary, i + 2 for `wraps[i]`. */
  readonly share: number;
  /** It unwrapped, and its KEK (or share) agreed with the envelope's KEK check. */
  readonly ok: boolean;
  /** Not tried: not admitted, its breaker open with others left, or the deadline passed. */
  readonly skipped: boolean;
  /** Why it did not serve, when it did not (and it was tried or skipped for a reason). */
  readonly error?: KmsEnvelopeError;
}

/** The result of {@link unwrapWraps}. The caller owns (and zeroes) `kek`. */
export interface UnwrappedWraps {
  readonly kek: Kek;
  /** The wraps whose KEK or shares made `kek`, in the order tried. */
  readonly served: readonly WrapEntry[];
  /** Every wrap's outcome, in the envelope's order (primary first). */
  readonly outcomes: readonly WrapOutcome[];
}

interface Opened {
  readonly entry: WrapEntry;
  readonly y: Kek;
}

/**
 * Unwraps the KEK of a multi-wrap envelope by its policy: any one wrap (`anyOf`), or `threshold`
 * shares that combine to it. Every KEK or combination is checked against `kek_check` (which a
 * multi-wrap envelope always has): a wrap that does not match is a tamper signal, refused and
 * reported (`kms-envelope:tamper`, stats), even when another wrap then succeeds.
 * @throws AllWrapsFailedError naming each wrap's typed failure, when the policy cannot be met.
 */
export async function unwrapWraps(
  index: IndexName,
  blob: KmsBlob,
  deps: WrapUnwrapper,
  options: UnwrapWrapsOptions,
): Promise<UnwrappedWraps> {
  const entries = wrapsOf(blob);
  const need = blob.threshold ?? 1;
  const outcomes = new Map<number, WrapOutcome>();
  const note = (entry: WrapEntry, outcome: Omit<WrapOutcome, 'slot' | 'provider' | 'share'>, ms = 0) => {
    outcomes.set(entry.share, {
      slot: entry.kmsName,
      provider: entry.provider,
      share: entry.share,
      ...outcome,
    });
    deps.telemetry.wrapTried({
      index,
      slot: entry.kmsName,
      provider: entry.provider,
      version: blob.version,
      share: entry.share,
      outcome: outcome.ok
        ? 'ok'
        : outcome.error?.code === ErrorCode.kekMismatch
          ? 'tampered'
          : (outcome.error?.code ?? 'skipped'),
      skipped: outcome.skipped,
      durationMs: ms,
    });
  };
  const tamper = (wraps: readonly WrapEntry[], reason: 'kek-check' | 'share' | 'combination') =>
    deps.telemetry.tampered({
      index,
      version: blob.version,
      slots: wraps.map((w) => w.kmsName),
      providers: wraps.map((w) => w.provider),
      reason,
    });
  const check = blob.kekCheck;
  if (check === undefined) {
    // The codec refuses such an envelope; never trust a wrap that nothing can check.
    throw new AllWrapsFailedError('the envelope has several wraps but no KEK check', [], { index });
  }

  // Admission, then the order: closed breakers first.
  const ready: Array<{ entry: WrapEntry; provider: KmsProvider }> = [];
  const tripped: Array<{ entry: WrapEntry; provider: KmsProvider }> = [];
  for (const entry of entries) {
    if (options.opened?.entry.share === entry.share) continue;
    try {
      const provider = await deps.admit(entry);
      (deps.isOpen(entry.kmsName) ? tripped : ready).push({ entry, provider });
    } catch (err) {
      if (!(err instanceof KmsEnvelopeError)) throw err;
      note(entry, { ok: false, skipped: true, error: err });
    }
  }
  const order = [...ready, ...tripped];

  const started = performance.now();
  // Timers cleared when the unwrap ends (AbortSignal.timeout's live for the whole deadline).
  const overall = deadline(options.deadlineMs, options.signal);
  const opened: Opened[] = [];
  if (options.opened !== undefined) {
    opened.push({ entry: options.opened.entry, y: options.opened.kek });
    note(options.opened.entry, { ok: true, skipped: false });
  }
  let result: { kek: Kek; served: WrapEntry[] } | undefined;
  try {
    for (const [i, { entry, provider }] of order.entries()) {
      if (result !== undefined && options.exhaustive !== true) break;
      if (overall.signal.aborted) {
        note(entry, {
          ok: false,
          skipped: true,
          error: new DeadlineExceededError('not tried: the unwrap deadline passed', {
            index,
            slot: entry.kmsName,
            provider: entry.provider,
          }),
        });
        continue;
      }
      const left = options.deadlineMs - (performance.now() - started);
      const last = i === order.length - 1;
      const attempt = last ? undefined : deadline(Math.max(1, Math.floor(left / 2)), overall.signal);
      const context = wrapBindingOf(index, entry.kmsName as SlotName, blob, entry.share, entries.length);
      const t0 = performance.now();
      let y: Kek;
      try {
        y = await deps.unwrap(entry, provider, context, (attempt ?? overall).signal);
      } catch (err) {
        if (!(err instanceof KmsEnvelopeError)) throw err;
        note(entry, { ok: false, skipped: false, error: err }, performance.now() - t0);
        continue;
      } finally {
        attempt?.end();
      }
      const ms = performance.now() - t0;
      if (need === 1) {
        if (kekMatchesCheck(y, check)) {
          note(entry, { ok: true, skipped: false }, ms);
          if (result === undefined) result = { kek: y, served: [entry] };
          else y.zero();
        } else {
          y.zero();
          note(entry, { ok: false, skipped: false, error: mismatch(index, entry, 'its KEK') }, ms);
          tamper([entry], 'kek-check');
        }
        continue;
      }
      opened.push({ entry, y });
      note(entry, { ok: true, skipped: false }, ms);
      if (result === undefined && opened.length >= need) result = await firstMatch(opened, need, check);
    }
    if (need > 1 && opened.length >= need) {
      if (result === undefined) {
        // Enough shares, and no combination of them is the KEK: one or more of them is forged.
        for (const { entry } of opened) {
          note(entry, { ok: false, skipped: false, error: mismatch(index, entry, 'its share') });
        }
        tamper(
          opened.map((o) => o.entry),
          'combination',
        );
      } else {
        await checkOthers(opened, result, need, check, (entry) => {
          note(entry, { ok: false, skipped: false, error: mismatch(index, entry, 'its share') });
          tamper([entry], 'share');
        });
      }
    }
  } finally {
    overall.end();
    for (const { y } of opened) y.zero();
  }
  const all = entries.map(
    (entry) =>
      outcomes.get(entry.share) ?? {
        slot: entry.kmsName,
        provider: entry.provider,
        share: entry.share,
        ok: false,
        skipped: true,
      },
  );
  if (result === undefined) {
    const failures = all.flatMap((o) => (o.error === undefined ? [] : [{ slot: o.slot, error: o.error }]));
    const what =
      need === 1
        ? 'no wrap of the envelope unwrapped its KEK'
        : `fewer than ${need} shares of the KEK could be recovered`;
    throw new AllWrapsFailedError(what, failures, { index });
  }
  deps.telemetry.served(
    result.served.map((w) => w.kmsName),
    result.served.map((w) => w.provider),
    !result.served.some((w) => w.share === 1),
  );
  return { ...result, outcomes: all };
}

function mismatch(index: string, entry: WrapEntry, what: string): KekMismatchError {
  return new KekMismatchError(`${what} does not match the envelope's KEK check (refused: a tamper signal)`, {
    index,
    slot: entry.kmsName,
    provider: entry.provider,
  });
}

/**
 * The first combination of `need` opened shares that gives the KEK, among those with the newest
 * share: every other combination was tried when its own newest share came (so, share by share,
 * every combination is tried once).
 */
async function firstMatch(
  opened: readonly Opened[],
  need: number,
  check: Uint8Array,
): Promise<{ kek: Kek; served: WrapEntry[] } | undefined> {
  for (const set of combinationsWith(opened, need, opened.length - 1)) {
    const kek = await combineShares(set.map((o) => ({ share: o.entry.share, y: o.y })));
    if (kekMatchesCheck(kek, check)) return { kek, served: set.map((o) => o.entry) };
    kek.zero();
  }
  return undefined;
}

/** Each opened share outside the serving set, checked with `need` − 1 of the serving shares. */
async function checkOthers(
  opened: readonly Opened[],
  result: { served: readonly WrapEntry[] },
  need: number,
  check: Uint8Array,
  forged: (entry: WrapEntry) => void,
): Promise<void> {
  const serving = opened.filter((o) => result.served.includes(o.entry));
  for (const other of opened) {
    if (result.served.includes(other.entry)) continue;
    const set = [...serving.slice(0, need - 1), other];
    const kek = await combineShares(set.map((o) => ({ share: o.entry.share, y: o.y })));
    if (!kekMatchesCheck(kek, check)) forged(other.entry);
    kek.zero();
  }
}

/** A signal that aborts after `ms` or with `parent`; `end()` clears its timer and listener. */
function deadline(ms: number, parent: AbortSignal | undefined): { signal: AbortSignal; end(): void } {
  const controller = new AbortController();
  const abort = () => controller.abort();
  const timer = setTimeout(abort, ms);
  if (parent?.aborted) abort();
  else parent?.addEventListener('abort', abort, { once: true });
  return {
    signal: controller.signal,
    end() {
      clearTimeout(timer);
      parent?.removeEventListener('abort', abort);
    },
  };
}
