/**
 * Looks for key bytes anywhere in an object graph (an error with its causes, SDK responses and
 * requests): inside every byte array, and in every string in hex, base64, base64url or latin1.
 * Rendered forms (`inspect`, JSON) show byte arrays as spaced hex or number lists, which a text
 * search for the encodings never matches; this walks the values themselves.
 */

function bytesContain(haystack: Uint8Array, needle: Uint8Array): boolean {
  if (needle.length === 0 || haystack.length < needle.length) return false;
  return Buffer.from(haystack.buffer, haystack.byteOffset, haystack.byteLength).indexOf(needle) >= 0;
}

/**
 * The path of the first place in `root` that holds `secret` (bytes or text encodings), or
 * `undefined`. Own properties, enumerable or not, are followed (getters are not called), and
 * Map / Set entries; cycles are guarded.
 */
export function findSecret(root: unknown, secret: Uint8Array, maxDepth = 60): string | undefined {
  const key = Buffer.from(secret);
  const texts = [
    key.toString('hex'),
    key.toString('base64'),
    key.toString('base64url'),
    key.toString('latin1'),
  ];
  const seen = new WeakSet<object>();
  const walk = (value: unknown, path: string, depth: number): string | undefined => {
    if (typeof value === 'string') {
      return texts.some((t) => value.includes(t) || value.toLowerCase().includes(t)) ? path : undefined;
    }
    if (typeof value !== 'object' || value === null || depth > maxDepth) return undefined;
    if (seen.has(value)) return undefined;
    seen.add(value);
    if (ArrayBuffer.isView(value)) {
      const view = new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
      return bytesContain(view, key) ? path : undefined;
    }
    if (value instanceof ArrayBuffer) return bytesContain(new Uint8Array(value), key) ? path : undefined;
    if (value instanceof Map) {
      for (const [k, v] of value) {
        const found = walk(k, `${path}.<key>`, depth + 1) ?? walk(v, `${path}.get(…)`, depth + 1);
        if (found) return found;
      }
    }
    if (value instanceof Set) {
      for (const v of value) {
        const found = walk(v, `${path}.<entry>`, depth + 1);
        if (found) return found;
      }
    }
    for (const prop of Reflect.ownKeys(value)) {
      const descriptor = Object.getOwnPropertyDescriptor(value, prop);
      if (descriptor === undefined || !('value' in descriptor)) continue;
      const found = walk(descriptor.value, `${path}.${String(prop)}`, depth + 1);
      if (found) return found;
    }
    return undefined;
  };
  return walk(root, '$', 0);
}
