import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  EnvelopeExistsError,
  InvalidArgumentError,
  StoreUnavailableError,
  VersionConflictError,
} from '../../src/errors.js';
import { parseIndexName } from '../../src/names.js';
import { RedisStore, ReplicasNotConfirmedError } from '../../src/storage/redis.js';
import {
  type RedisServerHandle,
  startRedisReplica,
  startRedisServer,
} from '../../src/testing/redis-server.js';
import { sampleBlob } from '../helpers/blobs.js';
import { hasRedis } from '../helpers/services.js';

const idx = parseIndexName('orders');

it('waitReplicas and waitTimeoutMs are validated where they enter', () => {
  for (const waitReplicas of [0, -1, 1.5, Number.NaN, '1' as unknown as number])
    expect(() => new RedisStore({ url: 'redis://127.0.0.1:1', waitReplicas })).toThrow(InvalidArgumentError);
  for (const waitTimeoutMs of [0, -5, 0.5])
    expect(() => new RedisStore({ url: 'redis://127.0.0.1:1', waitReplicas: 1, waitTimeoutMs })).toThrow(
      InvalidArgumentError,
    );
  const noPipeline = { callBuffer: async () => null, quit: async () => 'OK' };
  expect(() => new RedisStore({ client: noPipeline, waitReplicas: 1 })).toThrow(/pipeline/);
});

describe.skipIf(!hasRedis())('waitReplicas against a real primary and replica', () => {
  let primary: RedisServerHandle;
  let replica: RedisServerHandle;
  beforeAll(async () => {
    primary = await startRedisServer();
    replica = await startRedisReplica(primary);
  });
  afterAll(async () => {
    await replica?.stop();
    await primary?.stop();
  });

  it('every write waits for the replica: each is on the replica when it resolves', async () => {
    const store = new RedisStore({
      url: primary.url,
      keyPrefix: 'wait:',
      waitReplicas: 1,
      waitTimeoutMs: 10_000,
    });
    const onReplica = new Redis(replica.url);
    const blob = sampleBlob(idx);
    await store.create(idx, blob);
    expect(await onReplica.exists(store.key(idx))).toBe(1);
    await store.push(idx, sampleBlob(idx, { version: 2 }), {
      expectedVersion: 1,
      expectedCreationId: blob.creationId!,
    });
    await store.push(idx, sampleBlob(idx, { version: 3 }));
    expect(await store.createRecord(idx, 'meta', 'lock', new Uint8Array([1]))).toBe(true);
    expect(await store.createRecord(idx, 'meta', 'lock', new Uint8Array([2]))).toBe(false);
    await store.putRecords(idx, 'dek', new Map([['d1', new Uint8Array([3])]]));
    expect(await onReplica.hgetBuffer(store.recordsKey(idx, 'dek'), 'd1')).toEqual(Buffer.from([3]));
    await store.deleteRecord(idx, 'dek', 'd1');
    await store.delete(idx);
    expect(await onReplica.exists(store.key(idx), store.recordsKey(idx, 'dek'))).toBe(0);
    // Reads do not wait.
    await expect(store.get(idx)).rejects.toThrow(/no envelope/);
    await store.close();
    onReplica.disconnect();
  });

  it('more replicas than there are: each write is a retryable, ambiguous ReplicasNotConfirmedError after the timeout, yet applied on the primary', async () => {
    const store = new RedisStore({
      url: primary.url,
      keyPrefix: 'two:',
      waitReplicas: 2,
      waitTimeoutMs: 200,
    });
    const started = Date.now();
    const err = await store.create(idx, sampleBlob(idx)).catch((e: unknown) => e);
    expect(Date.now() - started).toBeGreaterThanOrEqual(150);
    expect(Date.now() - started).toBeLessThan(3000);
    expect(err).toBeInstanceOf(ReplicasNotConfirmedError);
    expect(err).toBeInstanceOf(StoreUnavailableError);
    expect(err).toMatchObject({ retryable: true, ambiguous: true, required: 2, acknowledged: 1 });
    expect((err as Error).message).toMatch(/may or may not have been applied.*index "orders"/);
    // Applied on the primary (the ambiguity): a retry of the create finds it.
    await expect(store.create(idx, sampleBlob(idx))).rejects.toThrow(EnvelopeExistsError);
    // A write that changed nothing reports its own error, not the replicas'.
    await expect(store.push(idx, sampleBlob(idx, { version: 9 }), { expectedVersion: 5 })).rejects.toThrow(
      VersionConflictError,
    );
    await store.close();
  });

  it('with the replica stopped, writes are ReplicasNotConfirmedError within the timeout; after a restart they are confirmed again', async () => {
    const store = new RedisStore({
      url: primary.url,
      keyPrefix: 'down:',
      waitReplicas: 1,
      waitTimeoutMs: 300,
    });
    await store.create(idx, sampleBlob(idx));
    await replica.stop();
    for (const write of [
      () => store.push(idx, sampleBlob(idx, { version: 2 }), { expectedVersion: 1 }),
      () => store.putRecord(idx, 'dek', 'd', new Uint8Array([1])),
      () => store.delete(idx),
    ]) {
      const started = Date.now();
      const err = await write().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ReplicasNotConfirmedError);
      expect(err).toMatchObject({ required: 1, acknowledged: 0, retryable: true });
      expect(Date.now() - started).toBeLessThan(3000);
    }
    replica = await startRedisReplica(primary);
    // A generous timeout where the write is expected to be confirmed: WAIT returns as soon as
    // the replica acknowledges, and a loaded machine may take longer than 300 ms.
    const patient = new RedisStore({
      url: primary.url,
      keyPrefix: 'down:',
      waitReplicas: 1,
      waitTimeoutMs: 10_000,
    });
    await patient.create(idx, sampleBlob(idx));
    await Promise.all([store.close(), patient.close()]);
  });
});
