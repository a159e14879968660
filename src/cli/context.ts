import { resolve } from 'node:path';
import { KmsEnvelopeClient } from '../client.js';
import { ConfigError } from '../errors.js';
import { Kek } from '../keys/kek.js';
import { decodeKeyMaterial, defaultSecretFilePrefixes, resolveSecretRef } from '../keys/secret-ref.js';
import { KmsRegistry } from '../providers/registry.js';
import { type KmsSlotInput, loadSlotsConfig } from '../providers/slot.js';
import { StorageConfig } from '../storage/config.js';

/** Global options every command accepts. */
export interface GlobalOptions {
  store?: string;
  config?: string;
  slot?: string;
  provider?: string;
  keyId?: string;
  region?: string;
  endpoint?: string;
  masterKey?: string;
  roleArn?: string;
  externalId?: string;
  secretDir?: string[];
}

/** Store used when neither `--store` nor `KMS_ENVELOPE_STORE` is given. */
export const DEFAULT_STORE = 'disk:.kms-envelope/indexes';

/**
 * Builds the client from the global options: the store from `--store` / `KMS_ENVELOPE_STORE`,
 * slots from `--config` / `KMS_ENVELOPE_CONFIG` plus one slot from the flags (`--provider` with
 * `--slot`, `--key-id`, `--region`, `--endpoint`, `--master-key`).
 */
export function clientFromOptions(
  options: GlobalOptions,
  env: NodeJS.ProcessEnv = process.env,
): KmsEnvelopeClient {
  const storeSpec = options.store ?? env.KMS_ENVELOPE_STORE ?? DEFAULT_STORE;
  const store = StorageConfig.parse(
    storeSpec.startsWith('disk:') ? `disk:${resolve(storeSpec.slice(5))}` : storeSpec,
  );
  const slots: KmsSlotInput[] = [];
  const configPath = options.config ?? env.KMS_ENVELOPE_CONFIG;
  if (configPath) slots.push(...loadSlotsConfig(configPath, env));
  if (options.provider) {
    slots.push({
      name: options.slot ?? 'default',
      provider: options.provider,
      ...(options.keyId ? { keyId: options.keyId } : {}),
      ...(options.region ? { region: options.region } : {}),
      ...(options.endpoint ? { endpoint: options.endpoint } : {}),
      ...(options.masterKey ? { masterKey: options.masterKey } : {}),
      ...(options.roleArn ? { roleArn: options.roleArn } : {}),
      ...(options.externalId ? { externalId: options.externalId } : {}),
    });
  }
  const secretDirs = (options.secretDir ?? []).map((dir) => resolve(dir));
  return new KmsEnvelopeClient({
    store,
    kms: new KmsRegistry({
      slots,
      secrets: { allowedFilePrefixes: [...defaultSecretFilePrefixes(env), ...secretDirs] },
    }),
  });
}

/** Reads a caller-supplied KEK (provider `none`) from a secret reference. */
export async function kekFromRef(ref: string, options: GlobalOptions): Promise<Kek> {
  const secret = await resolveSecretRef(ref, {
    allowedFilePrefixes: [
      ...defaultSecretFilePrefixes(),
      ...(options.secretDir ?? []).map((d) => resolve(d)),
    ],
  });
  try {
    const bytes = decodeKeyMaterial(secret, 32, 'the KEK given with --kek');
    try {
      return Kek.fromBytes(bytes);
    } finally {
      bytes.fill(0);
    }
  } finally {
    secret.fill(0);
  }
}

/** Parses repeated `--context key=value` flags. */
export function parseContextFlags(pairs: readonly string[] = []): Record<string, string> {
  const context: Record<string, string> = {};
  for (const pair of pairs) {
    const eq = pair.indexOf('=');
    if (eq <= 0) throw new ConfigError(`--context takes key=value, got "${pair}"`);
    context[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
  return context;
}
