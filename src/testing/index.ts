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
  type FakeKmsKeyRef,
  type FakeSecretVersion,
  type FakeStsSession,
  startFakeAws,
} from './fake-aws.js';
export {
  type FakeAzureKeyOptions,
  type FakeAzureKeyType,
  type FakeAzureKvClientOptions,
  type FakeAzureKvFailure,
  type FakeAzureKvHandle,
  type FakeAzureKvOperation,
  type FakeAzureKvOptions,
  type FakeAzureKvRequest,
  type FakeTokenCredential,
  startFakeAzureKv,
} from './fake-azure-kv.js';
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
  type FakeVaultAppRole,
  type FakeVaultFailure,
  type FakeVaultKeyInfo,
  type FakeVaultKeyOptions,
  type FakeVaultKeyType,
  type FakeVaultOperation,
  type FakeVaultRequest,
  type FakeVaultTransit,
  type FakeVaultTransitOptions,
  startFakeVaultTransit,
} from './fake-vault-transit.js';
export {
  findPostgresBinDir,
  type PostgresServerHandle,
  type PostgresServerOptions,
  postgresAvailable,
  startPostgres,
} from './postgres-server.js';
// The conformance suites for plugin authors: pass your test framework's { describe, it, expect }.
export {
  type ProviderFaults,
  type ProviderFixture,
  runProviderConformance,
} from './provider-conformance.js';
export {
  type PyKmipClientCertificate,
  type PyKmipClientCertificateOptions,
  type PyKmipHandle,
  type PyKmipOptions,
  pyKmipAvailable,
  startPyKmip,
} from './pykmip.js';
export {
  failoverClusterOptions,
  type RedisClusterHandle,
  type RedisClusterNode,
  type RedisClusterOptions,
  redisClusterAvailable,
  startRedisCluster,
} from './redis-cluster.js';
export {
  freePort,
  type RedisServerHandle,
  type RedisServerOptions,
  redisServerAvailable,
  startRedisReplica,
  startRedisServer,
} from './redis-server.js';
export {
  SOFTHSM_MODULE,
  type SoftHsmHandle,
  type SoftHsmKeyChange,
  type SoftHsmKeySpec,
  type SoftHsmOptions,
  softHsmAvailable,
  startSoftHsm,
} from './softhsm.js';
export { runStoreConformance, type StoreFixture, sampleEnvelope } from './store-conformance.js';
export type {
  ConformanceExpect,
  ConformanceMatchers,
  ConformancePromiseMatchers,
  ConformanceTestApi,
  ErrorClass,
} from './test-api.js';
export { makeTestTls, sharedTestTls, type TestTls, type TestTlsOptions } from './test-ca.js';
