import { PROVIDER_ID_PATTERN } from '../envelope/kms-blob.js';
import { ConfigError, InvalidArgumentError } from '../errors.js';
import type { SecretRefOptions } from '../keys/secret-ref.js';
import type { SlotName } from '../names.js';
import type { KmsProvider, ProviderFactory, ProviderPlugin } from './provider.js';
import { type KmsSlot, type KmsSlotInput, parseKmsSlot } from './slot.js';

// Built-in providers, each loaded only when a slot uses it, so the core imports no cloud SDK (nor
// the PKCS#11 binding, nor the post-quantum library).
// `none` and `local` need no SDK and are imported by literal path, so a bundle holds them. The
// cloud and on-prem providers are imported from a computed URL, which bundlers (esbuild, webpack, rollup)
// leave alone: an app bundled without any cloud SDK installed builds as it is, and one that uses a
// cloud slot from a bundle passes the provider it imports itself (`providers: { 'aws-kms':
// plugin.create }`), which bundles the provider with its SDK.
const builtIn: Record<string, () => Promise<ProviderPlugin>> = {
  none: async () => (await import('../../providers/none.js')).plugin,
  local: async () => (await import('../../providers/local.js')).plugin,
  aws: () => importCloudProvider('aws'),
  'aws-kms': () => importCloudProvider('aws-kms'),
  'gcp-kms': () => importCloudProvider('gcp-kms'),
  'azure-kv': () => importCloudProvider('azure-kv'),
  pkcs11: () => importCloudProvider('pkcs11'),
  kmip: () => importCloudProvider('kmip'),
  'vault-transit': () => importCloudProvider('vault-transit'),
  recipient: () => importCloudProvider('recipient'),
};

async function importCloudProvider(id: string): Promise<ProviderPlugin> {
  let url: string;
  try {
    url = new URL(`../../providers/${id}.js`, import.meta.url).href;
  } catch {
    url = ''; // no import.meta.url: bundled into CommonJS
  }
  try {
    return ((await import(url)) as { plugin: ProviderPlugin }).plugin;
  } catch (cause) {
    const code = (cause as { code?: string }).code;
    const missing = url === '' || (code === 'ERR_MODULE_NOT_FOUND' && String(cause).includes(`${id}.js`));
    if (!missing) throw cause;
    throw new ConfigError(
      `provider "${id}" is not next to the core (bundled?): import { plugin } from 'kms-envelope/providers/${id}' and pass providers: { '${id}': plugin.create }`,
      { provider: id },
    );
  }
}

const plugins = new Map<string, ProviderFactory>();

/**
 * Registers a provider plugin for every registry in the process (a registry's own `providers`
 * option overrides it). Built-in ids cannot be replaced globally.
 * @throws InvalidArgumentError for an invalid id or a built-in one.
 */
export function registerProvider(plugin: ProviderPlugin): void {
  if (!PROVIDER_ID_PATTERN.test(plugin.id) || plugin.id in builtIn) {
    throw new InvalidArgumentError(`cannot register provider "${plugin.id}"`);
  }
  plugins.set(plugin.id, plugin.create);
}

/** Options of {@link KmsRegistry}. */
export interface KmsRegistryOptions {
  /** The slots, as a list (each with `name`) or a map of name → settings. */
  readonly slots: readonly KmsSlotInput[] | Readonly<Record<string, KmsSlotInput>>;
  /** Provider factories by id, for plugins or to inject configured SDK clients. */
  readonly providers?: Readonly<Record<string, ProviderFactory>>;
  /** How secret references in slots are resolved. */
  readonly secrets?: SecretRefOptions;
}

/**
 * Maps KMS slot names to configured providers, so an envelope is unwrapped from its `kms_name`
 * alone. Providers are built lazily, once per slot, on first use.
 */
export class KmsRegistry {
  readonly #slots = new Map<string, KmsSlot>();
  readonly #providers = new Map<string, Promise<KmsProvider>>();
  readonly #factories: Readonly<Record<string, ProviderFactory>>;
  readonly #secrets: SecretRefOptions;

  /** @throws ConfigError for an invalid or duplicate slot. */
  constructor(options: KmsRegistryOptions) {
    const entries: [string, KmsSlotInput][] = Array.isArray(options.slots)
      ? (options.slots as readonly KmsSlotInput[]).map((slot) => [slot.name ?? '', slot])
      : Object.entries(options.slots);
    for (const [name, input] of entries) {
      if (this.#slots.has(name)) throw new ConfigError('slot is defined twice', { slot: name });
      this.#slots.set(name, parseKmsSlot(name, input));
    }
    this.#factories = options.providers ?? {};
    this.#secrets = options.secrets ?? {};
  }

  /** Names of the configured slots. */
  get slotNames(): SlotName[] {
    return [...this.#slots.values()].map((slot) => slot.name);
  }

  /** The slot called `name`. @throws ConfigError if there is none. */
  slot(name: string): KmsSlot {
    const slot = this.#slots.get(name);
    if (slot === undefined) {
      const known = [...this.#slots.keys()].join(', ') || 'none configured';
      throw new ConfigError(`unknown KMS slot (configured: ${known})`, { slot: name });
    }
    return slot;
  }

  /**
   * The provider configured for slot `name`, built on first use.
   * @throws ConfigError for an unknown slot, an unknown provider id or a slot missing a field.
   */
  provider(name: string): Promise<KmsProvider> {
    let provider = this.#providers.get(name);
    if (provider === undefined) {
      provider = Promise.resolve(name).then((slotName) => this.#build(this.slot(slotName)));
      this.#providers.set(name, provider);
      // A failed build is not cached: the next call reports (or fixes) it again.
      provider.catch(() => this.#providers.delete(name));
    }
    return provider;
  }

  async #build(slot: KmsSlot): Promise<KmsProvider> {
    const factory =
      this.#factories[slot.provider] ??
      plugins.get(slot.provider) ??
      (await builtIn[slot.provider]?.())?.create;
    if (factory === undefined) {
      throw new ConfigError(
        `unknown provider "${slot.provider}" (built in: ${Object.keys(builtIn).join(', ')}; others must be registered)`,
        { slot: slot.name },
      );
    }
    return factory(slot, { secrets: this.#secrets });
  }

  /** Closes every provider built so far. */
  async close(): Promise<void> {
    const built = [...this.#providers.values()];
    this.#providers.clear();
    await Promise.allSettled(built.map(async (p) => (await p).close?.()));
  }
}
