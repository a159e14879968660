import { defineConfig } from 'vitest/config';

/**
 * `npm run test:localstack`: the end-to-end AWS provider suite (the same files as against the
 * fake) against LocalStack or moto at `AWS_ENDPOINT_URL` (default http://127.0.0.1:4566), started
 * with `docker compose up -d localstack` (or `moto`, with AWS_ENDPOINT_URL=http://127.0.0.1:5000).
 * Skipped with a message when nothing listens there; a failure under CI=true.
 */
export default defineConfig({
  test: {
    include: ['test/providers/aws.test.ts', 'test/providers/aws-kms.test.ts', 'test/localstack/**/*.test.ts'],
    setupFiles: ['test/setup.ts'],
    env: { KMS_ENVELOPE_AWS_BACKEND: 'remote' },
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
  },
});
