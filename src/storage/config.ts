import { InvalidArgumentError } from '../errors.js';
import { DiskStore, type DiskStoreOptions } from './disk.js';
import { MemoryStore } from './memory.js';
import { RedisStore, type RedisStoreOptions } from './redis.js';
import type { EnvelopeStore } from './store.js';

/**
 * Builds envelope stores.
 *
 * @example
 * StorageConfig.disk('/var/lib/search/indexes');
 * StorageConfig.redis({ url: 'redis://127.0.0.1:6379', keyPrefix: 'search:' });
 * StorageConfig.redis({ client: myIoredisClient });
 * StorageConfig.memory();
 * StorageConfig.parse(process.env.KMS_ENVELOPE_STORE ?? 'disk:./indexes');
 */
export const StorageConfig = {
  /** Envelopes under `dir`, beside each index's keystore. */
  disk(dir: string, options?: DiskStoreOptions): DiskStore {
    return new DiskStore(dir, options);
  },
  /** Envelopes in Redis (ioredis, an optional peer dependency, when a `url` is given). */
  redis(options: RedisStoreOptions): RedisStore {
    return new RedisStore(options);
  },
  /** Envelopes in this process only (tests, examples). */
  memory(): MemoryStore {
    return new MemoryStore();
  },
  /**
   * A store from a spec: `disk:<dir>`, `redis://…` / `rediss://…`, or `memory:`.
   * @throws InvalidArgumentError for anything else.
   */
  parse(spec: string): EnvelopeStore {
    if (spec.startsWith('disk:') && spec.length > 5) return new DiskStore(spec.slice(5));
    if (/^rediss?:\/\//.test(spec)) return new RedisStore({ url: spec });
    if (spec === 'memory:') return new MemoryStore();
    throw new InvalidArgumentError(
      `unknown store "${spec.replace(/:\/\/[^@/]*@/, '://***@')}": use disk:<dir>, redis://host:port or memory:`,
    );
  },
} as const;
