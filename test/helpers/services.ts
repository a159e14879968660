import { postgresAvailable } from '../../src/testing/postgres-server.js';
import { redisServerAvailable } from '../../src/testing/redis-server.js';

/**
 * Whether the tests that need `service` may run. When it is missing: under CI=true this throws
 * (CI must not skip service-backed tests); otherwise it warns with how to get it and returns
 * false, for `describe.skipIf(!…)`.
 */
export function serviceAvailable(service: string, available: boolean, howToGet: string): boolean {
  if (available) return true;
  const message = `${service} is not available: ${howToGet}`;
  if (process.env.CI === 'true') throw new Error(`${message} (CI=true: service-backed tests may not skip)`);
  console.warn(`skipping tests that need ${message}`);
  return false;
}

/** `redis-server` on the PATH, or skip/fail as {@link serviceAvailable} says. */
export const hasRedis = () =>
  serviceAvailable(
    'redis-server',
    redisServerAvailable(),
    'apt-get install redis-server (Debian), or put redis-server on the PATH',
  );

/** A PostgreSQL server (initdb, postgres) to start, or skip/fail as {@link serviceAvailable} says. */
export const hasPostgres = () =>
  serviceAvailable(
    'PostgreSQL',
    postgresAvailable(),
    'apt-get install postgresql (Debian; as root the postgres user it creates runs the server), or put initdb and postgres on the PATH',
  );
