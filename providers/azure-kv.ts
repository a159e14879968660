/**
 * Provider `azure-kv` (being built: see issue #5). Until then a slot of this provider fails with
 * ConfigError on first use.
 *
 * @module
 */
import { ConfigError } from '../src/errors.js';
import type { ProviderPlugin } from '../src/providers/provider.js';

/** Provider id. */
export const id = 'azure-kv';

/** The plugin record the registry loads. */
export const plugin: ProviderPlugin = {
  id,
  create: (slot) => {
    throw new ConfigError('provider "azure-kv" is not available in this build yet', {
      slot: slot.name,
      provider: id,
    });
  },
};
