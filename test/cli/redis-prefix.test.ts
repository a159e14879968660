/**
 * `--redis-prefix` puts a Redis store's keys under that prefix (the store's keyPrefix), against a
 * real redis-server; migrate-store takes it as its default prefix.
 */
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ExitCode } from '../../src/cli/exit-codes.js';
import { type RedisServerHandle, startRedisServer } from '../../src/testing/redis-server.js';
import { localSlotFlags } from '../helpers/cli.js';
import { hasRedis } from '../helpers/services.js';
import { cli } from './in-process.js';

describe.skipIf(!hasRedis())('kms-envelope --redis-prefix (a real redis-server)', () => {
  let server: RedisServerHandle;
  beforeAll(async () => {
    server = await startRedisServer();
  });
  afterAll(async () => {
    await server?.stop();
  });

  it('keys go under the prefix; without it the index is not there; migrate-store defaults to it', async () => {
    const env = { DEV_MASTER: randomBytes(32).toString('base64url') };
    const base = localSlotFlags(server.url);
    const prefixed = [...base, '--redis-prefix', 'tenant-a:'];
    expect((await cli([...prefixed, 'create', 'orders'], env)).code).toBe(0);
    const redis = new Redis(server.url);
    try {
      expect(await redis.exists('tenant-a:{orders}:kmsblob')).toBe(1);
      expect(await redis.exists('kms-envelope:{orders}:kmsblob')).toBe(0);
    } finally {
      redis.disconnect();
    }
    expect((await cli([...prefixed, 'get', 'orders'], env)).code).toBe(0);
    expect((await cli([...base, 'get', 'orders'], env)).code).toBe(ExitCode.notFound);

    const report = await cli([...prefixed, '--json', 'migrate-store', '--dry-run'], env);
    expect(report.code, report.stderr).toBe(0);
    expect(JSON.parse(report.stdout)).toMatchObject({ dryRun: true, found: 0, complete: true });
    expect((await cli([...prefixed, 'delete', 'orders'], env)).stdout).toBe(
      'deleted envelope and records of "orders"\n',
    );
  });
});
