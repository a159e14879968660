import { resolve } from 'node:path';
import { KmsEnvelopeClient } from '../client.js';
import { InvalidArgumentError } from '../errors.js';
import { Kek } from '../keys/kek.js';
import { decodeKeyMaterial, defaultSecretFilePrefixes, resolveSecretRef } from '../keys/secret-ref.js';
import { KmsRegistry } from '../providers/registry.js';
import { type KmsSlotInput, loadSlotsConfig } from '../providers/slot.js';
import { StorageConfig } from '../storage/config.js';
import type { EnvelopeStore } from '../storage/store.js';
import type { CliOutput } from './output.js';

/** Global options every command accepts (parsed and validated by commander, see ./parsers.ts). */
export interface GlobalOptions {
  store?: string;
  redisPrefix?: string;
  config?: string;
  /** Every `--slot` given, in order (most commands take one; `create` wraps with each). */
  slot?: string[];
  provider?: string;
  keyId?: string;
  region?: string;
  endpoint?: string;
  masterKey?: string;
  roleArn?: string;
  externalId?: string;
  secretDir?: string[];
  json?: boolean;
  quiet?: boolean;
}

/** What every command is given: the output of this run and the global options once parsed. */
export interface CliContext {
  readonly out: CliOutput;
  readonly globals: () => GlobalOptions;
  /** Where values and tokens are read from (`process.stdin`, or a stream in tests). */
  readonly stdin: NodeJS.ReadableStream & { isTTY?: boolean };
}

/** Store used when neither `--store` nor `KMS_ENVELOPE_STORE` is given. */
export const DEFAULT_STORE = 'disk:.kms-envelope/indexes';

/** The slot name the `--provider` flags define when no `--slot` is given. */
export const FLAG_SLOT = 'default';

/** The store spec of this run: `--store`, else `$KMS_ENVELOPE_STORE`, else {@link DEFAULT_STORE}. */
export function storeSpec(options: GlobalOptions, env: NodeJS.ProcessEnv = process.env): string {
  return options.store ?? env.KMS_ENVELOPE_STORE ?? DEFAULT_STORE;
}

/**
 * The store of the global options; `--redis-prefix` becomes the Redis store's `keyPrefix`.
 * @throws InvalidArgumentError for `--redis-prefix` with a store that is not Redis, and as
 * `StorageConfig.parse`.
 */
export function storeFromOptions(
  options: GlobalOptions,
  env: NodeJS.ProcessEnv = process.env,
): EnvelopeStore {
  const spec = storeSpec(options, env);
  if (options.redisPrefix !== undefined) {
    if (!/^rediss?:\/\//.test(spec))
      throw new InvalidArgumentError('--redis-prefix is for a Redis store (--store redis://host:port)');
    return StorageConfig.redis({ url: spec, keyPrefix: options.redisPrefix });
  }
  return StorageConfig.parse(spec.startsWith('disk:') ? `disk:${resolve(spec.slice(5))}` : spec);
}

/** The folders `file:` secret references may read from: the defaults plus every `--secret-dir`. */
export function secretFilePrefixes(options: GlobalOptions, env: NodeJS.ProcessEnv = process.env): string[] {
  return [...defaultSecretFilePrefixes(env), ...(options.secretDir ?? []).map((dir) => resolve(dir))];
}

/**
 * The one slot a command works with: the `--slot` given, or {@link FLAG_SLOT} when `--provider`
 * defines one; `undefined` when neither is given.
 * @throws InvalidArgumentError when `--slot` is given more than once (only `create` takes several).
 */
export function oneSlot(options: GlobalOptions, command: string): string | undefined {
  const slots = options.slot ?? [];
  if (slots.length > 1) throw new InvalidArgumentError(`${command} takes one --slot, got ${slots.length}`);
  return slots[0] ?? (options.provider ? FLAG_SLOT : undefined);
}

/**
 * Builds the client from the global options: the store from `--store` / `KMS_ENVELOPE_STORE`
 * (with `--redis-prefix`), slots from `--config` / `KMS_ENVELOPE_CONFIG` plus one slot from the
 * flags (`--provider`, named by the first `--slot`, with `--key-id`, `--region`, `--endpoint`,
 * `--master-key`, `--role-arn`, `--external-id`).
 */
export function clientFromOptions(
  options: GlobalOptions,
  env: NodeJS.ProcessEnv = process.env,
): KmsEnvelopeClient {
  const store = storeFromOptions(options, env);
  const slots: KmsSlotInput[] = [];
  const configPath = options.config ?? env.KMS_ENVELOPE_CONFIG;
  if (configPath) slots.push(...loadSlotsConfig(configPath, env));
  if (options.provider) {
    slots.push({
      name: options.slot?.[0] ?? FLAG_SLOT,
      provider: options.provider,
      ...(options.keyId ? { keyId: options.keyId } : {}),
      ...(options.region ? { region: options.region } : {}),
      ...(options.endpoint ? { endpoint: options.endpoint } : {}),
      ...(options.masterKey ? { masterKey: options.masterKey } : {}),
      ...(options.roleArn ? { roleArn: options.roleArn } : {}),
      ...(options.externalId ? { externalId: options.externalId } : {}),
    });
  }
  return new KmsEnvelopeClient({
    store,
    kms: new KmsRegistry({ slots, secrets: { allowedFilePrefixes: secretFilePrefixes(options, env) } }),
  });
}

/**
 * The bytes of a secret reference given on the command line (`env:`, `file:` under an allowed
 * folder, `secret:`); the caller wipes them.
 * @throws ConfigError as `resolveSecretRef`.
 */
export function secretFromRef(ref: string, options: GlobalOptions): Promise<Buffer> {
  return resolveSecretRef(ref, { allowedFilePrefixes: secretFilePrefixes(options) });
}

/** Reads a caller-supplied KEK (provider `none`) from a secret reference. */
export async function kekFromRef(ref: string, options: GlobalOptions): Promise<Kek> {
  const secret = await secretFromRef(ref, options);
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

/** The encryption context of `--context key=value` flags (each checked by `contextPair`). */
export function contextOf(pairs: readonly string[] = []): Record<string, string> {
  const context: Record<string, string> = {};
  for (const pair of pairs) {
    const eq = pair.indexOf('=');
    context[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
  return context;
}
