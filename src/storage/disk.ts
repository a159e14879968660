import { randomBytes } from 'node:crypto';
import {
  chmodSync,
  closeSync,
  fsyncSync,
  linkSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  statSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { encodeKmsBlob } from '../envelope/codec.js';
import type { KmsBlob } from '../envelope/kms-blob.js';
import {
  AccessDeniedError,
  EnvelopeExistsError,
  EnvelopeNotFoundError,
  InvalidArgumentError,
  type KmsEnvelopeError,
  StoreUnavailableError,
  VersionConflictError,
} from '../errors.js';
import { type IndexName, parseIndexName } from '../names.js';
import { checkWrite, decodeStored } from './bind.js';
import { checkRecordId } from './record-id.js';
import type { EnvelopeStore, PushOptions, RecordKind, RecordStore } from './store.js';

/** Options of {@link DiskStore}. */
export interface DiskStoreOptions {
  /** Most attempts of a write that keeps losing races before it gives up (default 1000). */
  readonly maxAttempts?: number;
}

/** Name of the folder, inside an index's folder, that holds its envelope's generations. */
export const ENVELOPE_DIR = 'kmsblob';
/** Name of the folder, inside an index's folder, that holds its records (DEK records, …). */
export const RECORDS_DIR = 'records';
const SUFFIX = '.kmsb';
const TMP_PREFIX = '.tmp-';
const STALE_TMP_MS = 60 * 60 * 1000;
/**
 * Generations kept behind the newest. A generation number is only ever reused if its file was
 * removed, and it is removed only once the newest is this far ahead, which is how a writer that
 * stalled between reading and linking detects that its link landed on a recycled number.
 */
export const RETAINED_GENERATIONS = 16;

/** The newest generation in an envelope folder: its number and file. */
interface Generation {
  readonly number: number;
  readonly path: string;
}

/** What the newest generation holds, as a write's precondition sees it. */
interface Stored {
  /** True when there is an envelope (a non-empty newest generation), even a corrupt one. */
  readonly live: boolean;
  /** The decoded envelope, read only for preconditions that need its content. */
  readonly blob: KmsBlob | undefined;
}

/**
 * The precondition of a write. `check` throws to refuse (its error is the result); a
 * {@link NothingToDo} ends the write quietly. `decode` says whether it needs the envelope's content
 * (compare-and-set) or only whether one is there (create, delete: these work on a corrupt one).
 */
interface Precondition {
  readonly decode: boolean;
  check(current: Stored): void;
}

/**
 * Envelopes on disk, beside each index's keystore: `<root>/<index>/kmsblob/<generation>.kmsb`.
 *
 * Every write is decided by the filesystem, without locks, so a killed writer leaves nothing
 * stale behind. A write puts the new bytes in a temporary file (mode 0600), fsyncs it, then
 * `link`s it to the next generation number: the link is the commit point, and it fails with
 * EEXIST if another writer committed that generation first, in which case the write re-reads
 * and re-checks its precondition (create: nothing live; compare-and-set: the expected version).
 * Then the folder is fsynced and generations more than {@link RETAINED_GENERATIONS} behind are
 * removed. A writer that stalled so long that its number had been used and removed meanwhile
 * sees, after its link, a newest generation at least that far ahead: it removes its file and
 * retries. (Mistaking a fresh commit for a stale one would need that many complete commits
 * during one directory listing.) The current envelope is the
 * highest generation; a 0-byte generation is a tombstone left by delete, so that a
 * compare-and-set that read the deleted envelope can never bring it back.
 *
 * Reads use synchronous calls: a `readFileSync` of a small file costs microseconds where
 * `fs.promises` hands off to the thread pool (~150 µs).
 */
export class DiskStore implements EnvelopeStore, RecordStore {
  readonly kind = 'disk';
  readonly description: string;
  /** Absolute root folder. */
  readonly root: string;
  readonly #maxAttempts: number;
  /**
   * The newest generation this store saw per index: a plain push links the next one straight
   * away, and lists the folder only if it lost that race. Only a hint: the link decides.
   */
  readonly #newestSeen = new Map<string, number>();

  /** @throws InvalidArgumentError if `root` is empty. */
  constructor(root: string, options: DiskStoreOptions = {}) {
    if (typeof root !== 'string' || root === '') throw new InvalidArgumentError('disk store needs a folder');
    this.root = isAbsolute(root) ? root : resolve(root);
    this.description = `disk:${this.root}`;
    this.#maxAttempts = options.maxAttempts ?? 1000;
  }

  /** The folder of an index (where its keystore and envelope live). */
  indexDir(index: IndexName): string {
    return join(this.root, parseIndexName(index));
  }

  async create(index: IndexName, blob: KmsBlob): Promise<void> {
    const name = checkWrite(index, blob);
    this.#write(name, encodeKmsBlob(blob), {
      decode: false,
      check: ({ live }) => {
        if (live) throw new EnvelopeExistsError('an envelope already exists', { index: name });
      },
    });
  }

  async push(index: IndexName, blob: KmsBlob, options: PushOptions = {}): Promise<void> {
    const name = checkWrite(index, blob);
    const expected = options.expectedVersion;
    this.#write(
      name,
      encodeKmsBlob(blob),
      expected === undefined
        ? undefined
        : {
            decode: true,
            check: ({ blob: current }) => {
              if (current?.version !== expected) {
                throw new VersionConflictError(expected, current?.version, { index: name });
              }
            },
          },
    );
  }

  async get(index: IndexName): Promise<KmsBlob> {
    const name = parseIndexName(index);
    const found = this.#readCurrent(name, true);
    if (found.blob === undefined) throw new EnvelopeNotFoundError('no envelope stored', { index: name });
    return found.blob;
  }

  async getEncoded(index: IndexName): Promise<Uint8Array> {
    const name = parseIndexName(index);
    const { bytes } = this.#readNewest(name, true);
    if (bytes === undefined || bytes.length === 0)
      throw new EnvelopeNotFoundError('no envelope stored', { index: name });
    return bytes;
  }

  async delete(index: IndexName): Promise<void> {
    const name = parseIndexName(index);
    // A tombstone generation, written only when there is an envelope (even a corrupt one) to delete.
    this.#write(name, new Uint8Array(0), {
      decode: false,
      check: ({ live }) => {
        if (!live) throw new NothingToDo();
      },
    });
  }

  async close(): Promise<void> {}

  #recordDir(index: IndexName, kind: RecordKind): string {
    return join(this.root, parseIndexName(index), RECORDS_DIR, kind);
  }

  async putRecord(index: IndexName, kind: RecordKind, id: string, value: Uint8Array): Promise<void> {
    await this.putRecords(index, kind, new Map([[id, value]]));
  }

  /** Temp file, fsync, then `link` (which fails if the record exists), fsync of the folder. */
  async createRecord(index: IndexName, kind: RecordKind, id: string, value: Uint8Array): Promise<boolean> {
    const name = parseIndexName(index);
    checkRecordId(kind, id);
    const dir = this.#recordDir(name, kind);
    ensureDir(dir, name);
    const tmp = writeTemp(dir, value, name);
    try {
      linkSync(tmp, join(dir, id));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
      throw fsError(err, 'cannot write a record', name);
    } finally {
      unlinkQuietly(tmp);
    }
    fsyncDir(dir, name);
    return true;
  }

  /** Each record: temp file, fsync, rename; then one fsync of the folder for the batch. */
  async putRecords(
    index: IndexName,
    kind: RecordKind,
    records: ReadonlyMap<string, Uint8Array>,
  ): Promise<void> {
    const name = parseIndexName(index);
    for (const id of records.keys()) checkRecordId(kind, id);
    if (records.size === 0) return;
    const dir = this.#recordDir(name, kind);
    ensureDir(dir, name);
    const written: [string, string][] = [];
    try {
      for (const [id, value] of records) written.push([writeTemp(dir, value, name), join(dir, id)]);
      for (const [tmp, target] of written) {
        try {
          renameSync(tmp, target);
        } catch (err) {
          throw fsError(err, 'cannot write a record', name);
        }
      }
    } finally {
      for (const [tmp] of written) unlinkQuietly(tmp); // only those not renamed are still there
    }
    fsyncDir(dir, name);
  }

  async getRecord(index: IndexName, kind: RecordKind, id: string): Promise<Uint8Array | undefined> {
    const name = parseIndexName(index);
    checkRecordId(kind, id);
    try {
      return new Uint8Array(readFileSync(join(this.#recordDir(name, kind), id)));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw fsError(err, 'cannot read a record', name);
    }
  }

  async listRecords(index: IndexName, kind: RecordKind): Promise<Map<string, Uint8Array>> {
    const name = parseIndexName(index);
    const dir = this.#recordDir(name, kind);
    let names: string[];
    try {
      names = readdirSync(dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return new Map();
      throw fsError(err, 'cannot list records', name);
    }
    const out = new Map<string, Uint8Array>();
    const now = Date.now();
    for (const id of names.sort()) {
      if (id.startsWith(TMP_PREFIX)) {
        removeIfStale(join(dir, id), now); // left by a writer killed mid-write
        continue;
      }
      try {
        out.set(id, new Uint8Array(readFileSync(join(dir, id))));
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT')
          throw fsError(err, 'cannot read a record', name);
      }
    }
    return out;
  }

  async deleteRecord(index: IndexName, kind: RecordKind, id: string): Promise<void> {
    const name = parseIndexName(index);
    checkRecordId(kind, id);
    const dir = this.#recordDir(name, kind);
    try {
      unlinkSync(join(dir, id));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw fsError(err, 'cannot delete a record', name);
    }
    fsyncDir(dir, name);
  }

  /**
   * Reads the newest generation: decoded when `decode`, else only its size. ENOENT while reading
   * means a writer removed it after listing: list again.
   * @throws MalformedEnvelopeError (only when decoding) if it is corrupt or bound to another index.
   */
  #readCurrent(index: IndexName, decode: boolean): Stored & { generation: Generation | undefined } {
    const { generation, live, bytes } = this.#readNewest(index, decode);
    const blob = bytes === undefined || !live ? undefined : decodeStored(index, bytes);
    return { generation, live, blob };
  }

  /** The newest generation, whether it is live, and its bytes when `read`. */
  #readNewest(
    index: IndexName,
    read: boolean,
  ): { generation: Generation | undefined; live: boolean; bytes: Buffer | undefined } {
    const dir = join(this.root, index, ENVELOPE_DIR);
    for (let attempt = 0; attempt < this.#maxAttempts; attempt++) {
      const generation = this.#newest(dir, index);
      if (generation === undefined) return { generation, live: false, bytes: undefined };
      let size: number;
      let bytes: Buffer | undefined;
      try {
        if (read) {
          bytes = readFileSync(generation.path);
          size = bytes.length;
        } else {
          size = statSync(generation.path).size;
        }
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
        throw fsError(err, 'cannot read the envelope', index);
      }
      return { generation, live: size > 0, bytes };
    }
    throw new StoreUnavailableError('the envelope kept changing while being read', { index });
  }

  #newest(dir: string, index: IndexName): Generation | undefined {
    return this.#list(dir, index).newest;
  }

  /** The folder's file names and its newest generation. */
  #list(dir: string, index: IndexName): { names: string[]; newest: Generation | undefined } {
    let names: string[];
    try {
      names = readdirSync(dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { names: [], newest: undefined };
      throw fsError(err, 'cannot list the envelope folder', index);
    }
    let best = -1;
    for (const name of names) {
      const n = parseGeneration(name);
      if (n > best) best = n;
    }
    return { names, newest: best < 0 ? undefined : { number: best, path: join(dir, `${best}${SUFFIX}`) } };
  }

  /**
   * The write protocol: re-read, check the precondition, link the next generation; repeat while
   * losing races. Without a precondition (plain push) it only needs the newest number.
   */
  #write(index: IndexName, bytes: Uint8Array, precondition: Precondition | undefined): void {
    const dir = join(this.root, index, ENVELOPE_DIR);
    let tmp: string | undefined;
    try {
      for (let attempt = 0; attempt < this.#maxAttempts; attempt++) {
        // A plain push needs only the newest generation's number, not its content; on its first
        // try it takes the number from the hint when there is one.
        const hint = attempt === 0 && precondition === undefined ? this.#newestSeen.get(index) : undefined;
        let generation: Generation | undefined;
        if (hint !== undefined) {
          generation = { number: hint, path: join(dir, `${hint}${SUFFIX}`) };
        } else if (precondition === undefined) {
          generation = this.#newest(dir, index);
        } else {
          const current = this.#readCurrent(index, precondition.decode);
          generation = current.generation;
          try {
            precondition.check(current);
          } catch (err) {
            if (err instanceof NothingToDo) return;
            throw err;
          }
        }
        if (tmp === undefined) {
          // A generation read from the folder means it exists; a hint does not prove it.
          if (generation === undefined || hint !== undefined) ensureDir(dir, index);
          tmp = writeTemp(dir, bytes, index);
        }
        const next = (generation?.number ?? 0) + 1;
        try {
          linkSync(tmp, join(dir, `${next}${SUFFIX}`));
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code === 'EEXIST') continue; // lost the race: re-check
          throw fsError(err, 'cannot commit the envelope', index);
        }
        const listing = this.#list(dir, index);
        const newest = listing.newest?.number ?? next;
        if (newest >= next + RETAINED_GENERATIONS) {
          // Our number had been used and removed while we stalled: not a commit. Try again.
          unlinkQuietly(join(dir, `${next}${SUFFIX}`));
          continue;
        }
        fsyncDir(dir, index);
        removeOlder(dir, listing.names, newest, tmp);
        this.#newestSeen.set(index, newest);
        return;
      }
      throw new StoreUnavailableError('too many concurrent writers; gave up', { index });
    } finally {
      if (tmp !== undefined) unlinkQuietly(tmp);
    }
  }
}

/** Thrown by a write's check when there is nothing to write (delete of a missing envelope). */
class NothingToDo extends Error {}

/** Generation number of a file name, or -1 for anything else (temporary files, strays). */
function parseGeneration(name: string): number {
  if (!name.endsWith(SUFFIX)) return -1;
  const digits = name.slice(0, -SUFFIX.length);
  if (!/^[1-9][0-9]{0,14}$/.test(digits)) return -1;
  return Number(digits);
}

function fsError(err: unknown, what: string, index: IndexName): KmsEnvelopeError {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'EACCES' || code === 'EPERM')
    return new AccessDeniedError(`${what}: permission denied`, { index, cause: err });
  return new StoreUnavailableError(`${what}${code ? ` (${code})` : ''}`, { index, cause: err });
}

/** Creates `dir` and its missing parents, 0700, fsyncing each parent. */
function ensureDir(dir: string, index: IndexName): void {
  try {
    statSync(dir);
    return;
  } catch {
    // create below
  }
  const missing: string[] = [];
  for (let d = dir; ; d = dirname(d)) {
    try {
      statSync(d);
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT')
        throw fsError(err, 'cannot reach the store folder', index);
      missing.unshift(d);
      if (d === dirname(d)) break;
    }
  }
  for (const d of missing) {
    try {
      mkdirSync(d, { mode: 0o700 });
      chmodSync(d, 0o700); // the umask may have narrowed or widened it
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST')
        throw fsError(err, 'cannot create the store folder', index);
    }
    fsyncDir(dirname(d), index);
  }
}

function writeTemp(dir: string, bytes: Uint8Array, index: IndexName): string {
  const path = join(dir, `${TMP_PREFIX}${randomBytes(8).toString('hex')}`);
  let fd: number | undefined;
  try {
    fd = openSync(path, 'wx', 0o600);
    let written = 0;
    while (written < bytes.length) written += writeSync(fd, bytes, written, bytes.length - written);
    fsyncSync(fd);
    return path;
  } catch (err) {
    unlinkQuietly(path);
    throw fsError(err, 'cannot write the envelope', index);
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

function fsyncDir(dir: string, index: IndexName): void {
  let fd: number | undefined;
  try {
    fd = openSync(dir, 'r');
    fsyncSync(fd);
  } catch (err) {
    throw fsError(err, 'cannot sync the envelope folder', index);
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/**
 * Removes generations {@link RETAINED_GENERATIONS} or more behind `newest`, and temporary files
 * left by killed writers. (In records folders, listing the records removes those.)
 */
function removeOlder(dir: string, names: readonly string[], newest: number, ownTmp: string): void {
  const now = Date.now();
  for (const name of names) {
    const n = parseGeneration(name);
    if (n >= 0 && n <= newest - RETAINED_GENERATIONS) {
      unlinkQuietly(join(dir, name));
    } else if (name.startsWith(TMP_PREFIX) && join(dir, name) !== ownTmp) {
      removeIfStale(join(dir, name), now);
    }
  }
}

/** Removes a temporary file older than {@link STALE_TMP_MS} (a killed writer's). */
function removeIfStale(path: string, now: number): void {
  try {
    if (now - statSync(path).mtimeMs > STALE_TMP_MS) unlinkQuietly(path);
  } catch {
    // already gone
  }
}

function unlinkQuietly(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // already removed (by a concurrent cleaner) — nothing to do
  }
}
