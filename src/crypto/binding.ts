/**
 * The bytes that bind a wrapped KEK to its index and slot: used as AES-GCM AAD by the `local`
 * and `aws` providers and as AAD by `gcp-kms` and `azure-kv` (through `bindingBytes` in
 * `src/providers/support.ts`, which also has the encryption-context form `aws-kms` uses).
 *
 * @module
 */

const LABEL = 'kms-envelope/kek-binding/v1';
/** Schema 2 envelopes: the same fields, then the version and the creation id. */
const LABEL_V2 = 'kms-envelope/kek-binding/v2';
/** Schema 3 (threshold) envelopes: the v2 fields, then the policy and the wrap's share number. */
const LABEL_V3 = 'kms-envelope/kek-binding/v3';

/**
 * The policy of a threshold envelope as one wrap is bound to it: any `threshold` of the `shares`
 * Shamir shares recover the KEK, and this wrap holds share number `share` (its x coordinate:
 * 1 for the primary, i + 2 for `wraps[i]`).
 */
export interface SharePolicy {
  /** k: how many shares recover the KEK (2 … shares). */
  readonly threshold: number;
  /** n: how many wraps (shares) the envelope has. */
  readonly shares: number;
  /** This wrap's share number, 1 … n. */
  readonly share: number;
}

/** What a wrapped KEK is bound to. */
export interface KekBinding {
  /** Provider id (`local`, `aws`, ...). */
  readonly provider: string;
  /** KMS slot name (`kms_name`). */
  readonly slot: string;
  /** Index name. */
  readonly index: string;
  /** Extra context, bound too; order does not matter. */
  readonly encryptionContext: Readonly<Record<string, string>>;
  /** Envelope version (schema 2 envelopes: bound with {@link creationId}). */
  readonly version?: number | undefined;
  /**
   * The envelope's creation id (schema 2). When present the binding is the v2 form, which adds
   * `version` and the creation id, so an old version of the envelope (or one of an earlier
   * creation of the index) replayed into the store does not unwrap as the current one.
   */
  readonly creationId?: Uint8Array | undefined;
  /**
   * Threshold envelopes (schema 3, always with a creation id): the policy and this wrap's share.
   * When present the binding is the v3 form, so a store writer who changes the threshold, the
   * number of wraps or a wrap's position makes the wraps fail to unwrap.
   */
  readonly policy?: SharePolicy | undefined;
}

/**
 * The binding as an unambiguous byte string: a label, then each field as a 4-byte big-endian
 * length and its UTF-8 bytes, the extra context sorted by key; in the v2 form (with a creation
 * id) then the version as decimal text and the creation id's bytes, each length-prefixed too; in
 * the v3 form (with a policy) then the threshold, the number of shares and the share number as
 * decimal text, each length-prefixed. Two different bindings never give the same bytes. The returned buffer may be shared: do not
 * modify it.
 */
export function bindingAad(binding: KekBinding): Buffer {
  return bindingAadOf(binding.provider, binding);
}

/**
 * {@link bindingAad} of `provider` and a wrap context, without building a binding object first
 * (the per-request unwrap path). The returned buffer may be shared: do not modify it.
 */
export function bindingAadOf(provider: string, context: Omit<KekBinding, 'provider'>): Buffer {
  // The hot path sees the same few bindings again and again: a nested map (provider, slot,
  // index) finds them without building a key string. Bindings with an extra context are rarer
  // and are encoded each time. A v2 binding is cached as the last one seen for its triple and
  // used again only for the same version and creation id.
  if (!hasKeys(context.encryptionContext) && context.policy === undefined) {
    const cached = aadCache.get(provider)?.get(context.slot)?.get(context.index);
    if (cached !== undefined && sameGeneration(cached, context)) return cached.aad;
    const aad = encodeBinding(provider, context);
    remember(provider, context.slot, context.index, {
      aad,
      version: context.version,
      creationId: context.creationId && Buffer.from(context.creationId),
    });
    return aad;
  }
  return encodeBinding(provider, context);
}

/** A cached binding and the generation (version, creation id) it was made for. */
interface CachedAad {
  readonly aad: Buffer;
  readonly version: number | undefined;
  readonly creationId: Buffer | undefined;
}

function sameGeneration(cached: CachedAad, context: Omit<KekBinding, 'provider'>): boolean {
  const id = context.creationId;
  if (id === undefined || cached.creationId === undefined) return id === cached.creationId;
  return cached.version === context.version && cached.creationId.equals(id);
}

function hasKeys(record: Readonly<Record<string, string>>): boolean {
  for (const _ in record) return true;
  return false;
}

// Bounded: cleared when full, which costs a few re-encodings, never memory.
const AAD_CACHE_SIZE = 4096;
const aadCache = new Map<string, Map<string, Map<string, CachedAad>>>();
let aadCached = 0;

function remember(provider: string, slot: string, index: string, aad: CachedAad): void {
  if (aadCached >= AAD_CACHE_SIZE) {
    aadCache.clear();
    aadCached = 0;
  }
  let bySlot = aadCache.get(provider);
  if (bySlot === undefined) {
    bySlot = new Map();
    aadCache.set(provider, bySlot);
  }
  let byIndex = bySlot.get(slot);
  if (byIndex === undefined) {
    byIndex = new Map();
    bySlot.set(slot, byIndex);
  }
  if (!byIndex.has(index)) aadCached++;
  byIndex.set(index, aad);
}

function encodeBinding(provider: string, binding: Omit<KekBinding, 'provider'>): Buffer {
  const v2 = binding.creationId !== undefined;
  const policy = v2 ? binding.policy : undefined;
  const label = policy !== undefined ? LABEL_V3 : v2 ? LABEL_V2 : LABEL;
  const parts: Buffer[] = [label, provider, binding.slot, binding.index].map((part) =>
    Buffer.from(part, 'utf8'),
  );
  for (const key of Object.keys(binding.encryptionContext).sort()) {
    parts.push(Buffer.from(key, 'utf8'), Buffer.from(binding.encryptionContext[key] ?? '', 'utf8'));
  }
  if (v2) {
    parts.push(Buffer.from(String(binding.version ?? 0), 'utf8'), Buffer.from(binding.creationId!));
  }
  if (policy !== undefined) {
    for (const n of [policy.threshold, policy.shares, policy.share])
      parts.push(Buffer.from(String(n), 'utf8'));
  }
  const out = Buffer.allocUnsafe(parts.reduce((n, b) => n + 4 + b.length, 0));
  let at = 0;
  for (const b of parts) {
    at = out.writeUInt32BE(b.length, at);
    at += b.copy(out, at);
  }
  return out;
}
