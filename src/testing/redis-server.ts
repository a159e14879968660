import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { createConnection, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** A `redis-server` started for tests on 127.0.0.1 and a free port. */
export interface RedisServerHandle {
  /** `redis://127.0.0.1:<port>`. */
  readonly url: string;
  /** The TCP port it listens on (127.0.0.1 only). */
  readonly port: number;
  /** Stops the server (SIGTERM) and waits for it to exit; removes its folder. Idempotent. */
  stop(): Promise<void>;
  /**
   * Starts it again on the same port, after {@link stop} or while running (its data is gone:
   * persistence is off). Clients that reconnect (ioredis does) find it at the same URL.
   * @throws Error if it does not answer PING in time (or the port was taken meanwhile).
   */
  restart(): Promise<void>;
}

/** Options of {@link startRedisServer}. */
export interface RedisServerOptions {
  /** The binary (default `redis-server` on the PATH). */
  readonly binary?: string;
  /** How long to wait for PING to answer (default 10 s). */
  readonly startTimeoutMs?: number;
  /**
   * More `redis-server` arguments, after the harness's own (e.g. `['--replicaof', '127.0.0.1',
   * String(primary.port)]` for a replica; see {@link startRedisReplica}).
   */
  readonly args?: readonly string[];
}

/** True when a `redis-server` binary can be run. */
export function redisServerAvailable(binary = 'redis-server'): boolean {
  const probe = spawnSync(binary, ['--version'], { stdio: 'ignore' });
  return probe.error === undefined && probe.status === 0;
}

/** A port that was free a moment ago (listen on 0, read it, close). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() =>
        typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port')),
      );
    });
  });
}

function ping(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ port, host: '127.0.0.1' });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(500, () => done(false));
    socket.once('error', () => done(false));
    socket.once('connect', () => socket.write('PING\r\n'));
    socket.once('data', (data) => done(data.toString().startsWith('+PONG')));
  });
}

/**
 * Starts Debian's `redis-server` on a free port with persistence off, in a private temporary
 * folder, and waits until it answers PING. For tests: `kms-envelope/testing`.
 * @throws Error naming how to install it when the binary is missing or does not start.
 */
export async function startRedisServer(options: RedisServerOptions = {}): Promise<RedisServerHandle> {
  const binary = options.binary ?? 'redis-server';
  if (!redisServerAvailable(binary)) {
    throw new Error(`${binary} is not installed (Debian: apt-get install redis-server)`);
  }
  let port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'kms-envelope-redis-'));
  let child: ChildProcess | undefined;

  const start = async () => {
    mkdirSync(dir, { recursive: true, mode: 0o700 }); // stop() removed it
    child = spawn(
      binary,
      [
        '--port',
        String(port),
        '--bind',
        '127.0.0.1',
        '--save',
        '',
        '--appendonly',
        'no',
        '--dir',
        dir,
        '--loglevel',
        'warning',
        ...(options.args ?? []),
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    let stderr = '';
    child.stderr?.on('data', (d) => {
      stderr += d;
    });
    let spawnError: Error | undefined;
    child.once('error', (err) => {
      spawnError = err;
    });
    const deadline = Date.now() + (options.startTimeoutMs ?? 10_000);
    while (Date.now() < deadline) {
      if (spawnError !== undefined) throw new Error(`${binary} could not be started: ${spawnError.message}`);
      if (child.exitCode !== null || child.signalCode !== null) {
        throw new Error(
          `${binary} exited (${child.exitCode ?? child.signalCode}) on port ${port}: ${stderr.trim().slice(-300)}`,
        );
      }
      if (await ping(port)) return;
      await new Promise((r) => setTimeout(r, 10));
    }
    child.kill('SIGKILL');
    throw new Error(`${binary} did not answer PING on port ${port}`);
  };

  const stop = async () => {
    const running = child;
    child = undefined;
    if (running === undefined || running.exitCode !== null || running.signalCode !== null) return;
    await new Promise<void>((resolve) => {
      // redis-server exits promptly on SIGTERM; a wedged one is killed after 5 s.
      const force = setTimeout(() => running.kill('SIGKILL'), 5000);
      running.once('exit', () => {
        clearTimeout(force);
        resolve();
      });
      running.kill('SIGTERM');
    });
  };

  // The port was free a moment ago; if another process took it meanwhile, try another.
  for (let attempt = 1; ; attempt++) {
    try {
      await start();
      break;
    } catch (err) {
      await stop();
      if (attempt >= 3 || !/Address already in use/i.test(String((err as Error).message))) {
        rmSync(dir, { recursive: true, force: true });
        throw err;
      }
      port = await freePort();
    }
  }
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    stop: async () => {
      await stop();
      rmSync(dir, { recursive: true, force: true });
    },
    restart: async () => {
      await stop();
      await start();
    },
  };
}

/**
 * Starts a replica of `primary` (`--replicaof`) and waits until the primary counts it as a
 * connected replica whose link is up, so a following `WAIT 1` can succeed. For tests of
 * durability options (`waitReplicas`); stop it to make WAIT fall short.
 * @throws Error as {@link startRedisServer}, or when the link does not come up in time.
 */
export async function startRedisReplica(
  primary: Pick<RedisServerHandle, 'port'>,
  options: RedisServerOptions = {},
): Promise<RedisServerHandle> {
  // A primary waits 5 s (repl-diskless-sync-delay) for more replicas before the first sync.
  await redisCommand(primary.port, 'CONFIG SET repl-diskless-sync-delay 0');
  const replica = await startRedisServer({
    ...options,
    args: ['--replicaof', '127.0.0.1', String(primary.port), ...(options.args ?? [])],
  });
  const deadline = Date.now() + (options.startTimeoutMs ?? 10_000);
  while (Date.now() < deadline) {
    // Up on both sides: the replica's link, and the primary listing it online at its port.
    const info = await redisCommand(replica.port, 'INFO replication');
    const onPrimary = await redisCommand(primary.port, 'INFO replication');
    if (/master_link_status:up/.test(info) && new RegExp(`port=${replica.port},state=online`).test(onPrimary))
      return replica;
    await new Promise((r) => setTimeout(r, 20));
  }
  await replica.stop();
  throw new Error(`the replica on port ${replica.port} did not connect to port ${primary.port} in time`);
}

/**
 * One inline command to the server on 127.0.0.1:`port`, its raw RESP reply ('' on any error or
 * after 1 s): for harness code that must not depend on a client library.
 */
export function redisCommand(port: number, line: string): Promise<string> {
  return new Promise((resolve) => {
    const socket = createConnection({ port, host: '127.0.0.1' });
    let reply = '';
    const done = () => {
      socket.destroy();
      resolve(reply);
    };
    socket.setTimeout(1000, done);
    socket.once('error', done);
    socket.once('connect', () => socket.write(`${line}\r\n`));
    socket.on('data', (data) => {
      reply += data.toString();
      // A bulk reply is "$<len>\r\n<body>\r\n"; anything else is one line.
      const header = /^\$(\d+)\r\n/.exec(reply);
      if (header ? reply.length >= header[0].length + Number(header[1]) + 2 : reply.endsWith('\r\n')) done();
    });
  });
}
