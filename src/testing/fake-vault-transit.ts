/**
 * A fake HashiCorp Vault / OpenBao for tests: a `node:http` (or, with `tls: true`, `node:https`)
 * server on 127.0.0.1 that speaks the part of the Vault HTTP API the `vault-transit` provider
 * uses, as the Transit and AppRole API documentation describes it (neither Vault nor OpenBao can
 * be installed on every test machine). `test/testing/fake-vault-transit.test.ts` replays the
 * documented request and response examples against it.
 *
 * What it serves:
 * - `POST /v1/<mount>/encrypt/<name>` `{ plaintext, context?, associated_data?, key_version? }` →
 *   `{ data: { ciphertext: "vault:v<n>:<base64(nonce ‖ ciphertext ‖ tag)>", key_version } }`, with
 *   real AES-256-GCM, AES-128-GCM or ChaCha20-Poly1305 (`associated_data` as the AEAD's AAD).
 *   Derived keys (`derived: true`) derive a key per `context` with HKDF-SHA256 and refuse a
 *   request without one; a non-derived key ignores `context`, as Vault does. No upsert: an
 *   unknown key is `400 encryption key not found` (a token with only `update`).
 * - `POST /v1/<mount>/decrypt/<name>` `{ ciphertext, context?, associated_data? }` →
 *   `{ data: { plaintext } }`; `POST /v1/<mount>/rewrap/<name>` `{ ciphertext, context?,
 *   key_version? }` (no `associated_data`, as documented) → `{ data: { ciphertext, key_version } }`.
 * - `GET /v1/<mount>/keys/<name>` (the key's metadata, never its material), `POST
 *   /v1/<mount>/keys/<name>` (create), `POST …/rotate`, `POST …/config` (`min_decryption_version`,
 *   `min_encryption_version`, `deletion_allowed`).
 * - `POST /v1/auth/<mount>/login` `{ role_id, secret_id }` (AppRole) → `{ auth: { client_token,
 *   lease_duration, renewable, … } }`; tokens expire after their lease.
 * - `GET /v1/sys/seal-status` (unauthenticated; reports the `version` the fake claims).
 * - Every other request needs `X-Vault-Token` (the root {@link FakeVaultTransit.token} or an
 *   AppRole token that has not expired): otherwise `403 {"errors":["permission denied"]}`.
 *   `X-Vault-Namespace` selects the namespace a key lives in.
 * - Errors are `{ "errors": [...] }` with Vault's messages and status codes (400, 403, 404, 429,
 *   500, 503); Vault's own text is used where its source says it (`cipher: message authentication
 *   failed`, `ciphertext or signature version is disallowed by policy (too old)`, ...).
 *
 * Not a security boundary: keys live in memory, and nothing here is fit for anything but tests.
 *
 * @module
 */
import {
  type CipherGCMTypes,
  createCipheriv,
  createDecipheriv,
  hkdfSync,
  randomBytes,
  randomUUID,
} from 'node:crypto';
import {
  createServer as createHttpServer,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { Socket } from 'node:net';
import { sharedTestTls, type TestTls } from './test-ca.js';

/** Key types the fake implements (the AEAD ones; Transit's asymmetric types are not served). */
export type FakeVaultKeyType = 'aes256-gcm96' | 'aes128-gcm96' | 'chacha20-poly1305';

/** A Transit key to create when the fake starts. */
export interface FakeVaultKeyOptions {
  /** Key name (the `<name>` of the Transit paths). */
  readonly name: string;
  /** Default `aes256-gcm96`. */
  readonly type?: FakeVaultKeyType;
  /** Key derivation: every encrypt/decrypt must carry a `context`. Default false. */
  readonly derived?: boolean;
  /** The Transit mount (default `transit`). */
  readonly mount?: string;
  /** The namespace the key lives in (default the root namespace). */
  readonly namespace?: string;
}

/** An AppRole the fake accepts at `POST /v1/auth/<mount>/login`. */
export interface FakeVaultAppRole {
  /** The role id a login must send. */
  readonly roleId: string;
  /** The secret id a login must send. */
  readonly secretId: string;
  /** Lease of the tokens it issues, in seconds (default 3600). */
  readonly tokenTtlSeconds?: number;
  /** Auth mount (default `approle`). */
  readonly mount?: string;
}

/** Options of {@link startFakeVaultTransit}. */
export interface FakeVaultTransitOptions {
  /** Serve HTTPS with a certificate of the shared test CA (needs `node-forge`). Default false. */
  readonly tls?: boolean;
  /** A CA and server certificate to use instead of the shared test ones (implies `tls`). */
  readonly tlsCertificates?: TestTls;
  /** Keys to create at start. */
  readonly keys?: readonly FakeVaultKeyOptions[];
  /** AppRoles that may log in. */
  readonly appRoles?: readonly FakeVaultAppRole[];
  /** The version `sys/seal-status` reports (default `1.15.6`). */
  readonly version?: string;
  /** Transit mounts served (default `['transit']`; mounts named by `keys` are added). */
  readonly mounts?: readonly string[];
}

/** What a request was, for {@link FakeVaultTransit.requests} and fault targeting. */
export type FakeVaultOperation =
  | 'encrypt'
  | 'decrypt'
  | 'rewrap'
  | 'read-key'
  | 'write-key'
  | 'login'
  | 'seal-status'
  | 'other';

/** One request the fake received. Plaintext and tokens are never recorded. */
export interface FakeVaultRequest {
  /** The HTTP method (`GET`, `POST`, `PUT`, ...). */
  readonly method: string;
  /** The request path, e.g. `/v1/transit/encrypt/kek`. */
  readonly path: string;
  /** What the path and method amount to. */
  readonly operation: FakeVaultOperation;
  /** `X-Vault-Namespace` as sent ('' when absent). */
  readonly namespace: string;
  /** Whether `X-Vault-Token` was sent, and whether the fake accepted it. */
  readonly token: 'missing' | 'valid' | 'invalid';
  /** Names of the JSON body's fields (e.g. `['plaintext', 'associated_data']`). */
  readonly fields: readonly string[];
  /** The `context` field as sent (base64), when present. */
  readonly context?: string;
  /** The `associated_data` field as sent (base64), when present. */
  readonly associatedData?: string;
  /** The status the fake answered (0 until it answers). */
  status: number;
}

/** Options of {@link FakeVaultTransit.failNext}. */
export interface FakeVaultFailure {
  /** The error message (default the one Vault uses for the status). */
  readonly message?: string;
  /** `Retry-After` header, in seconds. */
  readonly retryAfter?: number;
  /** Which operations fail (default encrypt, decrypt, rewrap and read-key). */
  readonly operations?: readonly FakeVaultOperation[];
}

/** Metadata of a key as `GET /v1/<mount>/keys/<name>` answers it. */
export interface FakeVaultKeyInfo {
  /** The key's name. */
  readonly name: string;
  /** Its type (`aes256-gcm96`, ...). */
  readonly type: FakeVaultKeyType;
  /** Whether it is a derived key (every call needs a `context`). */
  readonly derived: boolean;
  /** The newest key version (what new encryptions use). */
  readonly latestVersion: number;
  /** Ciphertexts of older versions are refused ("too old"). */
  readonly minDecryptionVersion: number;
  /** Encryptions may not use an older version (0: the latest). */
  readonly minEncryptionVersion: number;
}

/** A running fake Vault. */
export interface FakeVaultTransit {
  /** `http(s)://127.0.0.1:<port>`: the Vault address (the slot's `endpoint`). */
  readonly address: string;
  /** A root token the fake accepts on every path. */
  readonly token: string;
  /** The test CA certificate (PEM), with `tls`. */
  readonly ca: string | undefined;
  /** Creates a key (version 1). @throws Error if it exists. */
  createKey(options: FakeVaultKeyOptions): void;
  /** Adds a version to a key, which becomes the latest; returns it. */
  rotateKey(name: string, where?: { mount?: string; namespace?: string }): number;
  /** Sets `min_decryption_version` / `min_encryption_version`, as `POST …/config` would. */
  configureKey(
    name: string,
    config: { minDecryptionVersion?: number; minEncryptionVersion?: number },
    where?: { mount?: string; namespace?: string },
  ): void;
  /** A key's metadata. @throws Error if it does not exist. */
  keyInfo(name: string, where?: { mount?: string; namespace?: string }): FakeVaultKeyInfo;
  /** Invalidates every AppRole token issued so far (as if their leases were revoked). */
  revokeIssuedTokens(): void;
  /** AppRole logins that succeeded so far. */
  logins(): number;
  /** The next `count` matching requests fail with `status` (403, 404, 429, 500, 503, ...). */
  failNext(count: number, status: number, failure?: FakeVaultFailure): void;
  /** Seals (503 `Vault is sealed` on every path but `sys/seal-status`) or unseals the fake. */
  setSealed(sealed: boolean): void;
  /** Every answer is sent `ms` later (0: no delay). */
  delay(ms: number): void;
  /** Requests received so far, of any kind. */
  calls(): number;
  /** Every request received so far, in order. */
  requests(): readonly FakeVaultRequest[];
  /** Stops the server, dropping open connections and delayed answers. Idempotent. */
  stop(): Promise<void>;
}

interface KeyVersion {
  readonly key: Buffer;
  readonly created: number;
}

interface TransitKey {
  readonly name: string;
  readonly type: FakeVaultKeyType;
  readonly derived: boolean;
  readonly versions: KeyVersion[];
  minDecryptionVersion: number;
  minEncryptionVersion: number;
  deletionAllowed: boolean;
}

interface PendingFailure {
  remaining: number;
  readonly status: number;
  readonly failure: FakeVaultFailure;
}

class VaultHttpError extends Error {
  constructor(
    readonly status: number,
    readonly errors: readonly string[],
  ) {
    super(errors[0] ?? `status ${status}`);
  }
}

const bad = (message: string) => new VaultHttpError(400, [message]);

/** Vault's message when a derived key gets no context (sdk/helper/keysutil/policy.go, DeriveKey). */
export const MISSING_CONTEXT_MESSAGE =
  "missing 'context' for key derivation; the key was created using a derived key, which means additional, per-request information must be included in order to perform operations with the key";
/** Vault's message for a ciphertext version below `min_decryption_version` (keysutil `ErrTooOld`). */
export const TOO_OLD_MESSAGE = 'ciphertext or signature version is disallowed by policy (too old)';

const AEAD: Record<FakeVaultKeyType, { cipher: string; keyLength: number }> = {
  'aes256-gcm96': { cipher: 'aes-256-gcm', keyLength: 32 },
  'aes128-gcm96': { cipher: 'aes-128-gcm', keyLength: 16 },
  'chacha20-poly1305': { cipher: 'chacha20-poly1305', keyLength: 32 },
};
const NONCE = 12;
const TAG = 16;
const MAX_BODY = 1 << 20;

/** Go's `base64.StdEncoding.DecodeString`, strictly: the standard alphabet with padding. */
function decodeBase64(value: unknown): Buffer | undefined {
  if (typeof value !== 'string' || value.length % 4 !== 0) return undefined;
  if (!/^[A-Za-z0-9+/]*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/.test(value)) return undefined;
  return Buffer.from(value, 'base64');
}

function normalizeNamespace(value: string | string[] | undefined): string {
  const raw = Array.isArray(value) ? (value[0] ?? '') : (value ?? '');
  return raw.replace(/^\/+|\/+$/g, '');
}

function keyRef(namespace: string | undefined, mount: string | undefined, name: string): string {
  return `${normalizeNamespace(namespace)}|${mount ?? 'transit'}|${name}`;
}

function seal(
  key: TransitKey,
  version: number,
  context: Buffer | undefined,
  plaintext: Buffer,
  aad: Buffer | undefined,
): string {
  const material = materialOf(key, version, context);
  const nonce = randomBytes(NONCE);
  const cipher = createCipheriv(AEAD[key.type].cipher as CipherGCMTypes, material, nonce, {
    authTagLength: TAG,
  });
  if (aad !== undefined && aad.length > 0) cipher.setAAD(aad, { plaintextLength: plaintext.length });
  const body = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  const out = Buffer.concat([nonce, body, cipher.getAuthTag()]);
  material.fill(0);
  return `vault:v${version}:${out.toString('base64')}`;
}

function materialOf(key: TransitKey, version: number, context: Buffer | undefined): Buffer {
  const entry = key.versions[version - 1]!;
  if (!key.derived) return Buffer.from(entry.key);
  if (context === undefined || context.length === 0) throw bad(MISSING_CONTEXT_MESSAGE);
  // keysutil Kdf_hkdf_sha256: hkdf.New(sha256.New, key, nil, context).
  return Buffer.from(hkdfSync('sha256', entry.key, Buffer.alloc(0), context, AEAD[key.type].keyLength));
}

/** keysutil `Policy.DecryptWithFactory`, message for message. */
function open(
  key: TransitKey,
  ciphertext: string,
  context: Buffer | undefined,
  aad: Buffer | undefined,
): Buffer {
  if (!ciphertext.startsWith('vault:v')) throw bad('invalid ciphertext: no prefix');
  const rest = ciphertext.slice('vault:v'.length);
  const colon = rest.indexOf(':');
  if (colon < 0) throw bad('invalid ciphertext: wrong number of fields');
  const versionText = rest.slice(0, colon);
  if (!/^[+-]?\d+$/.test(versionText)) throw bad('invalid ciphertext: version number could not be decoded');
  let version = Number.parseInt(versionText, 10);
  if (version === 0) version = 1;
  if (version > key.versions.length) throw bad('invalid ciphertext: version is too new');
  if (key.minDecryptionVersion > 0 && version < key.minDecryptionVersion) throw bad(TOO_OLD_MESSAGE);
  if (version < 1) throw bad('invalid key version');
  const decoded = decodeBase64(rest.slice(colon + 1));
  if (decoded === undefined) throw bad('invalid ciphertext: could not decode base64');
  if (decoded.length < NONCE + TAG) throw bad('invalid ciphertext: unable to decrypt');
  const material = materialOf(key, version, context);
  try {
    const decipher = createDecipheriv(
      AEAD[key.type].cipher as CipherGCMTypes,
      material,
      decoded.subarray(0, NONCE),
      { authTagLength: TAG },
    );
    decipher.setAuthTag(decoded.subarray(decoded.length - TAG));
    const body = decoded.subarray(NONCE, decoded.length - TAG);
    if (aad !== undefined && aad.length > 0) decipher.setAAD(aad, { plaintextLength: body.length });
    const plain = decipher.update(body);
    try {
      decipher.final();
    } catch {
      plain.fill(0);
      throw bad('cipher: message authentication failed');
    }
    return plain;
  } finally {
    material.fill(0);
  }
}

function keyData(key: TransitKey): Record<string, unknown> {
  return {
    allow_plaintext_backup: false,
    auto_rotate_period: 0,
    deletion_allowed: key.deletionAllowed,
    derived: key.derived,
    exportable: false,
    imported_key: false,
    keys: Object.fromEntries(key.versions.map((v, i) => [String(i + 1), v.created])),
    latest_version: key.versions.length,
    min_available_version: 0,
    min_decryption_version: key.minDecryptionVersion,
    min_encryption_version: key.minEncryptionVersion,
    name: key.name,
    supports_decryption: true,
    supports_derivation: true,
    supports_encryption: true,
    supports_signing: false,
    type: key.type,
    ...(key.derived ? { convergent_encryption: false, kdf: 'hkdf_sha256' } : {}),
  };
}

const DEFAULT_MESSAGES: Record<number, string> = {
  400: 'invalid request',
  403: 'permission denied',
  429: 'request path "transit": rate limit quota exceeded',
  500: 'internal error',
  502: 'bad gateway',
  503: 'Vault is sealed',
};

/** Starts a fake Vault on a free 127.0.0.1 port. */
export async function startFakeVaultTransit(
  options: FakeVaultTransitOptions = {},
): Promise<FakeVaultTransit> {
  const tls = options.tlsCertificates ?? (options.tls ? await sharedTestTls() : undefined);
  const rootToken = `hvs.${randomBytes(18).toString('base64url')}`;
  const version = options.version ?? '1.15.6';
  const keys = new Map<string, TransitKey>();
  const mounts = new Set<string>(options.mounts ?? ['transit']);
  const appRoles = options.appRoles ?? [];
  const issued = new Map<string, number>(); // AppRole token → expiry (ms since epoch; Infinity: none)
  const log: FakeVaultRequest[] = [];
  const failures: PendingFailure[] = [];
  const sockets = new Set<Socket>();
  const timers = new Set<NodeJS.Timeout>();
  let delayMs = 0;
  let sealed = false;
  let logins = 0;
  let stopped = false;

  function createKey(key: FakeVaultKeyOptions): void {
    const ref = keyRef(key.namespace, key.mount, key.name);
    if (keys.has(ref)) throw new Error(`fake Vault: key ${key.name} exists`);
    const type = key.type ?? 'aes256-gcm96';
    if (!(type in AEAD)) throw new Error(`fake Vault: key type ${type} is not served`);
    mounts.add(key.mount ?? 'transit');
    keys.set(ref, {
      name: key.name,
      type,
      derived: key.derived === true,
      versions: [{ key: randomBytes(AEAD[type].keyLength), created: Math.floor(Date.now() / 1000) }],
      minDecryptionVersion: 1,
      minEncryptionVersion: 0,
      deletionAllowed: false,
    });
  }
  for (const key of options.keys ?? []) createKey(key);

  function findKey(name: string, where: { mount?: string; namespace?: string } = {}): TransitKey {
    const key = keys.get(keyRef(where.namespace, where.mount, name));
    if (key === undefined) throw new Error(`fake Vault: no key ${name}`);
    return key;
  }

  function rotate(key: TransitKey): number {
    key.versions.push({ key: randomBytes(AEAD[key.type].keyLength), created: Math.floor(Date.now() / 1000) });
    return key.versions.length;
  }

  /** keys/<name>/config, with Vault's checks (path_keys_config.go). */
  function configure(key: TransitKey, body: Record<string, unknown>): void {
    const next = { dec: key.minDecryptionVersion, enc: key.minEncryptionVersion };
    for (const [field, slot] of [
      ['min_decryption_version', 'dec'],
      ['min_encryption_version', 'enc'],
    ] as const) {
      const value = body[field];
      if (value === undefined) continue;
      if (typeof value !== 'number' || !Number.isInteger(value) || value < 0) throw bad(`invalid ${field}`);
      next[slot] = value;
    }
    if (next.dec === 0) next.dec = 1;
    if (next.dec > key.versions.length) {
      throw bad(
        `cannot set min decryption version of ${next.dec}, latest key version is ${key.versions.length}`,
      );
    }
    if (next.enc > key.versions.length) {
      throw bad(
        `cannot set min encryption version of ${next.enc}, latest key version is ${key.versions.length}`,
      );
    }
    if (next.enc !== 0 && next.enc < next.dec) {
      throw bad('min encryption version should not be less than min decryption version');
    }
    if (typeof body.deletion_allowed === 'boolean') key.deletionAllowed = body.deletion_allowed;
    key.minDecryptionVersion = next.dec;
    key.minEncryptionVersion = next.enc;
  }

  function encryptVersion(key: TransitKey, requested: unknown): number {
    if (requested !== undefined && (typeof requested !== 'number' || !Number.isInteger(requested))) {
      throw bad("'key_version' expected type 'int'");
    }
    const asked = (requested as number | undefined) ?? 0;
    if (asked < 0) throw bad('requested version for encryption is negative');
    if (asked > key.versions.length)
      throw bad('requested version for encryption is higher than the latest key version');
    const chosen = asked === 0 ? key.versions.length : asked;
    if (key.minEncryptionVersion > 0 && chosen < key.minEncryptionVersion) {
      throw bad('requested version for encryption is less than the minimum encryption key version');
    }
    return chosen;
  }

  function optionalBase64(body: Record<string, unknown>, field: string): Buffer | undefined {
    const value = body[field];
    if (value === undefined || value === '') return undefined;
    const decoded = decodeBase64(value);
    if (decoded === undefined) throw bad(`failed to base64-decode ${field}`);
    return decoded;
  }

  function classify(
    method: string,
    path: string,
  ): { operation: FakeVaultOperation; match?: RegExpExecArray } {
    if (path === '/v1/sys/seal-status' && method === 'GET') return { operation: 'seal-status' };
    const login = /^\/v1\/auth\/(.+)\/login$/.exec(path);
    if (login !== null && method === 'POST') return { operation: 'login', match: login };
    const crypto = /^\/v1\/(.+)\/(encrypt|decrypt|rewrap)\/([^/]+)$/.exec(path);
    if (crypto !== null && method === 'POST') {
      return { operation: crypto[2] as 'encrypt' | 'decrypt' | 'rewrap', match: crypto };
    }
    const key = /^\/v1\/(.+)\/keys\/([^/]+)$/.exec(path);
    if (key !== null) return { operation: method === 'GET' ? 'read-key' : 'write-key', match: key };
    const action = /^\/v1\/(.+)\/keys\/([^/]+)\/(rotate|config)$/.exec(path);
    if (action !== null && method === 'POST') return { operation: 'write-key', match: action };
    return { operation: 'other' };
  }

  function tokenState(header: string | string[] | undefined): FakeVaultRequest['token'] {
    const token = Array.isArray(header) ? header[0] : header;
    if (token === undefined || token === '') return 'missing';
    if (token === rootToken) return 'valid';
    const expires = issued.get(token);
    return expires !== undefined && Date.now() < expires ? 'valid' : 'invalid';
  }

  function login(mount: string, body: Record<string, unknown>): Record<string, unknown> {
    const role = appRoles.find(
      (r) => (r.mount ?? 'approle') === mount && r.roleId === body.role_id && r.secretId === body.secret_id,
    );
    if (typeof body.role_id !== 'string' || body.role_id === '') throw bad('missing role_id');
    if (role === undefined) throw bad('invalid role or secret ID');
    const ttl = role.tokenTtlSeconds ?? 3600;
    const token = `hvs.${randomBytes(18).toString('base64url')}`;
    issued.set(token, ttl > 0 ? Date.now() + ttl * 1000 : Number.POSITIVE_INFINITY);
    logins++;
    return {
      auth: {
        client_token: token,
        accessor: randomUUID(),
        policies: ['default', 'kms-envelope'],
        token_policies: ['default', 'kms-envelope'],
        metadata: { role_name: 'kms-envelope' },
        lease_duration: ttl,
        renewable: true,
        entity_id: randomUUID(),
        token_type: 'service',
        orphan: true,
      },
    };
  }

  /** Answers one request, or throws a VaultHttpError. */
  function answer(
    operation: FakeVaultOperation,
    match: RegExpExecArray | undefined,
    method: string,
    namespace: string,
    body: Record<string, unknown>,
  ): { status: number; data?: Record<string, unknown>; full?: Record<string, unknown> } {
    if (operation === 'login') return { status: 200, full: login(match![1]!, body) };
    if (operation === 'other' || match === undefined) {
      throw new VaultHttpError(404, ['unsupported path']);
    }
    const mount = match[1]!;
    if (!mounts.has(mount)) {
      throw new VaultHttpError(404, [`no handler for route "${match[0].slice(4)}". route entry not found.`]);
    }
    const name = operation === 'read-key' || operation === 'write-key' ? match[2]! : match[3]!;
    const key = keys.get(keyRef(namespace, mount, name));
    if (operation === 'read-key') {
      if (key === undefined) throw new VaultHttpError(404, []);
      return { status: 200, data: keyData(key) };
    }
    if (operation === 'write-key') {
      const action = match[3];
      if (action === undefined) {
        if (method !== 'POST') throw new VaultHttpError(405, ['unsupported operation']);
        if (key !== undefined) return { status: 204 };
        const type = (body.type as FakeVaultKeyType | undefined) ?? 'aes256-gcm96';
        if (!(type in AEAD)) throw bad(`unknown key type: ${String(type)}`);
        createKey({ name, type, derived: body.derived === true, mount, namespace });
        return { status: 204 };
      }
      if (key === undefined) throw bad(`no existing key named ${name} could be found`);
      if (action === 'rotate') {
        rotate(key);
        return { status: 204 };
      }
      configure(key, body);
      return { status: 204 };
    }
    if (key === undefined) throw bad('encryption key not found');
    const context = optionalBase64(body, 'context');
    if (operation === 'encrypt') {
      if (body.plaintext === undefined) throw bad('missing plaintext to encrypt');
      const plaintext = decodeBase64(body.plaintext);
      if (plaintext === undefined) throw bad('illegal base64 data at input byte 0');
      const aad = optionalBase64(body, 'associated_data');
      const chosen = encryptVersion(key, body.key_version);
      const ciphertext = seal(key, chosen, context, plaintext, aad);
      plaintext.fill(0);
      return { status: 200, data: { ciphertext, key_version: chosen } };
    }
    const ciphertext = body.ciphertext;
    if (typeof ciphertext !== 'string' || ciphertext === '') throw bad('missing ciphertext to decrypt');
    if (operation === 'decrypt') {
      const aad = optionalBase64(body, 'associated_data');
      const plain = open(key, ciphertext, context, aad);
      const plaintext = plain.toString('base64');
      plain.fill(0);
      return { status: 200, data: { plaintext } };
    }
    // rewrap: decrypt and encrypt with one context, no associated data (as Vault's path_rewrap.go).
    const plain = open(key, ciphertext, context, undefined);
    try {
      const chosen = encryptVersion(key, body.key_version);
      return {
        status: 200,
        data: { ciphertext: seal(key, chosen, context, plain, undefined), key_version: chosen },
      };
    } finally {
      plain.fill(0);
    }
  }

  function send(
    res: ServerResponse,
    record: FakeVaultRequest,
    status: number,
    payload?: unknown,
    headers: Record<string, string> = {},
  ): void {
    const write = () => {
      record.status = status;
      if (res.destroyed || res.writableEnded) return;
      if (payload === undefined) {
        res.writeHead(status, headers).end();
        return;
      }
      const text = JSON.stringify(payload);
      res
        .writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store', ...headers })
        .end(text);
    };
    if (delayMs <= 0) {
      write();
      return;
    }
    const timer = setTimeout(() => {
      timers.delete(timer);
      write();
    }, delayMs);
    timers.add(timer);
  }

  function handle(req: IncomingMessage, res: ServerResponse, raw: Buffer): void {
    const request = recordOf(req, raw);
    const reply = replyTo(request);
    send(res, request.log, reply.status, reply.payload, reply.headers);
  }

  interface ParsedRequest extends FakeVaultRequest {
    readonly body: Record<string, unknown>;
    readonly parseError: boolean;
    readonly match?: RegExpExecArray;
    /** The record in the log, whose status is set when the answer goes out. */
    readonly log: FakeVaultRequest;
  }

  interface Reply {
    readonly status: number;
    readonly payload?: unknown;
    readonly headers?: Record<string, string>;
  }

  function recordOf(req: IncomingMessage, raw: Buffer): ParsedRequest {
    const method = req.method ?? 'GET';
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    const { operation, match } = classify(method, path);
    const namespace = normalizeNamespace(req.headers['x-vault-namespace']);
    let body: Record<string, unknown> = {};
    let parseError = false;
    if (raw.length > 0) {
      try {
        const parsed: unknown = JSON.parse(raw.toString('utf8'));
        if (typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed)) {
          body = parsed as Record<string, unknown>;
        } else parseError = true;
      } catch {
        parseError = true;
      }
    }
    raw.fill(0);
    const record: FakeVaultRequest = {
      method,
      path,
      operation,
      namespace,
      token: tokenState(req.headers['x-vault-token']),
      fields: Object.keys(body),
      ...(typeof body.context === 'string' ? { context: body.context } : {}),
      ...(typeof body.associated_data === 'string' ? { associatedData: body.associated_data } : {}),
      status: 0,
    };
    log.push(record);
    // The log keeps the record only; the body (with the plaintext) is for this answer alone.
    return { ...record, body, parseError, ...(match !== undefined ? { match } : {}), log: record };
  }

  function replyTo(
    request: FakeVaultRequest & {
      body?: Record<string, unknown>;
      parseError: boolean;
      match?: RegExpExecArray;
    },
  ): Reply {
    const { operation, match, method, namespace, parseError } = request;
    const body = request.body ?? {};
    const fail = (err: VaultHttpError, headers: Record<string, string> = {}): Reply => ({
      status: err.status,
      payload: { errors: err.errors },
      headers,
    });
    if (operation === 'seal-status') {
      return {
        status: 200,
        payload: {
          type: 'shamir',
          initialized: true,
          sealed,
          t: 1,
          n: 1,
          progress: 0,
          nonce: '',
          version,
          build_date: '2024-01-01T00:00:00Z',
          migration: false,
          recovery_seal: false,
          storage_type: 'inmem',
        },
      };
    }
    if (sealed) return fail(new VaultHttpError(503, ['Vault is sealed']));
    const pending = failures.find(
      (f) =>
        f.remaining > 0 &&
        (f.failure.operations ?? ['encrypt', 'decrypt', 'rewrap', 'read-key']).includes(operation),
    );
    if (pending !== undefined) {
      pending.remaining--;
      const message = pending.failure.message ?? DEFAULT_MESSAGES[pending.status];
      return fail(
        new VaultHttpError(pending.status, pending.status === 404 || message === undefined ? [] : [message]),
        pending.failure.retryAfter !== undefined ? { 'retry-after': String(pending.failure.retryAfter) } : {},
      );
    }
    if (operation !== 'login' && request.token !== 'valid') {
      return fail(new VaultHttpError(403, ['permission denied']));
    }
    if (parseError) return fail(bad('failed to parse JSON input'));
    try {
      const out = answer(operation, match, method, namespace, body);
      if (out.status === 204) return { status: 204 };
      return {
        status: out.status,
        payload: out.full ?? {
          request_id: randomUUID(),
          lease_id: '',
          renewable: false,
          lease_duration: 0,
          data: out.data ?? null,
          wrap_info: null,
          warnings: null,
          auth: null,
        },
      };
    } catch (err) {
      if (err instanceof VaultHttpError) return fail(err);
      return fail(new VaultHttpError(500, ['internal error']));
    }
  }

  const listener = (req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_BODY) {
        res.writeHead(413).end();
        req.destroy();
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => {
      const raw = Buffer.concat(chunks);
      for (const chunk of chunks) chunk.fill(0);
      if (!stopped) handle(req, res, raw);
    });
  };
  const server: Server =
    tls !== undefined
      ? createHttpsServer({ cert: tls.certPem, key: tls.keyPem }, listener)
      : createHttpServer(listener);
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as { port: number }).port;

  return {
    address: `${tls !== undefined ? 'https' : 'http'}://127.0.0.1:${port}`,
    token: rootToken,
    ca: tls?.caPem,
    createKey,
    rotateKey: (name, where) => rotate(findKey(name, where)),
    configureKey(name, config, where) {
      const key = findKey(name, where);
      try {
        configure(key, {
          ...(config.minDecryptionVersion !== undefined
            ? { min_decryption_version: config.minDecryptionVersion }
            : {}),
          ...(config.minEncryptionVersion !== undefined
            ? { min_encryption_version: config.minEncryptionVersion }
            : {}),
        });
      } catch (err) {
        throw new Error(`fake Vault: ${(err as Error).message}`);
      }
    },
    keyInfo(name, where) {
      const key = findKey(name, where);
      return {
        name: key.name,
        type: key.type,
        derived: key.derived,
        latestVersion: key.versions.length,
        minDecryptionVersion: key.minDecryptionVersion,
        minEncryptionVersion: key.minEncryptionVersion,
      };
    },
    revokeIssuedTokens: () => issued.clear(),
    logins: () => logins,
    failNext(count, status, failure = {}) {
      for (const f of failures) f.remaining = 0;
      failures.length = 0;
      if (count > 0) failures.push({ remaining: count, status, failure });
    },
    setSealed(value) {
      sealed = value;
    },
    delay(ms) {
      delayMs = ms;
    },
    calls: () => log.length,
    requests: () => log,
    async stop() {
      if (stopped) return;
      stopped = true;
      for (const timer of timers) clearTimeout(timer);
      timers.clear();
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const socket of sockets) socket.destroy();
      });
      for (const key of keys.values()) for (const v of key.versions) v.key.fill(0);
    },
  };
}
