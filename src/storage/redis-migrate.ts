/**
 * `migrate-store` for Redis: moves envelopes and records from the layout before the hash-tagged
 * one (`<prefix><index>:kmsblob`, `<prefix><index>:<kind>`) to `<prefix>{<index>}:kmsblob` and
 * `<prefix>{<index>}:records:<kind>` (./redis-keys.ts).
 *
 * Resumable and idempotent: every copy is `SET NX` / `HSETNX` (never over something newer),
 * verified by reading it back, and an old key is deleted only if it still holds what was copied
 * (a one-key script), the envelope last. A run stopped anywhere is finished by the next one; a
 * run over migrated data changes nothing.
 *
 * The old layout was not injective, so a name is never guessed: an old key is moved only when the
 * envelope it holds verifies and is bound (`index_name`) to the index its key spells under this
 * prefix. Anything else (a key of a longer prefix, a corrupt value, a new key that already holds
 * something else, records without such an envelope) is reported and left where it is.
 *
 * @module
 */
import { decodeKmsBlob } from '../envelope/codec.js';
import { KmsBlobLimits } from '../envelope/kms-blob.js';
import { type IndexName, isValidIndexName } from '../names.js';
import {
  envelopeKey,
  legacyEnvelopeKey,
  legacyRecordsKey,
  parseKeyPrefix,
  RECORD_KINDS,
  recordsKey,
} from './redis-keys.js';
import { DELETE_IF_EQUAL, HDEL_IF_EQUAL, type RedisScript } from './redis-scripts.js';
import type { RecordKind } from './store.js';

/** The Redis calls a migration makes (an ioredis `Redis`, or a `Cluster`: every master is scanned). */
export interface RedisMigrationClient {
  /** `SCAN cursor MATCH … COUNT …`. */
  scan(cursor: string, ...args: (string | number)[]): Promise<[string, string[]]>;
  /** `STRLEN`: sizes are checked before a value is read. */
  strlen(key: string): Promise<number>;
  /** `GET`, as bytes. */
  getBuffer(key: string): Promise<Buffer | null>;
  /** `SET key value NX`. */
  set(key: string, value: Buffer, nx: 'NX'): Promise<'OK' | null>;
  /** `HGETALL`, as bytes. */
  hgetallBuffer(key: string): Promise<Record<string, Buffer>>;
  /** `HSETNX`. */
  hsetnx(key: string, field: string, value: Buffer): Promise<number>;
  /** Any other command (scripts), answered as bytes. */
  callBuffer(command: string, ...args: (string | Buffer | number)[]): Promise<unknown>;
  /** A Cluster's nodes: SCAN runs on each master. */
  nodes?(role: 'master'): RedisMigrationClient[];
}

/** Why an old-layout key was left where it is. */
export type RedisMigrationProblemKind =
  /** The envelope is bound to another index: the key of a longer prefix (old-layout aliasing). */
  | 'foreign'
  /** The value is not a verifiable envelope (corrupt, over the limit, not a string). */
  | 'unreadable'
  /** The new key already holds something else: written since by the new layout. Both kept. */
  | 'conflict'
  /** The old key changed while it was being moved (a writer of the old layout is still running). */
  | 'changed'
  /** Old-layout records with no envelope of this prefix to tell whose they are. */
  | 'orphan-records';

/** One key left alone, and why. Key names are not secret; no value is ever included. */
export interface RedisMigrationProblem {
  /** What kind of problem. */
  readonly kind: RedisMigrationProblemKind;
  /** The old-layout key. */
  readonly key: string;
  /** The index the key spells under this prefix, when it spells one. */
  readonly index?: string;
  /** What was found, in plain words. */
  readonly detail: string;
}

/** What a migration did (or, with `dryRun`, would do). */
export interface RedisMigrationReport {
  /** Whether this was a dry run (nothing written). */
  readonly dryRun: boolean;
  /** False when `signal` stopped the run early: run it again to finish. */
  readonly complete: boolean;
  /** Old-layout envelope keys of this prefix that spell an index. */
  readonly found: number;
  /** Indexes moved (dry run: that would be), envelope and records. */
  readonly migrated: readonly IndexName[];
  /** Records moved (dry run: that would be), over all indexes and kinds. */
  readonly records: number;
  /** Keys left where they are, and why. */
  readonly problems: readonly RedisMigrationProblem[];
}

/** Options of {@link migrateRedisLayout}. */
export interface RedisMigrationOptions {
  /** The store's key prefix (default `kms-envelope:`); the same rules as the store's. */
  readonly keyPrefix: string;
  /** Report what would be moved, write nothing. */
  readonly dryRun?: boolean;
  /** Called after each index with the number done and the number found. */
  readonly onProgress?: (done: number, total: number) => void;
  /** Stops between two indexes (never halfway through one). */
  readonly signal?: AbortSignal;
  /** SCAN COUNT hint (default 1000). */
  readonly scanCount?: number;
}

const ENVELOPE_SUFFIX = ':kmsblob';

/** `prefix` with glob characters escaped, for SCAN MATCH. */
function globEscape(prefix: string): string {
  return prefix.replace(/[*?[\]\\]/g, '\\$&');
}

async function scanAll(client: RedisMigrationClient, pattern: string, count: number): Promise<string[]> {
  const nodes = typeof client.nodes === 'function' ? client.nodes('master') : [client];
  const keys = new Set<string>();
  for (const node of nodes) {
    let cursor = '0';
    do {
      const [next, batch] = await node.scan(cursor, 'MATCH', pattern, 'COUNT', count);
      for (const key of batch) keys.add(key);
      cursor = next;
    } while (cursor !== '0');
  }
  return [...keys].sort();
}

/** The index an old-layout key spells under `prefix`, or undefined (a new-layout key, another prefix). */
function spelledIndex(key: string, prefix: string, suffix: string): IndexName | undefined {
  if (!key.startsWith(prefix) || !key.endsWith(suffix)) return undefined;
  const rest = key.slice(prefix.length, key.length - suffix.length);
  return isValidIndexName(rest) ? rest : undefined;
}

function runScript(client: RedisMigrationClient, script: RedisScript, key: string, args: Buffer[]) {
  return client.callBuffer('EVALSHA', script.sha, 1, key, ...args).catch((err: unknown) => {
    if (!(err instanceof Error && err.message.startsWith('NOSCRIPT'))) throw err;
    return client.callBuffer('EVAL', script.source, 1, key, ...args);
  });
}

/**
 * Moves every old-layout index of `keyPrefix` to the new layout (see the module doc).
 * @throws InvalidArgumentError for a bad `keyPrefix`; Redis errors as they come (the store maps
 * them: {@link RedisStore.migrateLegacyLayout}).
 */
export async function migrateRedisLayout(
  client: RedisMigrationClient,
  options: RedisMigrationOptions,
): Promise<RedisMigrationReport> {
  const prefix = parseKeyPrefix(options.keyPrefix);
  const dryRun = options.dryRun === true;
  const count = options.scanCount ?? 1000;
  const problems: RedisMigrationProblem[] = [];
  const migrated: IndexName[] = [];
  let records = 0;

  const envelopeKeys = await scanAll(client, `${globEscape(prefix)}*${ENVELOPE_SUFFIX}`, count);
  const indexes = envelopeKeys
    .map((key) => spelledIndex(key, prefix, ENVELOPE_SUFFIX))
    .filter((name): name is IndexName => name !== undefined);

  /** Moves one index; false when it was left (its problems recorded). */
  const migrateIndex = async (index: IndexName): Promise<boolean> => {
    const oldKey = legacyEnvelopeKey(prefix, index);
    const newKey = envelopeKey(prefix, index);
    const problem = (kind: RedisMigrationProblemKind, key: string, detail: string) => {
      problems.push({ kind, key, index, detail });
      return false;
    };
    let size: number;
    try {
      size = await client.strlen(oldKey);
    } catch (err) {
      if (/WRONGTYPE/.test(String((err as Error).message)))
        return problem('unreadable', oldKey, 'the key is not a string');
      throw err;
    }
    if (size > KmsBlobLimits.maxEnvelopeBytes)
      return problem('unreadable', oldKey, `the value is over ${KmsBlobLimits.maxEnvelopeBytes} bytes`);
    const old = await client.getBuffer(oldKey);
    if (old === null) return true; // gone since the scan (moved by a concurrent run)
    let boundTo: string;
    try {
      boundTo = decodeKmsBlob(old).indexName;
    } catch {
      return problem('unreadable', oldKey, 'the value is not a valid envelope');
    }
    if (boundTo !== index) {
      return problem(
        'foreign',
        oldKey,
        `the envelope is bound to index "${boundTo}", not "${index}": the key of another prefix (old keys were ambiguous); left alone`,
      );
    }

    const oldRecords = new Map<RecordKind, Record<string, Buffer>>();
    for (const kind of RECORD_KINDS) {
      const key = legacyRecordsKey(prefix, index, kind);
      try {
        oldRecords.set(kind, await client.hgetallBuffer(key));
      } catch (err) {
        if (/WRONGTYPE/.test(String((err as Error).message)))
          return problem('unreadable', key, 'the records key is not a hash');
        throw err;
      }
    }
    const recordCount = [...oldRecords.values()].reduce((n, all) => n + Object.keys(all).length, 0);

    if (dryRun) {
      const existing = await client.getBuffer(newKey);
      if (existing !== null && !existing.equals(old))
        return problem('conflict', newKey, 'the new key already holds another envelope; both would be kept');
      records += recordCount;
      return true;
    }

    // Copy, never over something newer; then read back what is there.
    await client.set(newKey, old, 'NX');
    const copied = await client.getBuffer(newKey);
    if (copied === null || !copied.equals(old))
      return problem('conflict', newKey, `the new key already holds another envelope; "${oldKey}" kept`);
    let recordsLeft = false;
    for (const [kind, all] of oldRecords) {
      const ids = Object.keys(all);
      if (ids.length === 0) continue;
      const key = recordsKey(prefix, index, kind);
      for (const id of ids) await client.hsetnx(key, id, all[id]!);
      const now = await client.hgetallBuffer(key);
      const done: Buffer[] = [];
      for (const id of ids) {
        if (now[id]?.equals(all[id]!)) {
          done.push(Buffer.from(id), all[id]!);
          records++;
        } else {
          recordsLeft = true;
          problem('conflict', key, `record "${id}" already exists with another value; the old one kept`);
        }
      }
      const oldKeyOfKind = legacyRecordsKey(prefix, index, kind);
      const remaining =
        done.length === 0 ? ids.length : Number(await runScript(client, HDEL_IF_EQUAL, oldKeyOfKind, done));
      if (remaining > 0 && done.length === ids.length) {
        recordsLeft = true;
        problem('changed', oldKeyOfKind, 'records were written to the old key during the move; run again');
      }
    }
    // The old envelope last: while it is there, the next run picks this index up again.
    if (recordsLeft) return false;
    if (Number(await runScript(client, DELETE_IF_EQUAL, oldKey, [old])) !== 1)
      return problem('changed', oldKey, 'the old envelope changed during the move; run again');
    return true;
  };

  let done = 0;
  const moved = new Set<IndexName>();
  for (const index of indexes) {
    if (options.signal?.aborted) break;
    if (await migrateIndex(index)) {
      migrated.push(index);
      moved.add(index);
    }
    done++;
    options.onProgress?.(done, indexes.length);
  }
  const complete = done === indexes.length;

  // Records of the old layout whose index had no envelope of this prefix: whose they are
  // cannot be told (they carry no binding), so they are reported, not moved.
  if (complete) {
    const claimed = new Set(indexes);
    for (const kind of RECORD_KINDS) {
      for (const key of await scanAll(client, `${globEscape(prefix)}*:${kind}`, count)) {
        const index = spelledIndex(key, prefix, `:${kind}`);
        if (index === undefined || claimed.has(index)) continue;
        problems.push({
          kind: 'orphan-records',
          key,
          index,
          detail: `no old-layout envelope of this prefix for index "${index}": left alone`,
        });
      }
    }
  }
  return { dryRun, complete, found: indexes.length, migrated, records, problems };
}
