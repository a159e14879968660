/**
 * ioredis, loaded on first use. A module of its own so that no declaration file the package's
 * entry points reach names `ioredis` types: a TypeScript user without ioredis installed (and
 * `skipLibCheck: false`) type-checks.
 *
 * @module
 */
import { MissingDependencyError } from '../errors.js';
import { importPeer } from '../providers/support.js';

/** ioredis' `Redis` class, loaded on first use. @throws MissingDependencyError */
export async function loadRedis(): Promise<typeof import('ioredis').Redis> {
  try {
    return (await importPeer<typeof import('ioredis')>('ioredis')).Redis;
  } catch (cause) {
    throw new MissingDependencyError('ioredis', 'the Redis invalidation feed', cause);
  }
}
