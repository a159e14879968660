import { createHash } from 'node:crypto';
import type { KmsBlob } from '../envelope/kms-blob.js';

/** A short, non-secret fingerprint of wrapped bytes, to show that they changed. */
export function fingerprint(bytes: Uint8Array): string {
  return bytes.length === 0
    ? '(none)'
    : `sha256:${createHash('sha256').update(bytes).digest('hex').slice(0, 16)}`;
}

function isoTime(seconds: number): string {
  return `${new Date(seconds * 1000).toISOString()} (${seconds})`;
}

/**
 * The envelope's fields as aligned text lines. Wrapped bytes are shown by length and fingerprint;
 * a multi-wrap envelope adds its policy and one line per further wrap (slot, provider, key id).
 */
export function formatBlob(blob: KmsBlob): string {
  const context = Object.entries(blob.encryptionContext)
    .map(([k, v]) => `${k}=${v}`)
    .join(', ');
  const rows: [string, string][] = [
    ['index_name', blob.indexName],
    ['kms_name', blob.kmsName],
    ['provider', blob.provider],
    ['key_id', blob.keyId || '(none)'],
    ['region', blob.region || '(none)'],
    ['wrapped_kek', `${blob.wrappedKek.length} bytes, ${fingerprint(blob.wrappedKek)}`],
    ['version', String(blob.version)],
    ['created_at', isoTime(blob.createdAt)],
    ['updated_at', isoTime(blob.updatedAt)],
    ['encryption_context', context || '(none)'],
    ['kek_check', blob.kekCheck === undefined ? '(none)' : `${blob.kekCheck.length} bytes`],
    ['schema_version', String(blob.schemaVersion)],
  ];
  const wraps = blob.wraps ?? [];
  if (wraps.length > 0) {
    rows.push([
      'policy',
      blob.threshold
        ? `any ${blob.threshold} of ${wraps.length + 1} wraps (Shamir shares)`
        : `any one of ${wraps.length + 1} wraps`,
    ]);
    wraps.forEach((wrap, i) => {
      rows.push([
        `wraps[${i}]`,
        `slot ${wrap.kmsName}, provider ${wrap.provider}, key_id ${wrap.keyId || '(none)'}${wrap.region ? `, region ${wrap.region}` : ''}, ${wrap.wrappedKek.length} bytes, ${fingerprint(wrap.wrappedKek)}`,
      ]);
    });
  }
  return rows.map(([k, v]) => `  ${k.padEnd(19)} ${v}`).join('\n');
}

const base64 = (bytes: Uint8Array) => Buffer.from(bytes).toString('base64');

/**
 * The envelope as JSON-ready data: the camelCase field names of {@link KmsBlob} (the one key
 * style of every `--json` output), bytes in base64, `kekCheck` and `creationId` null when absent.
 * Further wraps (`wraps`) and `threshold` appear only on an envelope that has them.
 */
export function blobToJson(blob: KmsBlob): Record<string, unknown> {
  return {
    indexName: blob.indexName,
    kmsName: blob.kmsName,
    provider: blob.provider,
    keyId: blob.keyId,
    region: blob.region,
    wrappedKek: base64(blob.wrappedKek),
    version: blob.version,
    createdAt: blob.createdAt,
    updatedAt: blob.updatedAt,
    encryptionContext: blob.encryptionContext,
    kekCheck: blob.kekCheck === undefined ? null : base64(blob.kekCheck),
    creationId:
      blob.creationId === undefined || blob.creationId.length === 0 ? null : base64(blob.creationId),
    schemaVersion: blob.schemaVersion,
    ...(blob.wraps && blob.wraps.length > 0
      ? {
          wraps: blob.wraps.map((w) => ({
            kmsName: w.kmsName,
            provider: w.provider,
            keyId: w.keyId,
            region: w.region,
            wrappedKek: base64(w.wrappedKek),
          })),
        }
      : {}),
    ...(blob.threshold !== undefined && blob.threshold > 0 ? { threshold: blob.threshold } : {}),
  };
}
