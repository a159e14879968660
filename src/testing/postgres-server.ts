import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  chownSync,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './redis-server.js';

/** A PostgreSQL server started for tests on 127.0.0.1, a free port and a socket in its folder. */
export interface PostgresServerHandle {
  /**
   * `postgresql://postgres:<password>@127.0.0.1:<port>/postgres`: TCP connections need the
   * password (SCRAM), as in production, so tests see what a real deployment sends.
   */
  readonly connectionString: string;
  /** The TCP port it listens on (127.0.0.1 only). */
  readonly port: number;
  /** The superuser's name (`postgres`). */
  readonly user: string;
  /** The superuser's password (random per server). */
  readonly password: string;
  /** The folder holding the data directory and the Unix socket (local connections are trusted). */
  readonly dir: string;
  /** PID of the running postmaster, or `undefined` while it is shut down. */
  readonly pid: number | undefined;
  /**
   * Runs SQL as the superuser with `psql` over the Unix socket (no npm package needed) and returns
   * its unaligned, tuples-only output. For tests: planting values, `pg_terminate_backend`.
   * @throws Error with psql's message when the statement fails.
   */
  psql(sql: string): Promise<string>;
  /**
   * Stops the server (fast shutdown: SIGINT to the postmaster, by PID) and keeps its data, so that
   * {@link start} brings the same data back on the same port. Idempotent.
   */
  shutdown(): Promise<void>;
  /** Starts it again after {@link shutdown} (a no-op while running). */
  start(): Promise<void>;
  /** {@link shutdown} then {@link start}. */
  restart(): Promise<void>;
  /** Stops the server and removes its folder. Idempotent; the handle cannot be started again. */
  stop(): Promise<void>;
}

/** Options of {@link startPostgres}. */
export interface PostgresServerOptions {
  /**
   * The folder with `initdb`, `postgres` and `psql` (default: the newest
   * `/usr/lib/postgresql/<version>/bin`, as Debian installs it, else the PATH).
   */
  readonly binDir?: string;
  /**
   * The operating-system user that runs `initdb` and `postgres` when this process is root (both
   * refuse to run as root); default `postgres`, which the Debian package creates. Ignored when
   * not root: the current user runs them.
   */
  readonly osUser?: string;
  /** How long to wait for the server to accept connections (default 30 s). */
  readonly startTimeoutMs?: number;
  /** Where the temporary folder is made (default `os.tmpdir()`; `osUser` must be able to reach it). */
  readonly parentDir?: string;
}

const INSTALL_HINT = 'Debian: apt-get install postgresql';

/**
 * The folder of the PostgreSQL server binaries: the newest `/usr/lib/postgresql/<n>/bin` holding
 * `initdb`, else `''` (the PATH), or `undefined` when neither has `initdb`.
 */
export function findPostgresBinDir(): string | undefined {
  const root = '/usr/lib/postgresql';
  let versions: string[] = [];
  try {
    versions = readdirSync(root).filter((v) => /^\d+(\.\d+)?$/.test(v));
  } catch {
    // not a Debian layout
  }
  versions.sort((a, b) => Number(b) - Number(a));
  for (const version of versions) {
    const dir = join(root, version, 'bin');
    if (existsSync(join(dir, 'initdb')) && existsSync(join(dir, 'postgres'))) return dir;
  }
  const probe = spawnSync('initdb', ['--version'], { stdio: 'ignore' });
  return probe.error === undefined && probe.status === 0 ? '' : undefined;
}

/**
 * True when a PostgreSQL server can be started here: `initdb` and `postgres` are installed and,
 * when this process is root, the `osUser` (default `postgres`) exists to run them.
 */
export function postgresAvailable(options: Pick<PostgresServerOptions, 'binDir' | 'osUser'> = {}): boolean {
  const binDir = options.binDir ?? findPostgresBinDir();
  if (binDir === undefined) return false;
  if (binDir !== '' && !existsSync(join(binDir, 'postgres'))) return false;
  return !isRoot() || osUserIds(options.osUser ?? 'postgres') !== undefined;
}

function isRoot(): boolean {
  return process.getuid?.() === 0;
}

/** uid and gid of a local user, or `undefined`. */
function osUserIds(user: string): { uid: number; gid: number } | undefined {
  const uid = spawnSync('id', ['-u', user], { encoding: 'utf8' });
  const gid = spawnSync('id', ['-g', user], { encoding: 'utf8' });
  if (uid.status !== 0 || gid.status !== 0) return undefined;
  return { uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) };
}

/** Runs a binary to completion; resolves its stdout, rejects with its stderr. */
function run(
  command: string,
  args: string[],
  ids: { uid: number; gid: number } | undefined,
  timeoutMs = 60_000,
): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      stdio: ['ignore', 'pipe', 'pipe'],
      ...(ids ?? {}),
      env: { ...process.env, LC_ALL: 'C', PGCONNECT_TIMEOUT: '5' },
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => {
      out += d;
    });
    child.stderr.on('data', (d) => {
      err += d;
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('error', (e) => {
      clearTimeout(timer);
      reject(new Error(`${command} could not be started: ${e.message} (${INSTALL_HINT})`));
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve(out);
      else reject(new Error(`${command} failed (${code ?? signal}): ${err.trim().slice(-500)}`));
    });
  });
}

/** The 8th line of postmaster.pid is `ready` once the server accepts connections. */
function isReady(dataDir: string): boolean {
  try {
    const lines = readFileSync(join(dataDir, 'postmaster.pid'), 'utf8').split('\n');
    return lines[7]?.trim() === 'ready';
  } catch {
    return false;
  }
}

/**
 * Starts a private PostgreSQL for tests: `initdb` into a new temporary folder (superuser
 * `postgres` with a random password; SCRAM over TCP, trust on the Unix socket in that folder),
 * then `postgres` on a free 127.0.0.1 port with durability off (`fsync=off`: test data only),
 * and waits until it accepts connections. When this process is root, both run as `osUser`.
 * For tests: `kms-envelope/testing`.
 * @throws Error naming how to install PostgreSQL when the binaries are missing, or with the
 * server's own message when it does not start.
 */
export async function startPostgres(options: PostgresServerOptions = {}): Promise<PostgresServerHandle> {
  const binDir = options.binDir ?? findPostgresBinDir();
  if (binDir === undefined || (binDir !== '' && !existsSync(join(binDir, 'initdb'))))
    throw new Error(`PostgreSQL is not installed (${INSTALL_HINT})`);
  const bin = (name: string) => (binDir === '' ? name : join(binDir, name));
  const osUser = options.osUser ?? 'postgres';
  const ids = isRoot() ? osUserIds(osUser) : undefined;
  if (isRoot() && ids === undefined)
    throw new Error(
      `PostgreSQL refuses to run as root and there is no "${osUser}" user to run it (${INSTALL_HINT} creates one)`,
    );

  const dir = mkdtempSync(join(options.parentDir ?? tmpdir(), 'kms-envelope-pg-'));
  const dataDir = join(dir, 'data');
  const password = randomBytes(18).toString('base64url');
  const user = 'postgres';
  let port = 0;
  let child: ChildProcess | undefined;
  let removed = false;
  const killOnExit = () => child?.kill('SIGQUIT');

  try {
    if (ids) chownSync(dir, ids.uid, ids.gid);
    const pwfile = join(dir, 'pwfile');
    writeFileSync(pwfile, `${password}\n`, { mode: 0o600 });
    if (ids) chownSync(pwfile, ids.uid, ids.gid);
    await run(
      bin('initdb'),
      [
        '-D',
        dataDir,
        '-U',
        user,
        `--pwfile=${pwfile}`,
        '--auth-local=trust',
        '--auth-host=scram-sha-256',
        '-E',
        'UTF8',
        '--locale=C',
        '--no-sync',
        '--no-instructions',
      ],
      ids,
    );
    rmSync(pwfile, { force: true });
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }

  const startOnce = async () => {
    const server = spawn(
      bin('postgres'),
      [
        '-D',
        dataDir,
        '-p',
        String(port),
        '-k',
        dir,
        '-c',
        'listen_addresses=127.0.0.1',
        '-c',
        'fsync=off',
        '-c',
        'synchronous_commit=off',
        '-c',
        'full_page_writes=off',
        '-c',
        'max_connections=300',
        '-c',
        'log_min_messages=fatal',
      ],
      { stdio: ['ignore', 'ignore', 'pipe'], ...(ids ?? {}), env: { ...process.env, LC_ALL: 'C' } },
    );
    child = server;
    let stderr = '';
    server.stderr?.on('data', (d) => {
      stderr = (stderr + d).slice(-2000);
    });
    let spawnError: Error | undefined;
    server.once('error', (err) => {
      spawnError = err;
    });
    const deadline = Date.now() + (options.startTimeoutMs ?? 30_000);
    while (Date.now() < deadline) {
      if (spawnError !== undefined)
        throw new Error(`postgres could not be started: ${spawnError.message} (${INSTALL_HINT})`);
      if (server.exitCode !== null || server.signalCode !== null)
        throw new Error(
          `postgres exited (${server.exitCode ?? server.signalCode}) on port ${port}: ${stderr.trim().slice(-500)}`,
        );
      if (isReady(dataDir)) return;
      await new Promise((r) => setTimeout(r, 20));
    }
    server.kill('SIGQUIT');
    throw new Error(
      `postgres did not accept connections on port ${port} in time: ${stderr.trim().slice(-500)}`,
    );
  };

  const shutdown = async () => {
    const running = child;
    child = undefined;
    if (running === undefined || running.exitCode !== null || running.signalCode !== null) return;
    await new Promise<void>((resolve) => {
      // SIGINT is PostgreSQL's fast shutdown (ends sessions, checkpoints); SIGQUIT, then SIGKILL,
      // if it is still there after 10 s.
      const quit = setTimeout(() => running.kill('SIGQUIT'), 10_000);
      const force = setTimeout(() => running.kill('SIGKILL'), 15_000);
      running.once('exit', () => {
        clearTimeout(quit);
        clearTimeout(force);
        resolve();
      });
      running.kill('SIGINT');
    });
  };

  const start = async () => {
    if (removed) throw new Error('this PostgreSQL was stopped and removed: start a new one');
    if (child !== undefined) return;
    try {
      await startOnce();
    } catch (err) {
      await shutdown();
      throw err;
    }
  };

  // A test runner that exits without stop() must not leave a server behind.
  process.on('exit', killOnExit);
  // The port was free a moment ago; if another process took it meanwhile, try another.
  for (let attempt = 1; ; attempt++) {
    port = await freePort();
    try {
      await start();
      break;
    } catch (err) {
      if (attempt >= 3 || !/already in use|could not bind|could not create listen/i.test(String(err))) {
        process.removeListener('exit', killOnExit);
        rmSync(dir, { recursive: true, force: true });
        throw err;
      }
    }
  }

  return {
    connectionString: `postgresql://${user}:${password}@127.0.0.1:${port}/postgres`,
    port,
    user,
    password,
    dir,
    get pid() {
      return child?.pid;
    },
    psql: (sql) =>
      run(
        bin('psql'),
        [
          '-h',
          dir,
          '-p',
          String(port),
          '-U',
          user,
          '-d',
          'postgres',
          '-X',
          '-A',
          '-t',
          '-q',
          '-v',
          'ON_ERROR_STOP=1',
          '-c',
          sql,
        ],
        ids,
      ).then((out) => out.replace(/\n$/, '')),
    shutdown,
    start,
    restart: async () => {
      await shutdown();
      await start();
    },
    stop: async () => {
      await shutdown();
      process.removeListener('exit', killOnExit);
      if (!removed) rmSync(dir, { recursive: true, force: true });
      removed = true;
    },
  };
}
