/**
 * Test helpers for users of kms-envelope: start what the tests need on 127.0.0.1, with no cloud
 * account and no Docker.
 *
 * @packageDocumentation
 */
export {
  freePort,
  type RedisServerHandle,
  type RedisServerOptions,
  redisServerAvailable,
  startRedisServer,
} from './redis-server.js';
