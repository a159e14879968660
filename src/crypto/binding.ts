/**
 * The bytes that bind a wrapped KEK to its index and slot: used as AES-GCM AAD by the `local`
 * and `aws` providers and as AAD by `gcp-kms` and `azure-kv` (through `bindingBytes` in
 * `src/providers/support.ts`, which also has the encryption-context form `aws-kms` uses).
 *
 * @module
 */

const LABEL = 'kms-envelope/kek-binding/v1';

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
}

/**
 * The binding as an unambiguous byte string: a label, then each field as a 4-byte big-endian
 * length and its UTF-8 bytes, the extra context sorted by key. Two different bindings never give
 * the same bytes. The returned buffer may be shared: do not modify it.
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
  // and are encoded each time.
  if (!hasKeys(context.encryptionContext)) {
    const bySlot = aadCache.get(provider);
    const cached = bySlot?.get(context.slot)?.get(context.index);
    if (cached !== undefined) return cached;
    const aad = encodeBinding(provider, context);
    remember(provider, context.slot, context.index, aad);
    return aad;
  }
  return encodeBinding(provider, context);
}

function hasKeys(record: Readonly<Record<string, string>>): boolean {
  for (const _ in record) return true;
  return false;
}

// Bounded: cleared when full, which costs a few re-encodings, never memory.
const AAD_CACHE_SIZE = 4096;
const aadCache = new Map<string, Map<string, Map<string, Buffer>>>();
let aadCached = 0;

function remember(provider: string, slot: string, index: string, aad: Buffer): void {
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
  byIndex.set(index, aad);
  aadCached++;
}

function encodeBinding(provider: string, binding: Omit<KekBinding, 'provider'>): Buffer {
  const parts = [LABEL, provider, binding.slot, binding.index];
  for (const key of Object.keys(binding.encryptionContext).sort()) {
    parts.push(key, binding.encryptionContext[key] ?? '');
  }
  const encoded = parts.map((part) => Buffer.from(part, 'utf8'));
  const out = Buffer.allocUnsafe(encoded.reduce((n, b) => n + 4 + b.length, 0));
  let at = 0;
  for (const b of encoded) {
    at = out.writeUInt32BE(b.length, at);
    at += b.copy(out, at);
  }
  return out;
}
