/**
 * The Docker path users take (it cannot run here): docker-compose.yml and the LocalStack ready
 * hook are checked for what would break them — unpinned images, a committed auth token, a hook
 * that is not mounted, not executable or not valid bash, names the LocalStack suite does not use.
 */
import { spawnSync } from 'node:child_process';
import { accessSync, constants, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { parse } from 'yaml';
import { repo } from './helpers/cli.js';

interface Service {
  image: string;
  ports?: string[];
  environment?: Record<string, string>;
  volumes?: string[];
  healthcheck?: { test: string[] };
}

const compose = parse(readFileSync(join(repo, 'docker-compose.yml'), 'utf8')) as {
  services: Record<string, Service>;
};

it('pins every image and publishes only on loopback', () => {
  expect(Object.keys(compose.services).sort()).toEqual(['localstack', 'moto', 'redis']);
  for (const [name, service] of Object.entries(compose.services)) {
    expect(service.image, name).toMatch(/:\d+(\.\d+)+$/);
    for (const port of service.ports ?? []) expect(port, name).toMatch(/^127\.0\.0\.1:/);
    expect(service.healthcheck?.test.length, name).toBeGreaterThan(1);
  }
  expect(compose.services.localstack?.ports).toContain('127.0.0.1:4566:4566');
  expect(compose.services.moto?.ports).toContain('127.0.0.1:5000:5000');
});

it('passes LOCALSTACK_AUTH_TOKEN through from the environment and commits none', () => {
  const env = compose.services.localstack?.environment ?? {};
  expect(env.LOCALSTACK_AUTH_TOKEN).toBe('${LOCALSTACK_AUTH_TOKEN:-}');
  expect(env.SERVICES?.split(',')).toEqual(expect.arrayContaining(['kms', 'secretsmanager', 'sts']));
});

it('mounts an executable, valid ready hook that creates what the LocalStack suite uses', () => {
  expect(compose.services.localstack?.volumes).toContain(
    './localstack/ready.d:/etc/localstack/init/ready.d:ro',
  );
  const hook = join(repo, 'localstack/ready.d/10-kms-envelope.sh');
  accessSync(hook, constants.X_OK);
  expect(spawnSync('bash', ['-n', hook]).status).toBe(0);
  const script = readFileSync(hook, 'utf8');
  const suite = readFileSync(join(repo, 'test/localstack/ready-hook.test.ts'), 'utf8');
  for (const name of ['alias/kms-envelope-test', 'kms-envelope/test-master-key']) {
    expect(script).toContain(name);
    expect(suite).toContain(name);
  }
});
