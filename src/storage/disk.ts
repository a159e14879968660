import { createHash, randomBytes } from 'node:crypto';
import {
  closeSync,
  constants,
  fchmodSync,
  fstatSync,
  fsyncSync,
  linkSync,
  lstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  readSync,
  renameSync,
  statSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { encodeKmsBlob } from '../envelope/codec.js';
import { type KmsBlob, KmsBlobLimits } from '../envelope/kms-blob.js';
import {
  AccessDeniedError,
  EnvelopeExistsError,
  EnvelopeNotFoundError,
  InvalidArgumentError,
  type KmsEnvelopeError,
  MalformedEnvelopeError,
  StoreUnavailableError,
} from '../errors.js';
import { type IndexName, parseIndexName } from '../names.js';
import { checkCas, checkWrite, decodeStored } from './bind.js';
import { checkRecordId, checkRecordWrite, MAX_RECORD_BYTES } from './record-id.js';
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
/** Age after which any temporary file counts as a dead writer's, whoever wrote it. */
const STALE_TMP_MS = 60 * 60 * 1000;
/**
 * Generations kept behind the newest. A generation number is only ever reused if its file was
 * removed, and it is removed only once the newest is this far ahead, which is how a writer that
 * stalled between reading and linking detects that its link landed on a recycled number.
 */
export const RETAINED_GENERATIONS = 16;
/**
 * The content of the generation that delete writes. Never a valid envelope (far too short), and
 * not empty: an empty file is a truncated or planted one, not a deletion.
 */
const TOMBSTONE = Buffer.from('kms-envelope: index deleted\n');

// O_NONBLOCK: opening a FIFO for reading must not wait for a writer (it is refused after fstat);
// O_NOCTTY: a planted terminal device never becomes the process's controlling terminal.
const READ_FLAGS = constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK | constants.O_NOCTTY;
const TEMP_FLAGS = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;
const FOLDER_FLAGS = constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW;

/** The newest generation in an envelope folder: its number and file. */
interface Generation {
  readonly number: number;
  readonly path: string;
}

/** What the newest generation holds, as a read or a write's precondition sees it. */
type Newest = { readonly generation: Generation | undefined } & (
  | { readonly state: 'none' } // no generation, or a tombstone
  | { readonly state: 'envelope'; readonly bytes: Buffer }
  /** Something that cannot be an envelope: empty, a symlink, a FIFO, a device, too large. */
  | { readonly state: 'refused'; readonly error: MalformedEnvelopeError }
);

/**
 * The precondition of a write: throws to refuse (its error is the result); a
 * {@link NothingToDo} ends the write quietly.
 */
type Precondition = (current: Newest) => void;

/**
 * Envelopes on disk, beside each index's keystore: `<root>/<index>/kmsblob/<generation>.kmsb`;
 * records in `<root>/<index>/records/<kind>/<id>`.
 *
 * Every write is decided by the filesystem, without locks, so a killed writer leaves nothing
 * stale behind. A write puts the new bytes in a temporary file (mode 0600), fsyncs it, then
 * `link`s it to the next generation number: the link is the commit point, and it fails with
 * EEXIST if another writer committed that generation first, in which case the write re-reads
 * and re-checks its precondition (create: nothing live; compare-and-set: the expected version
 * and, when given, creation id, so that a delete and re-create is never taken for the envelope read).
 * Then the folder is fsynced and generations more than {@link RETAINED_GENERATIONS} behind are
 * removed. A writer that stalled so long that its number had been used and removed meanwhile
 * sees, after its link, a newest generation at least that far ahead: it removes its file and
 * retries. (Mistaking a fresh commit for a stale one would need that many complete commits
 * during one directory listing.) The current envelope is the highest generation; delete writes
 * a tombstone generation (a fixed marker text), so that a compare-and-set that read the deleted
 * envelope can never bring it back.
 *
 * Files the store does not control. Whoever can write the folder but not the KMS must not be
 * able to hang the process, make it read without bound, or make it read or write outside the
 * root, so below the root (which is trusted, and may itself be a symlink):
 * - every folder (`<index>`, `kmsblob`, `records`, `records/<kind>`) is checked with `lstat`
 *   before use and refused if it is a symlink or not a folder, for reads and writes alike;
 * - envelope and record files are opened with `O_NOFOLLOW | O_NONBLOCK` and `fstat`ed: a symlink
 *   (even a dangling one), FIFO, socket, device or folder, or a file over
 *   `KmsBlobLimits.maxEnvelopeBytes` (records: {@link MAX_RECORD_BYTES}, which record writes
 *   refuse to exceed too), is refused before
 *   anything is read, and then exactly the `fstat`ed size is read from that descriptor;
 * - an empty envelope file is refused too: it is a truncated or stray file, never a deletion.
 *   (A store writer can still delete an index, by planting a tombstone or removing files; what
 *   the marker tells apart is a deliberate delete from an accident that would invite a create.)
 *
 * Each refusal is a `MalformedEnvelopeError` (not retryable: it stays until someone repairs the
 * store), for `get`, `getEncoded`, a compare-and-set push and the record reads. What is refused
 * still counts as "something stored", as a corrupt envelope does: `create` over it is
 * `EnvelopeExistsError`, and a plain `push` (without `expectedVersion`) or `delete` repairs the
 * index by writing a newer generation. A record is repaired by `putRecord` or `deleteRecord`; a
 * symlinked folder only by hand (the store never removes what it did not write). Envelopes
 * written by earlier versions stay readable; their tombstones were empty files, which now read
 * as malformed: delete such an index again to confirm the deletion.
 * Limits: Node has no `openat` or `O_PATH`, so these checks stop planted files and links, not a
 * writer who swaps a folder for a symlink in the microseconds between a check and the open that
 * follows it; and a device node planted in a checked folder (which needs the privilege to create
 * one) is opened before `fstat` refuses it.
 *
 * Temporary files are named `.tmp-<host>-<pid>-<random>`, where `<host>` stands for this kernel
 * boot and PID namespace. Every write to a folder removes the temporary files there whose writer
 * is certainly dead (same host, another pid, and `kill(pid, 0)` says no such process), and any
 * older than an hour (another host's, or of an earlier version); never another live writer's.
 * Listing records removes them too.
 *
 * Reads use synchronous calls on one descriptor: a small file costs microseconds where
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
    this.#write(name, encodeKmsBlob(blob), ({ state }) => {
      if (state !== 'none') throw new EnvelopeExistsError('an envelope already exists', { index: name });
    });
  }

  async push(index: IndexName, blob: KmsBlob, options: PushOptions = {}): Promise<void> {
    const name = checkWrite(index, blob);
    this.#write(
      name,
      encodeKmsBlob(blob),
      options.expectedVersion === undefined
        ? undefined
        : (current) => checkCas(name, envelopeOf(name, current), options),
    );
  }

  async get(index: IndexName): Promise<KmsBlob> {
    const name = parseIndexName(index);
    const blob = envelopeOf(name, this.#readNewest(name));
    if (blob === undefined) throw new EnvelopeNotFoundError('no envelope stored', { index: name });
    return blob;
  }

  async getEncoded(index: IndexName): Promise<Uint8Array> {
    const name = parseIndexName(index);
    const current = this.#readNewest(name);
    if (current.state === 'refused') throw current.error;
    if (current.state === 'none') throw new EnvelopeNotFoundError('no envelope stored', { index: name });
    return current.bytes;
  }

  async delete(index: IndexName): Promise<void> {
    const name = parseIndexName(index);
    // A tombstone generation, written only when something (even a corrupt file) is there to delete.
    this.#write(name, TOMBSTONE, ({ state }) => {
      if (state === 'none') throw new NothingToDo();
    });
  }

  async close(): Promise<void> {}

  async putRecord(index: IndexName, kind: RecordKind, id: string, value: Uint8Array): Promise<void> {
    await this.putRecords(index, kind, new Map([[id, value]]));
  }

  /** Temp file, fsync, then `link` (which fails if the record exists), fsync of the folder. */
  async createRecord(index: IndexName, kind: RecordKind, id: string, value: Uint8Array): Promise<boolean> {
    const name = parseIndexName(index);
    checkRecordWrite(name, kind, id, value);
    const dir = this.#ensureFolders(name, [RECORDS_DIR, kind]);
    removeDeadTemps(dir, listFolder(dir, name), undefined);
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
    for (const [id, value] of records) checkRecordWrite(name, kind, id, value);
    if (records.size === 0) return;
    const dir = this.#ensureFolders(name, [RECORDS_DIR, kind]);
    removeDeadTemps(dir, listFolder(dir, name), undefined);
    const written: [string, string][] = [];
    try {
      for (const [id, value] of records) written.push([writeTemp(dir, value, name), join(dir, id)]);
      for (const [tmp, target] of written) {
        try {
          renameSync(tmp, target); // replaces a symlink planted there, never follows it
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
    const dir = this.#existingFolder(name, [RECORDS_DIR, kind]);
    if (dir === undefined) return undefined;
    return readRecord(dir, kind, id, name);
  }

  async listRecords(index: IndexName, kind: RecordKind): Promise<Map<string, Uint8Array>> {
    const name = parseIndexName(index);
    const out = new Map<string, Uint8Array>();
    const dir = this.#existingFolder(name, [RECORDS_DIR, kind]);
    if (dir === undefined) return out;
    const names = listFolder(dir, name);
    removeDeadTemps(dir, names, undefined);
    for (const id of names.sort()) {
      if (id.startsWith(TMP_PREFIX)) continue;
      const value = readRecord(dir, kind, id, name);
      if (value !== undefined) out.set(id, value); // undefined: deleted since the listing
    }
    return out;
  }

  async deleteRecord(index: IndexName, kind: RecordKind, id: string): Promise<void> {
    const name = parseIndexName(index);
    checkRecordId(kind, id);
    // Checked first: an unlink through a symlinked folder would remove a file outside the root.
    const dir = this.#existingFolder(name, [RECORDS_DIR, kind]);
    if (dir === undefined) return;
    try {
      unlinkSync(join(dir, id)); // a symlink planted as the record is removed, not followed
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw fsError(err, 'cannot delete a record', name);
    }
    fsyncDir(dir, name);
  }

  /**
   * `<root>/<index>/<...parts>` if every folder on the way exists, else `undefined`.
   * @throws MalformedEnvelopeError if one of them is a symlink or not a folder.
   */
  #existingFolder(index: IndexName, parts: readonly string[]): string | undefined {
    let dir = this.root;
    for (const part of [index, ...parts]) {
      dir = join(dir, part);
      if (!checkFolder(dir, this.#relative(dir), index)) return undefined;
    }
    return dir;
  }

  /**
   * `<root>/<index>/<...parts>`, creating the missing folders (0700, each parent fsynced).
   * @throws MalformedEnvelopeError if one of them is a symlink or not a folder.
   */
  #ensureFolders(index: IndexName, parts: readonly string[]): string {
    ensureRoot(this.root, index);
    let dir = this.root;
    for (const part of [index, ...parts]) {
      const parent = dir;
      dir = join(dir, part);
      if (checkFolder(dir, this.#relative(dir), index)) continue;
      try {
        mkdirSync(dir, { mode: 0o700 });
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST')
          throw fsError(err, 'cannot create the store folder', index);
        checkFolder(dir, this.#relative(dir), index); // made by a racing writer, or planted
        continue;
      }
      setFolderMode(dir, index); // the umask may have narrowed or widened it
      fsyncDir(parent, index);
    }
    return dir;
  }

  /** A path below the root as messages show it. */
  #relative(path: string): string {
    return path.slice(this.root.length + 1);
  }

  /**
   * Reads the newest generation. ENOENT while reading means a writer removed it after listing:
   * list again.
   */
  #readNewest(index: IndexName): Newest {
    for (let attempt = 0; attempt < this.#maxAttempts; attempt++) {
      const generation = this.#newest(index);
      if (generation === undefined) return { generation, state: 'none' };
      const label = this.#relative(generation.path);
      let bytes: Buffer | undefined;
      try {
        bytes = readBounded(generation.path, KmsBlobLimits.maxEnvelopeBytes, label, index);
      } catch (err) {
        if (err instanceof MalformedEnvelopeError) return { generation, state: 'refused', error: err };
        throw err;
      }
      if (bytes === undefined) continue;
      if (bytes.equals(TOMBSTONE)) return { generation, state: 'none' };
      if (bytes.length === 0) {
        const error = new MalformedEnvelopeError(
          `"${label}" is empty (truncated or planted; a tombstone of an older kms-envelope is empty too: delete the index to confirm)`,
          { index },
        );
        return { generation, state: 'refused', error };
      }
      return { generation, state: 'envelope', bytes };
    }
    throw new StoreUnavailableError('the envelope kept changing while being read', { index });
  }

  /** The newest generation of an index, if it has any. */
  #newest(index: IndexName): Generation | undefined {
    const dir = this.#existingFolder(index, [ENVELOPE_DIR]);
    return dir === undefined ? undefined : newestOf(dir, listFolder(dir, index));
  }

  /**
   * The write protocol: re-read, check the precondition, link the next generation; repeat while
   * losing races. Without a precondition (plain push) it only needs the newest number.
   */
  #write(index: IndexName, bytes: Uint8Array, precondition: Precondition | undefined): void {
    let dir: string | undefined;
    let tmp: string | undefined;
    try {
      for (let attempt = 0; attempt < this.#maxAttempts; attempt++) {
        // A plain push needs only the newest generation's number, not its content; on its first
        // try it takes the number from the hint when there is one.
        const hint = attempt === 0 && precondition === undefined ? this.#newestSeen.get(index) : undefined;
        let generation: number | undefined;
        if (hint !== undefined) {
          generation = hint;
        } else if (precondition === undefined) {
          generation = this.#newest(index)?.number;
        } else {
          const current = this.#readNewest(index);
          generation = current.generation?.number;
          try {
            precondition(current);
          } catch (err) {
            if (err instanceof NothingToDo) return;
            throw err;
          }
        }
        if (dir === undefined || tmp === undefined) {
          dir = this.#ensureFolders(index, [ENVELOPE_DIR]);
          tmp = writeTemp(dir, bytes, index);
        }
        const next = (generation ?? 0) + 1;
        try {
          linkSync(tmp, join(dir, `${next}${SUFFIX}`));
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code === 'EEXIST') continue; // lost the race: re-check
          throw fsError(err, 'cannot commit the envelope', index);
        }
        const names = listFolder(dir, index);
        const newest = newestOf(dir, names)?.number ?? next;
        if (newest >= next + RETAINED_GENERATIONS) {
          // Our number had been used and removed while we stalled: not a commit. Try again.
          unlinkQuietly(join(dir, `${next}${SUFFIX}`));
          continue;
        }
        fsyncDir(dir, index);
        removeOlder(dir, names, newest);
        removeDeadTemps(dir, names, tmp);
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

/**
 * The decoded envelope of a read, `undefined` when there is none.
 * @throws MalformedEnvelopeError if what is stored is refused, corrupt or bound to another index.
 */
function envelopeOf(index: IndexName, current: Newest): KmsBlob | undefined {
  if (current.state === 'refused') throw current.error;
  return current.state === 'envelope' ? decodeStored(index, current.bytes) : undefined;
}

/** Generation number of a file name, or -1 for anything else (temporary files, strays). */
function parseGeneration(name: string): number {
  if (!name.endsWith(SUFFIX)) return -1;
  const digits = name.slice(0, -SUFFIX.length);
  if (!/^[1-9][0-9]{0,14}$/.test(digits)) return -1;
  return Number(digits);
}

/** The highest generation among a folder's file names. */
function newestOf(dir: string, names: readonly string[]): Generation | undefined {
  let best = -1;
  for (const name of names) {
    const n = parseGeneration(name);
    if (n > best) best = n;
  }
  return best < 0 ? undefined : { number: best, path: join(dir, `${best}${SUFFIX}`) };
}

/** The names in a folder already checked to be one; none if it was removed meanwhile. */
function listFolder(dir: string, index: IndexName): string[] {
  try {
    return readdirSync(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw fsError(err, 'cannot list a store folder', index);
  }
}

/** One record file of a checked folder, `undefined` if it is not there. @throws MalformedEnvelopeError */
function readRecord(dir: string, kind: RecordKind, id: string, index: IndexName): Uint8Array | undefined {
  const bytes = readBounded(join(dir, id), MAX_RECORD_BYTES, `${RECORDS_DIR}/${kind}/${id}`, index);
  return bytes === undefined ? undefined : new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.length);
}

/**
 * Whether `path` is a real folder: false if it does not exist.
 * @throws MalformedEnvelopeError if it is a symlink or not a folder (`label` names it).
 */
function checkFolder(path: string, label: string, index: IndexName): boolean {
  let stats: ReturnType<typeof lstatSync>;
  try {
    stats = lstatSync(path, { throwIfNoEntry: false });
  } catch (err) {
    throw fsError(err, 'cannot reach a store folder', index);
  }
  if (stats === undefined) return false;
  if (stats.isSymbolicLink())
    throw new MalformedEnvelopeError(
      `"${label}" is a symbolic link: the disk store follows none below its root`,
      { index },
    );
  if (!stats.isDirectory()) throw new MalformedEnvelopeError(`"${label}" is not a folder`, { index });
  return true;
}

/**
 * The bytes of a regular file of at most `limit` bytes, read from one descriptor opened without
 * following a symlink or waiting on a FIFO; `undefined` if there is no such name.
 * @throws MalformedEnvelopeError if it is a symlink, not a regular file, or larger than `limit`.
 */
function readBounded(path: string, limit: number, label: string, index: IndexName): Buffer | undefined {
  let fd: number;
  try {
    fd = openSync(path, READ_FLAGS);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return undefined;
    // ELOOP: a symlink (EMLINK on FreeBSD); ENXIO: a socket, or a device with nothing behind it.
    if (code === 'ELOOP' || code === 'EMLINK')
      throw new MalformedEnvelopeError(
        `"${label}" is a symbolic link: the disk store follows none below its root`,
        { index, cause: err },
      );
    if (code === 'ENXIO')
      throw new MalformedEnvelopeError(`"${label}" is not a regular file`, { index, cause: err });
    throw fsError(err, `cannot read "${label}"`, index);
  }
  try {
    const stats = fstatSync(fd);
    if (!stats.isFile()) throw new MalformedEnvelopeError(`"${label}" is not a regular file`, { index });
    if (stats.size > limit)
      throw new MalformedEnvelopeError(`"${label}" is larger than ${limit} bytes`, { index });
    // Buffer.alloc, never the shared pool: callers keep (and may transfer) what they get.
    const bytes = Buffer.alloc(stats.size);
    let read = 0;
    while (read < bytes.length) {
      const n = readSync(fd, bytes, read, bytes.length - read, read);
      if (n === 0) return bytes.subarray(0, read); // shrank since fstat: decoding will tell
      read += n;
    }
    return bytes;
  } catch (err) {
    if (err instanceof MalformedEnvelopeError) throw err;
    throw fsError(err, `cannot read "${label}"`, index);
  } finally {
    closeSync(fd);
  }
}

function fsError(err: unknown, what: string, index: IndexName): KmsEnvelopeError {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'EACCES' || code === 'EPERM')
    return new AccessDeniedError(`${what}: permission denied`, { index, cause: err });
  return new StoreUnavailableError(`${what}${code ? ` (${code})` : ''}`, { index, cause: err });
}

/** Creates the root and its missing parents, 0700, fsyncing each parent. The root is trusted. */
function ensureRoot(root: string, index: IndexName): void {
  try {
    statSync(root);
    return;
  } catch {
    // create below
  }
  const missing: string[] = [];
  for (let d = root; ; d = dirname(d)) {
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
      setFolderMode(d, index);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST')
        throw fsError(err, 'cannot create the store folder', index);
    }
    fsyncDir(dirname(d), index);
  }
}

/** chmod 0700 through a descriptor opened without following a symlink. */
function setFolderMode(dir: string, index: IndexName): void {
  let fd: number | undefined;
  try {
    fd = openSync(dir, FOLDER_FLAGS);
    fchmodSync(fd, 0o700);
  } catch (err) {
    throw fsError(err, 'cannot create the store folder', index);
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/**
 * Identifies this kernel boot and PID namespace, so that a pid in a temporary file's name can be
 * checked: a pid seen from another container or host means nothing here. `undefined` without
 * `/proc` (macOS, …): temporary files are then removed by age only.
 */
const WRITER_HOST = writerHost();

function writerHost(): string | undefined {
  let boot: string;
  let pidNamespace: string;
  try {
    boot = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
    pidNamespace = readlinkSync('/proc/self/ns/pid');
  } catch {
    return undefined; // no such files here: nothing is lost but the faster cleanup
  }
  return createHash('sha256').update(`${boot}\0${pidNamespace}`).digest('hex').slice(0, 16);
}

const TEMP_NAME = /^\.tmp-([0-9a-f]{16})-([1-9][0-9]{0,9})-[0-9a-f]{16}$/;

/**
 * The name this process gives its next temporary file (`.tmp-<host>-<pid>-<random>`); a pid
 * other than the process's own names another writer, as tests of the cleanup need.
 */
export function temporaryFileName(pid: number = process.pid): string {
  const random = randomBytes(8).toString('hex');
  return WRITER_HOST === undefined
    ? `${TMP_PREFIX}${random}`
    : `${TMP_PREFIX}${WRITER_HOST}-${pid}-${random}`;
}

/** True only when the temporary file's writer is certainly gone: same host, no such process. */
function writerIsGone(name: string): boolean {
  const match = TEMP_NAME.exec(name);
  if (match === null || WRITER_HOST === undefined || match[1] !== WRITER_HOST) return false;
  const pid = Number(match[2]);
  if (pid === process.pid) return false; // ours: another thread of this process may be mid-write
  try {
    process.kill(pid, 0); // signal 0 only asks whether the process exists
    return false;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ESRCH'; // EPERM: alive, another user's
  }
}

function writeTemp(dir: string, bytes: Uint8Array, index: IndexName): string {
  const path = join(dir, temporaryFileName());
  let fd: number | undefined;
  try {
    fd = openSync(path, TEMP_FLAGS, 0o600);
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
    fd = openSync(dir, FOLDER_FLAGS);
    fsyncSync(fd);
  } catch (err) {
    throw fsError(err, 'cannot sync the envelope folder', index);
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/** Removes generations {@link RETAINED_GENERATIONS} or more behind `newest`. */
function removeOlder(dir: string, names: readonly string[], newest: number): void {
  for (const name of names) {
    const n = parseGeneration(name);
    if (n >= 0 && n <= newest - RETAINED_GENERATIONS) unlinkQuietly(join(dir, name));
  }
}

/**
 * Removes the temporary files among `names` that a dead writer left: its pid is gone, or the file
 * is older than {@link STALE_TMP_MS}. `own` (the caller's, if any) is kept.
 */
function removeDeadTemps(dir: string, names: readonly string[], own: string | undefined): void {
  const now = Date.now();
  for (const name of names) {
    if (!name.startsWith(TMP_PREFIX)) continue;
    const path = join(dir, name);
    if (path === own) continue;
    if (writerIsGone(name) || isStale(path, now)) unlinkQuietly(path);
  }
}

function isStale(path: string, now: number): boolean {
  try {
    const stats = lstatSync(path, { throwIfNoEntry: false });
    return stats !== undefined && now - stats.mtimeMs > STALE_TMP_MS;
  } catch {
    return false; // cannot tell (permissions): keep it
  }
}

function unlinkQuietly(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // already removed (by a concurrent cleaner) — nothing to do
  }
}
