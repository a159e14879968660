/**
 * A real PyKMIP server for tests (Debian `python3-pykmip`, `pykmip-server`), on a free
 * 127.0.0.1 port, with mutual TLS 1.2: a throw-away CA, a server certificate for 127.0.0.1 /
 * localhost and client certificates, all made with `openssl` (EC P-256) in a temporary folder
 * that also holds the server's configuration, its SQLite database and its log.
 *
 * What PyKMIP 0.10 offers the `kmip` provider: Create, Register, Get, GetAttributes, Locate,
 * Activate, Revoke, Destroy, and Encrypt/Decrypt including AES-GCM with additional data (KMIP
 * 1.4 fields), so both of the provider's modes run against it. Objects belong to the client
 * certificate's common name (its default policy lets only the owner use them), which gives an
 * honest "permission denied" to a second identity.
 *
 * Nothing here is fit for production: keys are test keys in a temporary folder.
 *
 * @module
 */
import { type ChildProcess, execFile, spawn, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { promisify } from 'node:util';
import { freePort } from './redis-server.js';

const run = promisify(execFile);

/** A client certificate the harness made (PEM), and where it wrote it. */
export interface PyKmipClientCertificate {
  /** Certificate, PEM. */
  readonly cert: string;
  /** Private key, PEM (PKCS#8). A test key. */
  readonly key: string;
  /** The certificate file. */
  readonly certPath: string;
  /** The private key file (mode 0600, so a `file:` secret reference accepts it). */
  readonly keyPath: string;
}

/** Options of {@link PyKmipHandle.makeClientCertificate}. */
export interface PyKmipClientCertificateOptions {
  /** Mark it for TLS client authentication (extendedKeyUsage clientAuth; default true). PyKMIP refuses a certificate without it. */
  readonly clientAuth?: boolean;
  /** Issue it from another, untrusted CA (default false): the TLS handshake then fails. */
  readonly foreignCa?: boolean;
}

/** A running PyKMIP server. */
export interface PyKmipHandle {
  /** `127.0.0.1`. */
  readonly host: string;
  /** The free loopback port it listens on. */
  readonly port: number;
  /** `kmips://127.0.0.1:<port>`. */
  readonly endpoint: string;
  /** The CA certificate (PEM) that issued the server's and the clients' certificates. */
  readonly ca: string;
  /** The CA certificate file. */
  readonly caPath: string;
  /** The client certificate (PEM) of identity {@link clientIdentity}. */
  readonly clientCert: string;
  /** Its private key (PEM). */
  readonly clientKey: string;
  /** The client certificate file. */
  readonly clientCertPath: string;
  /** Its private key file (mode 0600). */
  readonly clientKeyPath: string;
  /** The client certificate's common name: PyKMIP's owner of the objects it creates. */
  readonly clientIdentity: string;
  /** The temporary folder (certificates, configuration, database, log). */
  readonly dir: string;
  /** PID of the server, or `undefined` once stopped. */
  readonly pid: number | undefined;
  /** Makes another client certificate with common name `commonName` (another PyKMIP identity). */
  makeClientCertificate(
    commonName: string,
    options?: PyKmipClientCertificateOptions,
  ): Promise<PyKmipClientCertificate>;
  /**
   * Operations the server has processed so far (its log's "Processing operation" lines; a batch
   * of two operations counts two). For "exactly one call" assertions.
   */
  operations(): number;
  /** Request messages the server has received so far (one per call, whatever its batch holds). */
  requests(): number;
  /** Kills the server (it refuses connections from then on) and keeps the folder. Idempotent. */
  kill(): Promise<void>;
  /** Kills the server and removes its folder. Idempotent. */
  stop(): Promise<void>;
}

/** Options of {@link startPyKmip}. */
export interface PyKmipOptions {
  /** The Python that has the `kmip` package (default `/usr/bin/python3`, where Debian installs it). */
  readonly python?: string;
  /** The server's entry script (default `/usr/bin/pykmip-server`). */
  readonly serverScript?: string;
  /** Common name of the default client certificate (default `kms-envelope-test`). */
  readonly clientIdentity?: string;
  /** How long to wait for the server to accept TLS (default 30 s). */
  readonly startTimeoutMs?: number;
  /** Where the temporary folder is made (default `os.tmpdir()`). */
  readonly parentDir?: string;
}

const DEFAULT_PYTHON = '/usr/bin/python3';
const DEFAULT_SCRIPT = '/usr/bin/pykmip-server';
const INSTALL_HINT = 'Debian: apt-get install python3-pykmip openssl';

/**
 * True when a PyKMIP server can be started here: the Python that has the `kmip` package, the
 * server script and `openssl` are installed.
 */
export function pyKmipAvailable(options: Pick<PyKmipOptions, 'python' | 'serverScript'> = {}): boolean {
  const python = options.python ?? DEFAULT_PYTHON;
  const script = options.serverScript ?? DEFAULT_SCRIPT;
  if (!existsSync(python) || !existsSync(script)) return false;
  const probe = spawnSync(python, ['-c', 'import kmip.services.server'], {
    stdio: 'ignore',
    timeout: 20_000,
  });
  if (probe.status !== 0) return false;
  return spawnSync('openssl', ['version'], { stdio: 'ignore' }).status === 0;
}

/** Runs openssl; rejects with its stderr. */
async function openssl(args: string[], cwd: string): Promise<void> {
  try {
    await run('openssl', args, { cwd, timeout: 30_000 });
  } catch (err) {
    const stderr = (err as { stderr?: string }).stderr ?? '';
    throw new Error(
      `openssl ${args[0]} failed: ${stderr.trim().slice(-300) || (err as Error).message} (${INSTALL_HINT})`,
    );
  }
}

/** A new EC P-256 key (PKCS#8 PEM, mode 0600) at `keyPath`. */
async function newKey(keyPath: string, cwd: string): Promise<void> {
  await openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', keyPath], cwd);
  // A `file:` secret reference refuses a key that group or others may read.
  chmodSync(join(cwd, keyPath), 0o600);
}

/** A self-signed CA certificate at `name`.pem with key `name`.key. */
async function newCa(dir: string, name: string, commonName: string): Promise<void> {
  await newKey(`${name}.key`, dir);
  await openssl(
    [
      'req',
      '-x509',
      '-new',
      '-key',
      `${name}.key`,
      '-out',
      `${name}.pem`,
      '-days',
      '2',
      '-subj',
      `/CN=${commonName}/O=kms-envelope testing`,
      '-addext',
      'basicConstraints=critical,CA:TRUE,pathlen:0',
      '-addext',
      'keyUsage=critical,keyCertSign,cRLSign',
    ],
    dir,
  );
}

/** A certificate `name`.pem (key `name`.key) issued by CA `ca` with the given extensions. */
async function issue(
  dir: string,
  ca: string,
  name: string,
  commonName: string,
  extensions: string,
): Promise<void> {
  await newKey(`${name}.key`, dir);
  await openssl(
    ['req', '-new', '-key', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${commonName}`],
    dir,
  );
  writeFileSync(join(dir, `${name}.ext`), extensions);
  await openssl(
    [
      'x509',
      '-req',
      '-in',
      `${name}.csr`,
      '-CA',
      `${ca}.pem`,
      '-CAkey',
      `${ca}.key`,
      '-CAcreateserial',
      '-out',
      `${name}.pem`,
      '-days',
      '2',
      '-sha256',
      '-extfile',
      `${name}.ext`,
    ],
    dir,
  );
}

/** Whether a TLS handshake with the server, as `client`, succeeds. */
function acceptsTls(port: number, ca: string, client: PyKmipClientCertificate): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = tlsConnect({
      host: '127.0.0.1',
      port,
      ca,
      cert: client.cert,
      key: client.key,
      minVersion: 'TLSv1.2',
      maxVersion: 'TLSv1.2',
    });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(2000, () => done(false));
    socket.once('secureConnect', () => done(true));
    socket.once('error', () => done(false));
  });
}

const safeName = (name: string) => /^[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}$/.test(name);

/**
 * Starts a PyKMIP server for tests: certificates (CA, server, client) made with openssl, a
 * configuration (`auth_suite=TLS1.2`, `enable_tls_client_auth=True`, the database and the policy
 * folder inside the temporary folder) and `pykmip-server` on a free 127.0.0.1 port, in its own
 * process group; waits until it completes a TLS handshake with the client certificate.
 * For tests: `kms-envelope/testing`.
 * @throws Error naming what to install when Python's `kmip` package, the server or openssl is
 * missing, or with the server's log when it does not start.
 */
export async function startPyKmip(options: PyKmipOptions = {}): Promise<PyKmipHandle> {
  const python = options.python ?? DEFAULT_PYTHON;
  const script = options.serverScript ?? DEFAULT_SCRIPT;
  if (!existsSync(python) || !existsSync(script))
    throw new Error(`PyKMIP is not installed (${INSTALL_HINT})`);
  const clientIdentity = options.clientIdentity ?? 'kms-envelope-test';
  if (!safeName(clientIdentity))
    throw new Error('clientIdentity must be a plain name (letters, digits, space . _ -)');
  const dir = mkdtempSync(join(options.parentDir ?? tmpdir(), 'kms-envelope-pykmip-'));
  let child: ChildProcess | undefined;
  let removed = false;
  let issued = 0;
  const logPath = join(dir, 'server.log');

  const killGroup = (signal: NodeJS.Signals) => {
    const pid = child?.pid;
    if (pid === undefined) return;
    try {
      // The server forks helpers (a multiprocessing manager, the policy monitor): the whole group
      // it leads goes, by its id, so nothing is left behind.
      process.kill(-pid, signal);
    } catch {
      // already gone
    }
  };
  const killOnExit = () => killGroup('SIGKILL');

  const makeClientCertificate = async (
    commonName: string,
    certOptions: PyKmipClientCertificateOptions = {},
  ): Promise<PyKmipClientCertificate> => {
    if (!safeName(commonName))
      throw new Error('commonName must be a plain name (letters, digits, space . _ -)');
    const name = `client-${++issued}`;
    let ca = 'ca';
    if (certOptions.foreignCa === true) {
      ca = `foreign-ca-${issued}`;
      await newCa(dir, ca, 'an untrusted CA');
    }
    const eku = certOptions.clientAuth === false ? 'emailProtection' : 'clientAuth';
    await issue(
      dir,
      ca,
      name,
      commonName,
      `basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=${eku}\n`,
    );
    return {
      cert: readFileSync(join(dir, `${name}.pem`), 'utf8'),
      key: readFileSync(join(dir, `${name}.key`), 'utf8'),
      certPath: join(dir, `${name}.pem`),
      keyPath: join(dir, `${name}.key`),
    };
  };

  try {
    await newCa(dir, 'ca', 'kms-envelope PyKMIP test CA');
    await issue(
      dir,
      'ca',
      'server',
      '127.0.0.1',
      'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n',
    );
    const ca = readFileSync(join(dir, 'ca.pem'), 'utf8');
    const client = await makeClientCertificate(clientIdentity);
    mkdirSync(join(dir, 'policies'));

    const startOnce = async (port: number) => {
      writeFileSync(
        join(dir, 'server.conf'),
        [
          '[server]',
          'hostname=127.0.0.1',
          `port=${port}`,
          `certificate_path=${join(dir, 'server.pem')}`,
          `key_path=${join(dir, 'server.key')}`,
          `ca_path=${join(dir, 'ca.pem')}`,
          'auth_suite=TLS1.2',
          `policy_path=${join(dir, 'policies')}`,
          'enable_tls_client_auth=True',
          'logging_level=INFO',
          `database_path=${join(dir, 'pykmip.db')}`,
          '',
        ].join('\n'),
      );
      const server = spawn(python, [script, '-f', join(dir, 'server.conf'), '-l', logPath], {
        stdio: ['ignore', 'ignore', 'pipe'],
        detached: true,
        env: { ...process.env, PYTHONWARNINGS: 'ignore' },
      });
      child = server;
      let stderr = '';
      server.stderr?.on('data', (d) => {
        stderr = (stderr + d).slice(-2000);
      });
      let spawnError: Error | undefined;
      server.once('error', (err) => {
        spawnError = err;
      });
      const log = () => {
        try {
          return readFileSync(logPath, 'utf8').slice(-1500);
        } catch {
          return '';
        }
      };
      const deadline = Date.now() + (options.startTimeoutMs ?? 30_000);
      while (Date.now() < deadline) {
        if (spawnError !== undefined)
          throw new Error(`pykmip-server could not be started: ${spawnError.message} (${INSTALL_HINT})`);
        if (server.exitCode !== null || server.signalCode !== null)
          throw new Error(
            `pykmip-server exited (${server.exitCode ?? server.signalCode}) on port ${port}: ${stderr.trim()} ${log()}`,
          );
        if (/successfully bound socket handler/.test(log()) && (await acceptsTls(port, ca, client))) return;
        await new Promise((r) => setTimeout(r, 50));
      }
      killGroup('SIGKILL');
      throw new Error(`pykmip-server did not accept TLS on port ${port} in time: ${log()}`);
    };

    process.on('exit', killOnExit);
    let port = 0;
    for (let attempt = 1; ; attempt++) {
      port = await freePort();
      try {
        await startOnce(port);
        break;
      } catch (err) {
        killGroup('SIGKILL');
        child = undefined;
        if (attempt >= 3 || !/bind socket handler|Address already in use/i.test(String(err))) throw err;
      }
    }

    const kill = async () => {
      const running = child;
      if (running === undefined) return;
      if (running.exitCode === null && running.signalCode === null) {
        const exited = new Promise<void>((resolve) => running.once('exit', () => resolve()));
        killGroup('SIGKILL');
        await exited;
      }
      child = undefined;
    };

    return {
      host: '127.0.0.1',
      port,
      endpoint: `kmips://127.0.0.1:${port}`,
      ca,
      caPath: join(dir, 'ca.pem'),
      clientCert: client.cert,
      clientKey: client.key,
      clientCertPath: client.certPath,
      clientKeyPath: client.keyPath,
      clientIdentity,
      dir,
      get pid() {
        return child?.pid;
      },
      makeClientCertificate,
      operations: () => {
        try {
          return (readFileSync(logPath, 'utf8').match(/Processing operation: /g) ?? []).length;
        } catch {
          return 0;
        }
      },
      requests: () => {
        try {
          return (readFileSync(logPath, 'utf8').match(/Received request at time: /g) ?? []).length;
        } catch {
          return 0;
        }
      },
      kill,
      stop: async () => {
        await kill();
        process.removeListener('exit', killOnExit);
        if (!removed) rmSync(dir, { recursive: true, force: true });
        removed = true;
      },
    };
  } catch (err) {
    killGroup('SIGKILL');
    process.removeListener('exit', killOnExit);
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
}
