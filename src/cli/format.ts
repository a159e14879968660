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

/** Further wraps and a threshold, in a build whose envelopes have them (multi-slot envelopes). */
interface MultiWrapFields {
  readonly wraps?: readonly {
    readonly kmsName: string;
    readonly provider: string;
    readonly keyId: string;
    readonly region: string;
    readonly wrappedKek: Uint8Array;
  }[];
  readonly threshold?: number;
}

const base64 = (bytes: Uint8Array) => Buffer.from(bytes).toString('base64');

/**
 * The envelope as JSON-ready data: the camelCase field names of {@link KmsBlob} (the one key
 * style of every `--json` output), bytes in base64, `kekCheck` and `creationId` null when absent.
 * Further wraps (`wraps`) and `threshold` appear only on an envelope that has them.
 */
export function blobToJson(blob: KmsBlob): Record<string, unknown> {
  const multi = blob as KmsBlob & MultiWrapFields;
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
    ...(multi.wraps && multi.wraps.length > 0
      ? {
          wraps: multi.wraps.map((w) => ({
            kmsName: w.kmsName,
            provider: w.provider,
            keyId: w.keyId,
            region: w.region,
            wrappedKek: base64(w.wrappedKek),
          })),
        }
      : {}),
    ...(multi.threshold !== undefined && multi.threshold > 0 ? { threshold: multi.threshold } : {}),
  };
}
