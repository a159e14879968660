/**
 * Test helpers for users of kms-envelope: start what the tests need on 127.0.0.1, with no cloud
 * account and no Docker.
 *
 * @packageDocumentation
 */

export {
  FAKE_AWS_ACCESS_KEY_ID,
  type FakeAws,
  type FakeAwsClientConfig,
  type FakeAwsCredentials,
  FakeAwsError,
  type FakeAwsFault,
  type FakeAwsOptions,
  type FakeAwsRequest,
  type FakeAwsService,
  type FakeStsSession,
  startFakeAws,
} from './fake-aws.js';
export {
  type FakeGcpKeyVersionState,
  type FakeGcpKms,
  type FakeGcpKmsCall,
  type FakeGcpKmsClientOptions,
  type FakeGcpKmsOptions,
  type FakeGcpStatus,
  startFakeGcpKms,
} from './fake-gcp-kms.js';
export {
  freePort,
  type RedisServerHandle,
  type RedisServerOptions,
  redisServerAvailable,
  startRedisServer,
} from './redis-server.js';
