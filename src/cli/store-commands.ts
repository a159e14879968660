/**
 * CLI commands about the store itself: `migrate-store` (Redis key layout).
 *
 * @module
 */
import cliProgress from 'cli-progress';
import type { Command } from 'commander';
import { InvalidArgumentError, KmsEnvelopeError } from '../errors.js';
import { RedisStore } from '../storage/redis.js';
import { DEFAULT_KEY_PREFIX } from '../storage/redis-keys.js';
import type { RedisMigrationReport } from '../storage/redis-migrate.js';
import { type CliContext, storeSpec } from './context.js';
import type { CliOutput } from './output.js';
import { redisPrefixArg } from './parsers.js';

interface MigrateStoreOptions {
  keyPrefix?: string;
  dryRun?: boolean;
}

/**
 * Progress on stderr: a bar on a terminal, otherwise a line every 1,000 indexes and at the end;
 * nothing with --quiet or --json.
 */
function progressReporter(out: CliOutput): {
  update: (done: number, total: number) => void;
  stop: () => void;
} {
  if (out.progress) {
    const bar = new cliProgress.SingleBar(
      { format: 'migrate-store [{bar}] {value}/{total} indexes', stream: process.stderr },
      cliProgress.Presets.shades_classic,
    );
    let started = false;
    return {
      update: (done, total) => {
        if (!started) bar.start(total, 0);
        started = true;
        bar.update(done);
      },
      stop: () => bar.stop(),
    };
  }
  return {
    update: (done, total) => {
      if (done % 1000 === 0 || done === total) out.info(`migrate-store: ${done}/${total} indexes`);
    },
    stop: () => {},
  };
}

function summary(report: RedisMigrationReport): string {
  const verb = report.dryRun ? 'would move' : 'moved';
  return `${report.dryRun ? 'dry run: ' : ''}${verb} ${report.migrated.length} of ${report.found} old-layout indexes (${report.records} records)${report.problems.length ? `; ${report.problems.length} keys left alone` : ''}${report.complete ? '' : '; interrupted: run again to finish'}`;
}

/** Adds `migrate-store` to `program`. */
export function addStoreCommands(program: Command, ctx: CliContext): void {
  const { out, globals } = ctx;

  program
    .command('migrate-store')
    .description(
      'move a Redis store from the old key layout (<prefix><index>:kmsblob) to <prefix>{<index>}:kmsblob (resumable; run it again after an interruption)',
    )
    .option(
      '--key-prefix <prefix>',
      `the key prefix of the store (default: --redis-prefix, else ${DEFAULT_KEY_PREFIX})`,
      redisPrefixArg,
    )
    .option('--dry-run', 'report what would be moved, change nothing')
    .action(async (opts: MigrateStoreOptions) => {
      const spec = storeSpec(globals());
      if (!/^rediss?:\/\//.test(spec))
        throw new InvalidArgumentError('migrate-store needs a Redis store: --store redis://host:port');
      const keyPrefix = opts.keyPrefix ?? globals().redisPrefix ?? DEFAULT_KEY_PREFIX;
      const store = new RedisStore({ url: spec, keyPrefix });
      const progress = progressReporter(out);
      // Ctrl-C stops between two indexes, so the next run resumes from a clean point.
      const abort = new AbortController();
      const onSignal = () => abort.abort();
      process.once('SIGINT', onSignal);
      try {
        const report = await store.migrateLegacyLayout({
          ...(opts.dryRun ? { dryRun: true } : {}),
          onProgress: progress.update,
          signal: abort.signal,
        });
        progress.stop();
        // Not information but what the failure below is about: shown even with --quiet.
        if (!out.json)
          for (const problem of report.problems)
            out.error(`migrate-store: left ${problem.key} (${problem.kind}): ${problem.detail}\n`);
        if (out.json) out.printJson(report);
        else out.print(summary(report));
        if (!report.complete)
          throw new KmsEnvelopeError('migrate-store was interrupted: run it again to finish');
        if (report.problems.length > 0)
          throw new KmsEnvelopeError(
            `${report.problems.length} old-layout keys were left alone (listed above): they need a person to decide`,
          );
      } finally {
        progress.stop();
        process.off('SIGINT', onSignal);
        await store.close();
      }
    });
}
