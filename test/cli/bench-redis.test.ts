import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RedisServerHandle, startRedisServer } from '../../src/testing/redis-server.js';
import { devMasterEnv, localSlotFlags } from '../helpers/cli.js';
import { hasRedis } from '../helpers/services.js';
import { cli } from './in-process.js';

describe.skipIf(!hasRedis())('kms-envelope bench against a Redis store (a real redis-server)', () => {
  let server: RedisServerHandle;
  beforeAll(async () => {
    server = await startRedisServer();
  });
  afterAll(async () => {
    await server?.stop();
  });

  it("adds the every-call rows (1 and 64 in flight vs the store's raw reads) and leaves nothing behind", async () => {
    const out = await cli([...localSlotFlags(server.url), 'bench'], devMasterEnv());
    expect(out.stderr).toBe('');
    expect(out.code).toBe(0);
    expect(out.stdout).toContain(`store ${server.url}`);
    expect(out.stdout).toMatch(
      /\| every-call unwrap\(index\), 1 in flight, vs a raw redis read of the envelope \|/,
    );
    expect(out.stdout).toMatch(
      /\| every-call unwrap\(index\), 64 in flight, vs 64 raw redis reads of the envelope \|/,
    );
    expect(out.stdout).toMatch(/1,000 concurrent cold unwraps: 1 provider call\(s\) per round/);
    const redis = new Redis(server.url);
    try {
      expect(await redis.dbsize()).toBe(0); // the throwaway index was deleted
    } finally {
      redis.disconnect();
    }
  }, 90_000);
});
