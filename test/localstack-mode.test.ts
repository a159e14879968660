/**
 * `npm run test:localstack` itself, run here against the AWS fake started as if it were
 * LocalStack (Docker cannot run here): the remote mode creates its keys and secrets through the
 * SDK, runs the aws / aws-kms end-to-end files, and skips only what needs the fake's controls or
 * LocalStack's ready hook. With nothing listening it skips with a how-to, or fails under CI=true.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { startFakeAws } from '../src/testing/fake-aws.js';
import { repo } from './helpers/cli.js';

function runLocalstackSuite(env: Record<string, string>): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      [
        join(repo, 'node_modules/vitest/vitest.mjs'),
        'run',
        '--config',
        'vitest.localstack.config.ts',
        '--reporter=verbose',
      ],
      { cwd: repo, env: { ...process.env, NO_COLOR: '1', FORCE_COLOR: '0', ...env } },
    );
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      out += chunk;
    });
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      out += chunk;
    });
    child.once('error', reject);
    // biome-ignore lint/suspicious/noControlCharactersInRegex: strips ANSI colour codes
    child.once('close', (code) => resolve({ code, out: out.replace(/\u001b\[[0-9;]*m/g, '') }));
  });
}

it('runs the AWS end-to-end suite against an AWS endpoint given by AWS_ENDPOINT_URL', async () => {
  const aws = await startFakeAws();
  try {
    const { code, out } = await runLocalstackSuite({ AWS_ENDPOINT_URL: aws.endpoint, CI: 'true' });
    expect(out).toMatch(/Tests\s+\d+ passed/);
    expect(out).not.toMatch(/\d+ failed/);
    expect(out).toContain('is not LocalStack');
    expect(code).toBe(0);
    // The suite really drove the endpoint: keys and secrets made through the SDK, then used.
    const ops = new Set(aws.requests.map((r) => r.operation));
    for (const op of [
      'CreateKey',
      'CreateAlias',
      'Encrypt',
      'Decrypt',
      'ReEncrypt',
      'CreateSecret',
      'GetSecretValue',
    ]) {
      expect(ops).toContain(op);
    }
  } finally {
    await aws.close();
  }
});

it('with nothing listening it skips with a how-to, and fails under CI=true', async () => {
  const quiet = await runLocalstackSuite({ AWS_ENDPOINT_URL: 'http://127.0.0.1:9', CI: '' });
  expect(quiet.code).toBe(0);
  expect(quiet.out).toContain('docker compose up -d localstack');
  const ci = await runLocalstackSuite({ AWS_ENDPOINT_URL: 'http://127.0.0.1:9', CI: 'true' });
  expect(ci.code).not.toBe(0);
});
