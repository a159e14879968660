/**
 * The CLI's create and delete as a user runs them: `create` on aws-kms (the keyring's own context
 * key used to be refused as reserved there), and delete → create → encrypt on the disk and Redis
 * stores (delete used to leave the DEK records, so the re-created index's `dek list` showed the
 * old DEK as active and `encrypt` failed).
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type FakeAws, startFakeAws } from '../../src/testing/fake-aws.js';
import { type RedisServerHandle, startRedisServer } from '../../src/testing/redis-server.js';
import { devMasterEnv, localSlotFlags } from '../helpers/cli.js';
import { hasRedis } from '../helpers/services.js';
import { cli as run } from './in-process.js';

const awsEnv = {
  AWS_ACCESS_KEY_ID: 'test',
  AWS_SECRET_ACCESS_KEY: 'test',
  AWS_EC2_METADATA_DISABLED: 'true',
  AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
};

/** delete → create → encrypt, and --keep-records, against one store spec. */
async function deleteThenCreate(store: string) {
  const env = devMasterEnv();
  const base = localSlotFlags(store);
  const cli = (args: string[], input = '') => run([...base, ...args], env, input);
  const idx = ['--index', 'users'];

  expect((await cli(['create', 'users'])).code).toBe(0);
  const oldDek = /created DEK ([0-9a-f-]{36})/.exec((await cli(['dek', 'create', ...idx])).stdout)![1]!;
  expect((await cli(['encrypt', ...idx], 'old')).code).toBe(0);

  const deleted = await cli(['delete', 'users']);
  expect(deleted.stdout).toContain('deleted envelope and records of "users"');
  expect((await cli(['create', 'users'])).code).toBe(0);
  const newDek = /created DEK ([0-9a-f-]{36})/.exec((await cli(['dek', 'create', ...idx])).stdout)![1]!;
  const list = JSON.parse((await cli(['dek', 'list', ...idx, '--json'])).stdout) as {
    id: string;
    active: boolean;
  }[];
  expect(list).toEqual([expect.objectContaining({ id: newDek, active: true })]);
  expect(newDek).not.toBe(oldDek);
  const token = await cli(['encrypt', ...idx], 'alice@example.com');
  expect(token.code).toBe(0);
  expect((await cli(['decrypt', ...idx], token.stdout.trim())).stdout).toBe('alice@example.com\n');

  const kept = await cli(['delete', 'users', '--keep-records']);
  expect(kept.stdout).toContain('(records kept)');
  const refused = await cli(['create', 'users']);
  expect(refused.code).not.toBe(0);
  expect(refused.stderr).toMatch(/records of an earlier creation/);
  expect((await cli(['delete', 'users'])).code).toBe(0);
  expect((await cli(['create', 'users'])).code).toBe(0);
}

describe('kms-envelope delete then create', () => {
  it('disk store: delete removes the records too, so create again and encrypt work', async () => {
    await deleteThenCreate(`disk:${join(mkdtempSync(join(tmpdir(), 'ke-delcli-')), 'store')}`);
  }, 120_000);

  describe.skipIf(!hasRedis())('redis store', () => {
    let redis: RedisServerHandle;
    beforeAll(async () => {
      redis = await startRedisServer();
    });
    afterAll(() => redis?.stop());
    it('delete removes the records too, so create again and encrypt work', async () => {
      await deleteThenCreate(redis.url);
    }, 120_000);
  });
});

describe('kms-envelope create on aws-kms (the fake, over HTTP)', () => {
  let aws: FakeAws;
  beforeAll(async () => {
    aws = await startFakeAws();
    aws.createKey({ alias: 'alias/cli-create' });
  });
  afterAll(() => aws?.close());

  it('creates an index ready for DEKs; dek create, encrypt and decrypt work', async () => {
    const flags = [
      '--store',
      `disk:${join(mkdtempSync(join(tmpdir(), 'ke-awscli-')), 'store')}`,
      '--provider',
      'aws-kms',
      '--key-id',
      'alias/cli-create',
      '--region',
      aws.region,
      '--endpoint',
      aws.endpoint,
    ];
    const cli = (args: string[], input = '') => run([...flags, ...args], awsEnv, input);
    const created = await cli(['create', 'orders', '--json']);
    expect(created.stderr).toBe('');
    expect(created.code).toBe(0);
    expect(JSON.parse(created.stdout)).toMatchObject({ provider: 'aws-kms' });
    expect((await cli(['dek', 'create', '--index', 'orders'])).code).toBe(0);
    const token = await cli(['encrypt', '--index', 'orders'], 'card-4242');
    expect(token.code).toBe(0);
    expect((await cli(['decrypt', '--index', 'orders'], token.stdout.trim())).stdout).toBe('card-4242\n');
  }, 120_000);
});
