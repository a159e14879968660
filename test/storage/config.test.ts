import { isAbsolute } from 'node:path';
import { describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '../../src/errors.js';
import { StorageConfig } from '../../src/storage/config.js';
import { DiskStore } from '../../src/storage/disk.js';
import { MemoryStore } from '../../src/storage/memory.js';
import { DEFAULT_KEY_PREFIX, type RedisLike, RedisStore } from '../../src/storage/redis.js';

describe('StorageConfig', () => {
  it('parses disk:, memory: and redis(s):// specs without connecting', async () => {
    const disk = StorageConfig.parse('disk:/var/lib/idx');
    expect(disk).toBeInstanceOf(DiskStore);
    expect(disk.description).toBe('disk:/var/lib/idx');
    const relative = StorageConfig.parse('disk:some/dir') as DiskStore;
    expect(isAbsolute(relative.root)).toBe(true);
    expect(relative.description).toBe(`disk:${relative.root}`);
    expect(StorageConfig.parse('memory:')).toBeInstanceOf(MemoryStore);
    const redis = StorageConfig.parse('redis://127.0.0.1:6379/2');
    expect(redis).toBeInstanceOf(RedisStore);
    expect(redis.kind).toBe('redis');
    expect((redis as RedisStore).keyPrefix).toBe(DEFAULT_KEY_PREFIX);
    expect(StorageConfig.parse('rediss://cache.example:6380').kind).toBe('redis');
    await redis.close(); // never connected: nothing to close
  });

  it('never shows a Redis password in description', () => {
    for (const url of [
      'redis://user:s3cret@127.0.0.1:6379/1',
      'rediss://:s3cret@cache.example:6380',
      'redis://127.0.0.1:6379?password=s3cret',
      'redis://127.0.0.1:6379/0?db=1&sentinelPassword=s3cret',
      'redis://user:s%33cret@127.0.0.1',
    ]) {
      const store = StorageConfig.redis({ url, keyPrefix: 'p:' });
      expect(store.description).not.toMatch(/s3cret|s%33cret/);
      expect(store.description).toContain('***');
      expect(StorageConfig.parse(url).description).not.toMatch(/s3cret|s%33cret/);
    }
    expect(StorageConfig.redis({ url: 'redis://user:s3cret@h:1' }).description).toBe('redis://user:***@h:1');
  });

  it('refuses anything else with InvalidArgumentError, without repeating a password', () => {
    for (const spec of [
      '',
      'disk:',
      'memory',
      'memory:x',
      'file:/tmp',
      'http://user:s3cret@host',
      'redis:/user:s3cret@host',
      'redis:user:s3cret@host',
      'redis//:s3cret@host',
      'redis://[not-a-host:s3cret@',
      'redis://',
      'redis:host?password=s3cret',
    ]) {
      let err: unknown;
      try {
        StorageConfig.parse(spec);
      } catch (e) {
        err = e;
      }
      expect(err, spec).toBeInstanceOf(InvalidArgumentError);
      expect((err as Error).message).not.toContain('s3cret');
    }
  });

  it('redis() needs exactly one of url and client, and sane options', () => {
    const client = {} as RedisLike;
    expect(() => StorageConfig.redis({})).toThrow(InvalidArgumentError);
    expect(() => StorageConfig.redis({ url: 'redis://h:1', client })).toThrow(InvalidArgumentError);
    expect(() => StorageConfig.redis({ url: 'unix:/tmp/redis.sock' })).toThrow(InvalidArgumentError);
    expect(() => StorageConfig.redis({ url: 'redis://h:1', commandTimeoutMs: 0 })).toThrow(
      InvalidArgumentError,
    );
    const supplied = StorageConfig.redis({ client, keyPrefix: 'app:' });
    expect(supplied.description).toBe('redis:(client supplied)');
    expect(supplied.keyPrefix).toBe('app:');
  });

  it('disk() needs a folder', () => {
    expect(() => StorageConfig.disk('')).toThrow(InvalidArgumentError);
  });
});
