import { expect, it, vi } from 'vitest';

it('without the optional ioredis package, the Redis store fails with MissingDependencyError naming it', async () => {
  vi.resetModules();
  vi.doMock('ioredis', () => {
    throw new Error("Cannot find package 'ioredis'");
  });
  const { RedisStore } = await import('../../src/storage/redis.js');
  const { MissingDependencyError } = await import('../../src/errors.js');
  const { parseIndexName } = await import('../../src/names.js');
  const store = new RedisStore({ url: 'redis://127.0.0.1:1' });
  const err = await store.get(parseIndexName('orders')).catch((e: unknown) => e);
  expect(err).toBeInstanceOf(MissingDependencyError);
  expect((err as Error).message).toMatch(/npm install ioredis/);
  vi.doUnmock('ioredis');
});
