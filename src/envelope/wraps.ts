/**
 * The wraps of a multi-wrap envelope and its policy: the primary (the envelope's own fields) and
 * `wraps`, each with its share number; what each wrap is bound to; and, for threshold envelopes,
 * the Shamir split and combination of the KEK (`shamir-secret-sharing`, GF(256)).
 *
 * Share numbers are positions: the primary holds share 1 (x = 1), `wraps[i]` share i + 2. The
 * number is bound into each wrap (binding v3), so moving a wrap to another position breaks its
 * unwrap instead of feeding a share into the wrong x coordinate.
 *
 * @module
 */
import { combine, split } from 'shamir-secret-sharing';
import type { SharePolicy } from '../crypto/binding.js';
import { InvalidArgumentError } from '../errors.js';
import { KEK_LENGTH, Kek } from '../keys/kek.js';
import type { IndexName, SlotName } from '../names.js';
import type { WrapContext } from '../providers/provider.js';
import type { KmsBlob, KmsWrap } from './kms-blob.js';
import { MAX_WRAPS } from './kms-blob.js';

/** One wrap of an envelope with its position: share 1 is the primary. */
export interface WrapEntry extends KmsWrap {
  /** 1 for the primary, i + 2 for `wraps[i]` (the Shamir x coordinate of a threshold share). */
  readonly share: number;
}

/** Whether `blob` has further wraps besides its primary (or a threshold policy). */
export function isMultiWrap(blob: Pick<KmsBlob, 'wraps' | 'threshold'>): boolean {
  return (blob.wraps !== undefined && blob.wraps.length > 0) || blob.threshold !== undefined;
}

/** Every wrap of `blob`, the primary first, then `wraps` in stored order. */
export function wrapsOf(blob: KmsBlob): WrapEntry[] {
  const primary: WrapEntry = {
    kmsName: blob.kmsName,
    provider: blob.provider,
    keyId: blob.keyId,
    region: blob.region,
    wrappedKek: blob.wrappedKek,
    share: 1,
  };
  return [primary, ...(blob.wraps ?? []).map((wrap, i) => ({ ...wrap, share: i + 2 }))];
}

/** The slot names of `blob`'s wraps, primary first. */
export function slotsOf(blob: KmsBlob): string[] {
  return [blob.kmsName, ...(blob.wraps ?? []).map((wrap) => wrap.kmsName)];
}

/**
 * What the wrap with share number `share` (of `shares`) of an envelope with these fields is bound
 * to: index, its own slot, the envelope's context, version and creation id (schema 2 and 3), and
 * for a threshold envelope the policy and the share number. For a single-wrap envelope (or any
 * wrap of an any-one envelope) `share` and `shares` play no part.
 */
export function wrapBindingOf(
  index: IndexName,
  slot: SlotName,
  blob: Pick<KmsBlob, 'encryptionContext' | 'version' | 'creationId' | 'threshold'>,
  share = 1,
  shares = 1,
): WrapContext {
  const base = { index, slot, encryptionContext: blob.encryptionContext };
  if (blob.creationId === undefined) return base;
  const withGeneration = { ...base, version: blob.version, creationId: blob.creationId };
  if (blob.threshold === undefined) return withGeneration;
  const policy: SharePolicy = { threshold: blob.threshold, shares, share };
  return { ...withGeneration, policy };
}

/**
 * Checks a requested policy over `slots`: at most {@link MAX_WRAPS} distinct slots; a threshold is
 * a whole number from 2 to the number of slots.
 * @throws InvalidArgumentError
 */
export function checkPolicy(slots: readonly string[], threshold: number | undefined, index?: string): void {
  const where = index === undefined ? {} : { index };
  if (slots.length === 0) throw new InvalidArgumentError('at least one slot is needed', where);
  if (slots.length > MAX_WRAPS) {
    throw new InvalidArgumentError(`an envelope has at most ${MAX_WRAPS} slots`, where);
  }
  if (new Set(slots).size !== slots.length) {
    throw new InvalidArgumentError('a slot is named twice', where);
  }
  if (
    threshold !== undefined &&
    (!Number.isInteger(threshold) || threshold < 2 || threshold > slots.length)
  ) {
    throw new InvalidArgumentError(
      `threshold must be a whole number from 2 to the number of slots (${slots.length})`,
      where,
    );
  }
}

/**
 * Splits `kek` into `shares` Shamir shares (over GF(256)), any `threshold` of which recover it; returns the
 * 32-byte y-values of the shares with x = 1 … `shares`, in that order (share i + 1 at index i).
 * The caller zeroes them.
 *
 * The library picks x coordinates at random; all 255 are made and those with x = 1 … n kept (the
 * others are wiped), so the position of a wrap is its x coordinate and nothing else is stored.
 */
export async function splitKek(kek: Kek, shares: number, threshold: number): Promise<Kek[]> {
  // The library checks `constructor === Uint8Array`: a Buffer would be refused.
  const secret = new Uint8Array(kek.expose());
  let all: Uint8Array[] = [];
  try {
    all = await split(secret, 255, threshold);
    const byX = new Map(all.map((share) => [share[KEK_LENGTH]!, share]));
    const out: Kek[] = [];
    for (let x = 1; x <= shares; x++) out.push(Kek.fromBytes(byX.get(x)!.subarray(0, KEK_LENGTH)));
    return out;
  } finally {
    secret.fill(0);
    for (const share of all) share.fill(0);
  }
}

/** One unwrapped share: its x coordinate (share number) and y-value. */
export interface UnwrappedShare {
  readonly share: number;
  readonly y: Kek;
}

/**
 * The KEK that the given shares (at least two, distinct share numbers) interpolate to. Whether
 * it is the index's KEK is for the caller to check (`kek_check`): a forged share gives another
 * value, never an error. The caller zeroes the result.
 *
 * Limitation: the library's intermediate arrays (one byte column at a time) are not wiped.
 */
export async function combineShares(shares: readonly UnwrappedShare[]): Promise<Kek> {
  const points = shares.map(({ share, y }) => {
    const point = new Uint8Array(KEK_LENGTH + 1);
    point.set(y.expose());
    point[KEK_LENGTH] = share;
    return point;
  });
  try {
    return Kek.fromBytesAndWipe(await combine(points));
  } finally {
    for (const point of points) point.fill(0);
  }
}

/** Every subset of `items` of size `k` that contains `items[must]`, in index order. */
export function combinationsWith<T>(items: readonly T[], k: number, must: number): T[][] {
  const others = items.filter((_, i) => i !== must);
  const out: T[][] = [];
  const pick = (start: number, chosen: T[]) => {
    if (chosen.length === k - 1) {
      out.push([...chosen, items[must]!]);
      return;
    }
    for (let i = start; i < others.length; i++) pick(i + 1, [...chosen, others[i]!]);
  };
  if (k >= 1 && k <= items.length) pick(0, []);
  return out;
}
