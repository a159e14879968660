/**
 * A fake Azure Key Vault for tests: HTTPS on 127.0.0.1 with a certificate from a test CA made at
 * start-up, speaking the part of the Key Vault REST API that wraps keys, so that a real
 * `@azure/keyvault-keys` client (and the `azure-kv` provider) runs against it unchanged.
 *
 * What it does, as the service does:
 * - The first request of a client arrives without a token and gets **401** with
 *   `WWW-Authenticate: Bearer authorization="https://login.microsoftonline.com/<tenant>",
 *   resource="https://vault.azure.net"`; then requests carry `Authorization: Bearer <token>`
 *   (the token of {@link FakeAzureKvHandle.credential}; another token is refused with 401 too).
 * - `GET /keys/{name}[/{version}]?api-version=…` answers the key bundle: a JWK whose `kid` is the
 *   versioned key id (public RSA parts `n`, `e`; never private parts; no `k` for `oct-HSM`), and
 *   `attributes` (`enabled`, `created`, `updated`, `nbf`, `exp`). A versionless id is the latest
 *   version.
 * - `POST /keys/{name}/{version}/wrapkey|unwrapkey` with `{ alg, value }` (base64url) answers
 *   `{ kid, value }` with the versioned `kid`; an empty version (`/keys/name//wrapkey`) is the
 *   latest. `RSA-OAEP-256`, `RSA-OAEP` and `RSA1_5` for `RSA` keys (node:crypto, real padding) and
 *   `A256KW` (RFC 3394, `id-aes256-wrap`) for `oct-HSM` keys.
 * - Errors are `{ error: { code, message, innererror? } }`: `KeyNotFound` (404), `Forbidden` with
 *   innererror `KeyDisabled` (403) for an unwrap with a disabled key, `BadParameter` (400) for a
 *   wrong algorithm, bad base64url or a value that does not unwrap ("Unable to decrypt specified
 *   value with this key."), `Unauthorized` (401), `Throttled` (429, `Retry-After`).
 *
 * Where the service's behaviour is known only from reports, the fake follows them and says so: a
 * disabled RSA key still wraps (a public-key operation; reported from the live service in
 * azure-sdk-for-python#45342) while unwrap is refused; wrapping with a disabled `oct-HSM` key is
 * refused; a wrap outside the key's `nbf`/`exp` window is refused with 403 while an unwrap is not
 * (JWK semantics: `exp` stops new wrapping, not reading old data).
 *
 * @module
 */
import {
  constants,
  createCipheriv,
  createDecipheriv,
  generateKeyPair,
  type KeyObject,
  privateDecrypt,
  publicEncrypt,
  randomBytes,
} from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer, type Server } from 'node:https';
import type { Socket } from 'node:net';
import { promisify } from 'node:util';
import { sharedTestTls, type TestTls } from './test-ca.js';

/** Key types the fake creates: RSA (Key Vault) or AES (Managed HSM `oct-HSM`). */
export type FakeAzureKeyType = 'RSA' | 'oct-HSM';

/** The operations of the fake that faults can target. */
export type FakeAzureKvOperation = 'get' | 'wrapkey' | 'unwrapkey';

/** One request the fake received. */
export interface FakeAzureKvRequest {
  /** HTTP method. */
  readonly method: string;
  /** Path without the query, e.g. `/keys/k1/0f…/wrapkey`. */
  readonly path: string;
  /** The `api-version` query parameter, if any. */
  readonly apiVersion: string | undefined;
  /** What the request was: a key read, a wrap, an unwrap, or something the fake does not serve. */
  readonly operation: FakeAzureKvOperation | 'other';
  /** Whether it carried the fake's bearer token. */
  readonly authorized: boolean;
  /** The `alg` of a wrap or unwrap. */
  readonly alg?: string;
  /** The status the fake answered (0 when the client went away first). */
  status: number;
}

/** A TokenCredential (`@azure/core-auth`) that hands out the fake's token and records the scopes asked. */
export interface FakeTokenCredential {
  /** The fake's bearer token, valid for an hour. */
  getToken(
    scopes: string | string[],
    options?: { tenantId?: string },
  ): Promise<{
    /** The bearer token. */
    token: string;
    /** When it expires (ms since the epoch). */
    expiresOnTimestamp: number;
  }>;
  /** Every `getToken` call so far: the scopes and the tenant the challenge named. */
  readonly requests: ReadonlyArray<{
    /** The scopes asked for. */
    readonly scopes: readonly string[];
    /** The tenant the challenge named. */
    readonly tenantId?: string;
  }>;
}

/** Options of {@link startFakeAzureKv}. */
export interface FakeAzureKvOptions {
  /** Tenant named in the 401 challenge (default a fixed GUID). */
  readonly tenantId?: string;
  /** Resource named in the 401 challenge (default `https://vault.azure.net`; Managed HSM uses `https://managedhsm.azure.net`). */
  readonly resource?: string;
  /** A CA and server certificate to use instead of the process-wide test ones. */
  readonly tls?: TestTls;
}

/** Options of {@link FakeAzureKvHandle.createKey}. */
export interface FakeAzureKeyOptions {
  /** RSA modulus length in bits (default 2048). */
  readonly size?: 2048 | 3072 | 4096;
  /** `key_ops` of the key (default every operation that fits its type). */
  readonly keyOps?: readonly string[];
  /** `nbf` / `exp` attributes. */
  readonly notBefore?: Date;
  /** See {@link notBefore}: after it, operations fail as on an expired key. */
  readonly expiresOn?: Date;
}

/** Options of {@link FakeAzureKvHandle.failNext}. */
export interface FakeAzureKvFailure {
  /** `Retry-After` header value (seconds), for 429 / 503. */
  readonly retryAfter?: number;
  /** The error body's `code` (default the one Key Vault uses for the status). */
  readonly code?: string;
  /** The error body's `innererror.code`. */
  readonly innerCode?: string;
  /** The error body's `message`. */
  readonly message?: string;
  /** Which operations the failures hit (default wrapkey and unwrapkey). */
  readonly operations?: readonly FakeAzureKvOperation[];
}

/** Client options for `@azure/keyvault-keys` (`KeyClient`, `CryptographyClient`) against the fake. */
export interface FakeAzureKvClientOptions {
  /** Trust the fake's CA in this client's pipeline only. */
  readonly tlsOptions: {
    /** The fake's CA certificate (PEM). */
    readonly ca: string;
  };
  /** The challenge names `vault.azure.net`, the fake is 127.0.0.1. */
  readonly disableChallengeResourceVerification: true;
  /** No retries in the SDK pipeline (kms-envelope retries itself). */
  readonly retryOptions: {
    /** 0. */
    readonly maxRetries: 0;
  };
}

/** A running fake Key Vault. */
export interface FakeAzureKvHandle {
  /** `https://127.0.0.1:<port>`: the vault URL (no trailing slash). */
  readonly vaultUrl: string;
  /** The test CA certificate (PEM) the server's certificate chains to. */
  readonly ca: string;
  /** A TokenCredential whose token the fake accepts. */
  readonly credential: FakeTokenCredential;
  /** What an SDK client needs to reach the fake (TLS trust, challenge check off, no SDK retries). */
  clientOptions(): FakeAzureKvClientOptions;
  /** Creates a key (its first version) and returns its versioned id. @throws Error if it exists. */
  createKey(name: string, type: FakeAzureKeyType, options?: FakeAzureKeyOptions): Promise<string>;
  /** Adds a new version to a key, which becomes the latest; returns its versioned id. */
  rotateKey(name: string): Promise<string>;
  /** The key id: versioned with `version`, else versionless. */
  keyId(name: string, version?: string): string;
  /** The versioned id of a key's latest version. */
  latestKeyId(name: string): string;
  /** Enables or disables one version, or (without `version`) every version of a key. */
  setEnabled(name: string, enabled: boolean, version?: string): void;
  /** The next `count` matching requests (by default wraps and unwraps) fail with `status`. */
  failNext(count: number, status: number, failure?: FakeAzureKvFailure): void;
  /** Every response is sent `ms` later (0: no delay). */
  delay(ms: number): void;
  /** Authorised wrap and unwrap requests received so far (failed and delayed ones too). */
  calls(): number;
  /** Every request received so far, in order. */
  requests(): readonly FakeAzureKvRequest[];
  /** Stops the server, dropping open connections and delayed answers. Idempotent. */
  close(): Promise<void>;
}

interface KeyVersion {
  readonly version: string;
  readonly type: FakeAzureKeyType;
  readonly privateKey?: KeyObject;
  readonly publicKey?: KeyObject;
  readonly secret?: Buffer;
  readonly keyOps: readonly string[];
  readonly created: number;
  readonly notBefore?: number;
  readonly expiresOn?: number;
  enabled: boolean;
}

interface PendingFailure {
  remaining: number;
  readonly status: number;
  readonly failure: FakeAzureKvFailure;
}

const DEFAULT_TENANT = '72f988bf-86f1-41af-91ab-2d7cd011db47';
const RSA_OPS = ['encrypt', 'decrypt', 'sign', 'verify', 'wrapKey', 'unwrapKey'] as const;
const OCT_OPS = ['encrypt', 'decrypt', 'wrapKey', 'unwrapKey'] as const;
const RSA_ALGS = new Set(['RSA-OAEP-256', 'RSA-OAEP', 'RSA1_5']);
// RFC 3394's default initial value.
const AES_KW_IV = Buffer.from('A6A6A6A6A6A6A6A6', 'hex');
const MAX_BODY = 64 * 1024;

const generateKeyPairAsync = promisify(generateKeyPair);

/** Key Vault's error code for a status, where the fault does not name one. */
function defaultCode(status: number): string {
  switch (status) {
    case 400:
      return 'BadParameter';
    case 401:
      return 'Unauthorized';
    case 403:
      return 'Forbidden';
    case 404:
      return 'KeyNotFound';
    case 409:
      return 'Conflict';
    case 429:
      return 'Throttled';
    default:
      return status >= 500 ? 'ServiceUnavailable' : 'BadRequest';
  }
}

function base64url(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('base64url');
}

/** Strict base64url: what Key Vault accepts in `value`. */
function fromBase64url(value: unknown): Buffer | undefined {
  if (typeof value !== 'string' || !/^[A-Za-z0-9_-]*={0,2}$/.test(value)) return undefined;
  return Buffer.from(value, 'base64url');
}

/**
 * Starts a fake Key Vault on 127.0.0.1 and a free port.
 * @throws MissingDependencyError when `node-forge` (for the test CA) is not installed.
 */
export async function startFakeAzureKv(options: FakeAzureKvOptions = {}): Promise<FakeAzureKvHandle> {
  const tls = options.tls ?? (await sharedTestTls());
  const tenantId = options.tenantId ?? DEFAULT_TENANT;
  const resource = options.resource ?? 'https://vault.azure.net';
  const token = `fake-kv-token-${randomBytes(12).toString('hex')}`;
  const keys = new Map<string, KeyVersion[]>();
  const log: FakeAzureKvRequest[] = [];
  const failures: PendingFailure[] = [];
  const timers = new Set<NodeJS.Timeout>();
  const sockets = new Set<Socket>();
  let delayMs = 0;
  let cryptoCalls = 0;
  let closed = false;
  let vaultUrl = '';

  const tokenRequests: { scopes: readonly string[]; tenantId?: string }[] = [];
  const credential: FakeTokenCredential = {
    requests: tokenRequests,
    async getToken(scopes, getTokenOptions) {
      tokenRequests.push({
        scopes: Array.isArray(scopes) ? [...scopes] : [scopes],
        ...(getTokenOptions?.tenantId !== undefined ? { tenantId: getTokenOptions.tenantId } : {}),
      });
      return { token, expiresOnTimestamp: Date.now() + 3_600_000 };
    },
  };

  const idOf = (name: string, version?: string) =>
    version === undefined ? `${vaultUrl}/keys/${name}` : `${vaultUrl}/keys/${name}/${version}`;

  function findVersion(name: string, version: string | undefined): KeyVersion | undefined {
    const versions = keys.get(name.toLowerCase());
    if (versions === undefined) return undefined;
    if (version === undefined || version === '') return versions[versions.length - 1];
    return versions.find((v) => v.version === version.toLowerCase());
  }

  async function newVersion(type: FakeAzureKeyType, keyOptions: FakeAzureKeyOptions): Promise<KeyVersion> {
    const common = {
      version: randomBytes(16).toString('hex'),
      type,
      created: Math.floor(Date.now() / 1000),
      enabled: true,
      ...(keyOptions.notBefore ? { notBefore: Math.floor(keyOptions.notBefore.getTime() / 1000) } : {}),
      ...(keyOptions.expiresOn ? { expiresOn: Math.floor(keyOptions.expiresOn.getTime() / 1000) } : {}),
    };
    if (type === 'RSA') {
      const { privateKey, publicKey } = await generateKeyPairAsync('rsa', {
        modulusLength: keyOptions.size ?? 2048,
      });
      return { ...common, privateKey, publicKey, keyOps: keyOptions.keyOps ?? RSA_OPS };
    }
    return { ...common, secret: randomBytes(32), keyOps: keyOptions.keyOps ?? OCT_OPS };
  }

  const keyOptionsOf = new Map<string, FakeAzureKeyOptions & { type: FakeAzureKeyType }>();

  function keyBundle(name: string, key: KeyVersion): object {
    const jwk: Record<string, unknown> = { kid: idOf(name, key.version), kty: key.type, key_ops: key.keyOps };
    if (key.publicKey !== undefined) {
      const exported = key.publicKey.export({ format: 'jwk' });
      jwk.n = exported.n;
      jwk.e = exported.e;
    }
    return {
      key: jwk,
      attributes: {
        enabled: key.enabled,
        created: key.created,
        updated: key.created,
        recoveryLevel: 'Recoverable+Purgeable',
        recoverableDays: 90,
        ...(key.notBefore !== undefined ? { nbf: key.notBefore } : {}),
        ...(key.expiresOn !== undefined ? { exp: key.expiresOn } : {}),
      },
      ...(key.type === 'oct-HSM' ? { managed: false } : {}),
    };
  }

  function send(
    res: ServerResponse,
    entry: FakeAzureKvRequest,
    status: number,
    body: object | undefined,
    headers: Record<string, string> = {},
  ): void {
    entry.status = status;
    if (res.destroyed || res.writableEnded) {
      entry.status = 0;
      return;
    }
    const text = body === undefined ? '' : JSON.stringify(body);
    res.writeHead(status, {
      'content-type': 'application/json; charset=utf-8',
      'content-length': Buffer.byteLength(text),
      'x-ms-keyvault-service-version': '1.9.0.0',
      'x-ms-request-id': randomBytes(16).toString('hex'),
      ...headers,
    });
    res.end(text);
  }

  const errorBody = (code: string, message: string, innerCode?: string) => ({
    error: { code, message, ...(innerCode !== undefined ? { innererror: { code: innerCode } } : {}) },
  });

  function wait(ms: number, res: ServerResponse): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        timers.delete(timer);
        resolve();
      }, ms);
      timers.add(timer);
      res.once('close', () => {
        clearTimeout(timer);
        timers.delete(timer);
        resolve();
      });
    });
  }

  function readBody(req: IncomingMessage): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      let size = 0;
      req.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > MAX_BODY) {
          reject(new Error('body too large'));
          req.destroy();
          return;
        }
        chunks.push(chunk);
      });
      req.on('end', () => resolve(Buffer.concat(chunks)));
      req.on('error', reject);
    });
  }

  function crypt(
    op: 'wrapkey' | 'unwrapkey',
    key: KeyVersion,
    alg: string,
    value: Buffer,
  ): Buffer | undefined {
    try {
      if (key.type === 'RSA') {
        const padding = alg === 'RSA1_5' ? constants.RSA_PKCS1_PADDING : constants.RSA_PKCS1_OAEP_PADDING;
        const oaepHash = alg === 'RSA-OAEP-256' ? 'sha256' : 'sha1';
        return op === 'wrapkey'
          ? publicEncrypt({ key: key.publicKey!, padding, oaepHash }, value)
          : privateDecrypt({ key: key.privateKey!, padding, oaepHash }, value);
      }
      const cipher =
        op === 'wrapkey'
          ? createCipheriv('id-aes256-wrap', key.secret!, AES_KW_IV)
          : createDecipheriv('id-aes256-wrap', key.secret!, AES_KW_IV);
      return Buffer.concat([cipher.update(value), cipher.final()]);
    } catch {
      return undefined;
    }
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'https://fake');
    const method = req.method ?? 'GET';
    const getMatch = /^\/keys\/([^/]+)(?:\/([^/]*))?\/?$/.exec(url.pathname);
    const opMatch = /^\/keys\/([^/]+)\/([^/]*)\/(wrapkey|unwrapkey)$/i.exec(url.pathname);
    const operation: FakeAzureKvRequest['operation'] =
      method === 'POST' && opMatch
        ? (opMatch[3]!.toLowerCase() as 'wrapkey' | 'unwrapkey')
        : method === 'GET' && getMatch
          ? 'get'
          : 'other';
    const authorized = req.headers.authorization === `Bearer ${token}`;
    const body = await readBody(req).catch(() => undefined);
    let parsed: { alg?: unknown; value?: unknown } | undefined;
    if (body !== undefined && body.length > 0) {
      try {
        parsed = JSON.parse(body.toString('utf8')) as typeof parsed;
      } catch {
        parsed = undefined;
      }
    }
    const entry: FakeAzureKvRequest = {
      method,
      path: url.pathname,
      apiVersion: url.searchParams.get('api-version') ?? undefined,
      operation,
      authorized,
      ...(typeof parsed?.alg === 'string' ? { alg: parsed.alg } : {}),
      status: 0,
    };
    log.push(entry);
    if (authorized && (operation === 'wrapkey' || operation === 'unwrapkey')) cryptoCalls += 1;

    if (delayMs > 0) await wait(delayMs, res);
    if (closed || res.destroyed) return;

    if (!authorized) {
      send(
        res,
        entry,
        401,
        errorBody('Unauthorized', 'AKV10000: Request is missing a Bearer or PoP token.'),
        {
          'www-authenticate': `Bearer authorization="https://login.microsoftonline.com/${tenantId}", resource="${resource}"`,
        },
      );
      return;
    }

    const failure = failures[0];
    if (
      failure !== undefined &&
      operation !== 'other' &&
      (failure.failure.operations ?? ['wrapkey', 'unwrapkey']).includes(operation)
    ) {
      failure.remaining -= 1;
      if (failure.remaining <= 0) failures.shift();
      const { status } = failure;
      const headers: Record<string, string> =
        failure.failure.retryAfter !== undefined ? { 'retry-after': String(failure.failure.retryAfter) } : {};
      if (status === 401) {
        headers['www-authenticate'] =
          `Bearer authorization="https://login.microsoftonline.com/${tenantId}", resource="${resource}"`;
      }
      send(
        res,
        entry,
        status,
        errorBody(
          failure.failure.code ?? defaultCode(status),
          failure.failure.message ?? `Injected failure ${status} of the fake Key Vault.`,
          failure.failure.innerCode,
        ),
        headers,
      );
      return;
    }

    if (entry.apiVersion === undefined) {
      send(res, entry, 400, errorBody('BadParameter', "The 'api-version' query parameter is missing."));
      return;
    }
    if (operation === 'other') {
      send(
        res,
        entry,
        404,
        errorBody('NotFound', `The fake Key Vault does not serve ${method} ${url.pathname}.`),
      );
      return;
    }
    const match = (operation === 'get' ? getMatch : opMatch)!;
    const name = decodeURIComponent(match[1]!);
    const version = match[2] === undefined ? undefined : decodeURIComponent(match[2]);
    const key = findVersion(name, version);
    if (key === undefined) {
      send(
        res,
        entry,
        404,
        errorBody(
          'KeyNotFound',
          `A key with (name/id) ${name}${version ? `/${version}` : ''} was not found in this key vault. If you recently deleted this key you may be able to recover it using the correct recovery command. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182`,
        ),
      );
      return;
    }
    if (operation === 'get') {
      send(res, entry, 200, keyBundle(name, key));
      return;
    }

    const op = operation as 'wrapkey' | 'unwrapkey';
    const permission = op === 'wrapkey' ? 'wrapKey' : 'unwrapKey';
    // The service checks the key's state before the request's content.
    if (!key.enabled && (op === 'unwrapkey' || key.type !== 'RSA')) {
      send(
        res,
        entry,
        403,
        errorBody('Forbidden', `Operation ${permission} is not allowed on a disabled key.`, 'KeyDisabled'),
      );
      return;
    }
    const now = Math.floor(Date.now() / 1000);
    if (
      op === 'wrapkey' &&
      ((key.notBefore !== undefined && now < key.notBefore) ||
        (key.expiresOn !== undefined && now >= key.expiresOn))
    ) {
      send(
        res,
        entry,
        403,
        errorBody('Forbidden', `Operation ${permission} is not allowed outside the key's validity period.`),
      );
      return;
    }
    if (!key.keyOps.includes(permission)) {
      send(res, entry, 403, errorBody('Forbidden', `Operation ${permission} is not permitted on this key.`));
      return;
    }
    const alg = parsed?.alg;
    const fits = key.type === 'RSA' ? RSA_ALGS.has(String(alg)) : alg === 'A256KW';
    if (typeof alg !== 'string' || !fits) {
      send(
        res,
        entry,
        400,
        errorBody(
          'BadParameter',
          `Algorithm '${String(alg)}' is not supported for a key of type ${key.type}.`,
        ),
      );
      return;
    }
    const value = fromBase64url(parsed?.value);
    if (value === undefined || value.length === 0) {
      send(
        res,
        entry,
        400,
        errorBody('BadParameter', "Content of 'value' is not base64url.\r\nProperty 'value' is required."),
      );
      return;
    }
    const out = crypt(op, key, alg, value);
    value.fill(0);
    if (out === undefined) {
      send(
        res,
        entry,
        400,
        errorBody(
          'BadParameter',
          op === 'unwrapkey'
            ? 'Unable to decrypt specified value with this key.'
            : 'Unable to wrap the specified value.',
        ),
      );
      return;
    }
    send(res, entry, 200, { kid: idOf(name, key.version), value: base64url(out) });
    out.fill(0);
  }

  const server: Server = createServer({ key: tls.keyPem, cert: tls.certPem }, (req, res) => {
    handle(req, res).catch(() => {
      if (!res.headersSent && !res.destroyed) {
        res.writeHead(500);
        res.end();
      }
    });
  });
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  // A client that aborts mid-handshake is not the fake's problem.
  server.on('tlsClientError', () => {});
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address();
  if (typeof address !== 'object' || address === null) throw new Error('fake Key Vault has no port');
  vaultUrl = `https://127.0.0.1:${address.port}`;

  return {
    vaultUrl,
    ca: tls.caPem,
    credential,
    clientOptions: () => ({
      tlsOptions: { ca: tls.caPem },
      disableChallengeResourceVerification: true,
      retryOptions: { maxRetries: 0 },
    }),
    async createKey(name, type, keyOptions = {}) {
      const lower = name.toLowerCase();
      if (keys.has(lower)) throw new Error(`fake Key Vault: key "${name}" exists already`);
      if (!/^[0-9a-zA-Z-]{1,127}$/.test(name)) throw new Error(`fake Key Vault: invalid key name "${name}"`);
      const first = await newVersion(type, keyOptions);
      keys.set(lower, [first]);
      keyOptionsOf.set(lower, { ...keyOptions, type });
      return idOf(name, first.version);
    },
    async rotateKey(name) {
      const lower = name.toLowerCase();
      const versions = keys.get(lower);
      const keyOptions = keyOptionsOf.get(lower);
      if (versions === undefined || keyOptions === undefined)
        throw new Error(`fake Key Vault: no key "${name}"`);
      const next = await newVersion(keyOptions.type, keyOptions);
      versions.push(next);
      return idOf(name, next.version);
    },
    keyId: (name, version) => idOf(name, version),
    latestKeyId(name) {
      const latest = findVersion(name, undefined);
      if (latest === undefined) throw new Error(`fake Key Vault: no key "${name}"`);
      return idOf(name, latest.version);
    },
    setEnabled(name, enabled, version) {
      const versions = keys.get(name.toLowerCase());
      if (versions === undefined) throw new Error(`fake Key Vault: no key "${name}"`);
      const targets = version === undefined ? versions : versions.filter((v) => v.version === version);
      if (targets.length === 0) throw new Error(`fake Key Vault: no version "${version}" of key "${name}"`);
      for (const target of targets) target.enabled = enabled;
    },
    failNext(count, status, failure = {}) {
      failures.length = 0;
      if (count > 0) failures.push({ remaining: count, status, failure });
    },
    delay(ms) {
      delayMs = Math.max(0, ms);
    },
    calls: () => cryptoCalls,
    requests: () => log,
    async close() {
      if (closed) return;
      closed = true;
      for (const timer of timers) clearTimeout(timer);
      timers.clear();
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const socket of sockets) socket.destroy();
      });
    },
  };
}
