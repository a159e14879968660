import { randomBytes } from 'node:crypto';
import type { KmsBlob } from '../../src/envelope/kms-blob.js';

/** A valid envelope for `index`, with overrides. */
export function sampleBlob(index: string, overrides: Partial<KmsBlob> = {}): KmsBlob {
  return {
    kmsName: 'dev',
    provider: 'local',
    keyId: 'local:0123456789abcdef',
    region: '',
    wrappedKek: new Uint8Array(randomBytes(60)),
    version: 1,
    createdAt: 1_763_900_000,
    indexName: index,
    encryptionContext: {},
    schemaVersion: 2,
    updatedAt: 1_763_900_000,
    kekCheck: new Uint8Array(randomBytes(16)),
    creationId: new Uint8Array(randomBytes(16)),
    ...overrides,
  };
}
