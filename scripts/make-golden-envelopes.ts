/**
 * Writes the golden envelopes under test/vectors/envelopes/: one per provider kind, as the
 * stored bytes (`<kind>.kmsb`) and their expected fields (`<kind>.json`, bytes in base64).
 * Deterministic: run `npx tsx scripts/make-golden-envelopes.ts` and the files do not change
 * unless the encoder does — which the tests would catch first.
 */
import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { encodeKmsBlob } from '../src/envelope/codec.js';
import type { KmsBlob } from '../src/envelope/kms-blob.js';

const dir = join(import.meta.dirname, '../test/vectors/envelopes');

/** Deterministic pseudo-random bytes standing in for a provider's wrapped KEK. */
function bytes(label: string, length: number): Uint8Array {
  const out = new Uint8Array(length);
  for (let i = 0, block = 0; i < length; block++) {
    const digest = createHash('sha256').update(`${label}/${block}`).digest();
    out.set(digest.subarray(0, Math.min(32, length - i)), i);
    i += 32;
  }
  return out;
}

const base = { version: 1, createdAt: 1_763_900_000, updatedAt: 1_763_900_000, schemaVersion: 1 };

const golden: Record<string, KmsBlob> = {
  none: {
    ...base,
    kmsName: 'byok',
    provider: 'none',
    keyId: '',
    region: '',
    wrappedKek: new Uint8Array(0),
    indexName: 'customers',
    encryptionContext: {},
    kekCheck: bytes('none/check', 16),
  },
  local: {
    ...base,
    kmsName: 'dev-local',
    provider: 'local',
    keyId: 'local:3f2a9c1d0b8e7a65',
    region: '',
    wrappedKek: bytes('local/wrapped', 60),
    indexName: 'orders',
    encryptionContext: { tenant: 'acme' },
    kekCheck: bytes('local/check', 16),
  },
  aws: {
    ...base,
    version: 2,
    updatedAt: 1_763_990_000,
    kmsName: 'prod-secret',
    provider: 'aws',
    keyId:
      'arn:aws:secretsmanager:eu-west-1:123456789012:secret:kms-envelope/master-AbCdEf#version=01234567-89ab-cdef-0123-456789abcdef',
    region: 'eu-west-1',
    wrappedKek: bytes('aws/wrapped', 60),
    indexName: 'invoices-2026',
    encryptionContext: {},
    kekCheck: bytes('aws/check', 16),
  },
  'aws-kms': {
    ...base,
    kmsName: 'prod-kms',
    provider: 'aws-kms',
    keyId: 'arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab',
    region: 'eu-west-1',
    wrappedKek: bytes('aws-kms/wrapped', 184),
    indexName: 'payments',
    encryptionContext: { env: 'prod', team: 'search' },
    kekCheck: bytes('aws-kms/check', 16),
  },
  'gcp-kms': {
    ...base,
    version: 3,
    updatedAt: 1_764_000_000,
    kmsName: 'gcp-prod',
    provider: 'gcp-kms',
    keyId: 'projects/acme-prod/locations/europe-west1/keyRings/search/cryptoKeys/kek/cryptoKeyVersions/4',
    region: 'europe-west1',
    wrappedKek: bytes('gcp-kms/wrapped', 113),
    indexName: 'catalog.v2',
    encryptionContext: {},
    kekCheck: undefined,
  },
  'azure-kv': {
    ...base,
    kmsName: 'azure-prod',
    provider: 'azure-kv',
    keyId: 'https://acme-search.vault.azure.net/keys/kek/0123456789abcdef0123456789abcdef',
    region: 'westeurope',
    wrappedKek: bytes('azure-kv/wrapped', 256),
    indexName: 'docs_2026-q4',
    encryptionContext: { 'kms-envelope:binding': 'sha256' },
    kekCheck: bytes('azure-kv/check', 16),
  },
};

// Multi-wrap envelopes (issue #15): any one of three wraps (schema 2), and 2 of 3 Shamir shares
// (schema 3). The wraps' bytes stand in for each provider's output, as above.
const generation = {
  version: 4,
  createdAt: 1_763_900_000,
  updatedAt: 1_764_100_000,
  creationId: bytes('multi/creation', 16),
  kekCheck: bytes('multi/check', 16),
};
const secondaries = [
  {
    kmsName: 'gcp-eu',
    provider: 'gcp-kms',
    keyId: 'projects/acme-prod/locations/europe-west1/keyRings/search/cryptoKeys/kek/cryptoKeyVersions/2',
    region: 'europe-west1',
    wrappedKek: bytes('multi/gcp', 113),
  },
  {
    kmsName: 'recovery',
    provider: 'recipient',
    keyId: 'recipient:x25519-mlkem768:0123456789abcdef',
    region: '',
    wrappedKek: bytes('multi/recipient', 1169),
  },
];
golden['multi-anyof'] = {
  ...generation,
  schemaVersion: 2,
  kmsName: 'aws-eu',
  provider: 'aws-kms',
  keyId: 'arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab',
  region: 'eu-west-1',
  wrappedKek: bytes('multi/aws', 184),
  indexName: 'payments',
  encryptionContext: { env: 'prod' },
  wraps: secondaries,
};
golden['multi-threshold'] = {
  ...generation,
  schemaVersion: 3,
  kmsName: 'aws-eu',
  provider: 'aws-kms',
  keyId: 'arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab',
  region: 'eu-west-1',
  wrappedKek: bytes('multi/aws-share', 184),
  indexName: 'payments',
  encryptionContext: {},
  wraps: [
    { ...secondaries[0]!, kmsName: 'gcp-eu', wrappedKek: bytes('multi/gcp-share', 113) },
    {
      kmsName: 'azure-eu',
      provider: 'azure-kv',
      keyId: 'https://acme-search.vault.azure.net/keys/kek/0123456789abcdef0123456789abcdef',
      region: 'westeurope',
      wrappedKek: bytes('multi/azure-share', 256),
    },
  ],
  threshold: 2,
};

for (const [kind, blob] of Object.entries(golden)) {
  writeFileSync(join(dir, `${kind}.kmsb`), encodeKmsBlob(blob));
  const fields = {
    ...blob,
    wrappedKek: Buffer.from(blob.wrappedKek).toString('base64'),
    kekCheck: blob.kekCheck === undefined ? null : Buffer.from(blob.kekCheck).toString('base64'),
    ...(blob.creationId === undefined ? {} : { creationId: Buffer.from(blob.creationId).toString('base64') }),
    ...(blob.wraps === undefined
      ? {}
      : {
          wraps: blob.wraps.map((w) => ({ ...w, wrappedKek: Buffer.from(w.wrappedKek).toString('base64') })),
        }),
  };
  writeFileSync(join(dir, `${kind}.json`), `${JSON.stringify(fields, null, 2)}\n`);
}
console.log(`wrote ${Object.keys(golden).length} golden envelopes to ${dir}`);
