/**
 * Provider `none`: stores nothing key-derived in `wrapped_kek`. The caller keeps the KEK and
 * supplies it on every unwrap; the envelope's KEK check value (when present) confirms that the
 * supplied KEK is the index's.
 *
 * @module
 */
import { InvalidArgumentError } from '../src/errors.js';
import { Kek } from '../src/keys/kek.js';
import type { KmsProvider, ProviderPlugin, UnwrapContext, WrappedKek } from '../src/providers/provider.js';

/** Provider id. */
export const id = 'none';

class NoneProvider implements KmsProvider {
  readonly id = id;

  async wrap(): Promise<WrappedKek> {
    return { wrappedKek: new Uint8Array(0), keyId: '', region: '' };
  }

  async unwrap(wrapped: WrappedKek, context: UnwrapContext): Promise<Kek> {
    const where = { index: context.index, slot: context.slot, provider: id };
    if (wrapped.wrappedKek.length !== 0) {
      throw new InvalidArgumentError('envelope of provider "none" must not carry wrapped key bytes', where);
    }
    if (context.suppliedKek === undefined) {
      throw new InvalidArgumentError(
        'provider "none" stores no key: pass the KEK to unwrap ({ kek })',
        where,
      );
    }
    return Kek.fromBytes(context.suppliedKek.expose());
  }
}

/** Creates a `none` provider; the slot needs no fields beyond `provider: none`. */
export function createNoneProvider(): KmsProvider {
  return new NoneProvider();
}

/** The plugin record the registry loads. */
export const plugin: ProviderPlugin = { id, create: () => createNoneProvider() };
