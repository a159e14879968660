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

/** The envelope's fields as aligned text lines. Wrapped bytes are shown by length and fingerprint. */
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
  return rows.map(([k, v]) => `  ${k.padEnd(19)} ${v}`).join('\n');
}

/** The envelope as JSON-ready data: snake_case names of the schema, bytes in base64. */
export function blobToJson(blob: KmsBlob): Record<string, unknown> {
  return {
    index_name: blob.indexName,
    kms_name: blob.kmsName,
    provider: blob.provider,
    key_id: blob.keyId,
    region: blob.region,
    wrapped_kek: Buffer.from(blob.wrappedKek).toString('base64'),
    version: blob.version,
    created_at: blob.createdAt,
    updated_at: blob.updatedAt,
    encryption_context: blob.encryptionContext,
    kek_check: blob.kekCheck === undefined ? null : Buffer.from(blob.kekCheck).toString('base64'),
    schema_version: blob.schemaVersion,
  };
}
