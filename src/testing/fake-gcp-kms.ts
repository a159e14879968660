/**
 * A Cloud KMS look-alike for tests: a gRPC server on 127.0.0.1 that speaks
 * `google.cloud.kms.v1.KeyManagementService` (loaded from the `protos.json` that ships inside
 * `@google-cloud/kms`), so the real `KeyManagementServiceClient` talks to it unchanged.
 *
 * It does what the real service documents for symmetric `ENCRYPT_DECRYPT` keys:
 * - Encrypt with a CryptoKey name uses its primary version (a CryptoKeyVersion name uses that
 *   version); real AES-256-GCM with a random 32-byte key per version; the ciphertext embeds the
 *   version that made it, so Decrypt (which takes the CryptoKey name) finds it after a rotation.
 * - The CRC32C fields: a request checksum that does not match its field → `INVALID_ARGUMENT`;
 *   `verifiedPlaintextCrc32c` / `verifiedAdditionalAuthenticatedDataCrc32c` report which were
 *   checked; responses carry `ciphertextCrc32c` / `plaintextCrc32c`.
 * - Decrypt with another AAD, another CryptoKey or tampered bytes → `INVALID_ARGUMENT`; a version
 *   that is not ENABLED → `FAILED_PRECONDITION`; an unknown key → `NOT_FOUND`.
 *
 * Faults for the caller's tests: {@link FakeGcpKms.failNext}, {@link FakeGcpKms.delay},
 * {@link FakeGcpKms.corruptNext}. `@grpc/grpc-js` and `@grpc/proto-loader` are loaded when the
 * server starts, so `kms-envelope/testing` loads without them.
 *
 * @module
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { openAes256Gcm, sealAes256Gcm } from '../crypto/aes-gcm.js';
import { crc32c } from '../envelope/checksum.js';
import { importOptional } from '../providers/support.js';

/** States a fake CryptoKeyVersion can be put in. */
export type FakeGcpKeyVersionState = 'ENABLED' | 'DISABLED' | 'DESTROYED';

/** gRPC status names the fake can be told to answer with ({@link FakeGcpKms.failNext}). */
export type FakeGcpStatus =
  | 'CANCELLED'
  | 'UNKNOWN'
  | 'INVALID_ARGUMENT'
  | 'DEADLINE_EXCEEDED'
  | 'NOT_FOUND'
  | 'PERMISSION_DENIED'
  | 'RESOURCE_EXHAUSTED'
  | 'FAILED_PRECONDITION'
  | 'ABORTED'
  | 'INTERNAL'
  | 'UNAVAILABLE'
  | 'UNAUTHENTICATED';

/** One call the fake received. */
export interface FakeGcpKmsCall {
  /** The RPC, e.g. `Encrypt`, `Decrypt`, `GetCryptoKey`. */
  readonly method: string;
  /** The request's `name`. */
  readonly name: string;
  /** How it ended: `OK`, a gRPC status name, or `CANCELLED` when the client cancelled it. */
  status: string;
}

/**
 * What to pass to `new KeyManagementServiceClient(...)` to talk to the fake (a type alias, so it
 * is assignable to the SDK's `ClientOptions`). `Credentials` is the type of `sslCreds`, the
 * `ChannelCredentials` of `@grpc/grpc-js`; it is a parameter, not named here, so that the types of
 * `kms-envelope/testing` do not need `@grpc/grpc-js` for users of the other fakes.
 */
export type FakeGcpKmsClientOptions<Credentials = unknown> = {
  /** The fake's address. */
  readonly apiEndpoint: '127.0.0.1';
  /** The fake's port. */
  readonly port: number;
  /** `grpc.credentials.createInsecure()`: plaintext to 127.0.0.1, and no Google credentials at all. */
  readonly sslCreds: Credentials;
  /** Set so that google-auth-library never asks the metadata server for it. */
  readonly universeDomain: 'googleapis.com';
  /** Set so that google-auth-library never looks for it. */
  readonly projectId: string;
};

/** Options of {@link startFakeGcpKms}. */
export interface FakeGcpKmsOptions {
  /** The project id handed to clients (default `fake-project`). */
  readonly projectId?: string;
  /** CryptoKeys to create at start (full resource names). */
  readonly cryptoKeys?: readonly string[];
}

/** A running fake Cloud KMS (see the module doc). */
export interface FakeGcpKms {
  /** The TCP port on 127.0.0.1. */
  readonly port: number;
  /** `127.0.0.1:<port>`, the form a `gcp-kms` slot's `endpoint` takes. */
  readonly endpoint: string;
  /** The project id in {@link clientOptions}. */
  readonly projectId: string;
  /**
   * Options for `new KeyManagementServiceClient(...)` (plaintext gRPC, no credentials lookup).
   * Passed straight to the SDK, `Credentials` is inferred as the SDK's `ChannelCredentials`.
   */
  clientOptions<Credentials = unknown>(): FakeGcpKmsClientOptions<Credentials>;
  /**
   * Creates a CryptoKey (purpose ENCRYPT_DECRYPT) with version 1 as its primary; returns the
   * CryptoKey name. `name` is `projects/P/locations/L/keyRings/R/cryptoKeys/K`.
   * @throws Error for a malformed or existing name.
   */
  createCryptoKey(name: string): string;
  /**
   * Adds a new version and makes it the primary; older versions keep decrypting. Returns the new
   * CryptoKeyVersion name. @throws Error for an unknown key.
   */
  rotate(name: string): string;
  /**
   * Sets the state of one CryptoKeyVersion, or of every version when given a CryptoKey name.
   * @throws Error for an unknown key or version.
   */
  setVersionState(name: string, state: FakeGcpKeyVersionState): void;
  /** The next `count` calls (any method) fail with `status` (0 clears). */
  failNext(count: number, status?: FakeGcpStatus, message?: string): void;
  /** Every call is answered `ms` later (0: at once). */
  delay(ms: number): void;
  /**
   * The next `count` successful Encrypt/Decrypt answers carry a wrong CRC32C
   * (`ciphertextCrc32c` or `plaintextCrc32c`), as a corruption in transit would.
   */
  corruptNext(count: number): void;
  /** Every call received so far, oldest first. */
  calls(): readonly FakeGcpKmsCall[];
  /** Stops the server at once (calls in flight are cut). Idempotent. */
  close(): Promise<void>;
}

const CRYPTO_KEY_NAME = /^projects\/[^/]+\/locations\/[^/]+\/keyRings\/[^/]+\/cryptoKeys\/[^/]+$/;
const VERSION_NAME =
  /^(projects\/[^/]+\/locations\/[^/]+\/keyRings\/[^/]+\/cryptoKeys\/[^/]+)\/cryptoKeyVersions\/(\d+)$/;

/** Ciphertext layout: format byte ‖ version number (u32 BE) ‖ AES-256-GCM sealed box. */
const CIPHERTEXT_FORMAT = 0x01;
const CIPHERTEXT_HEADER = 5;
/** Cloud KMS limits plaintext and AAD to 64 KiB each for software keys. */
const MAX_DATA = 64 * 1024;

interface FakeVersion {
  readonly number: number;
  readonly key: Buffer;
  state: FakeGcpKeyVersionState;
  readonly createTime: Date;
}

interface FakeKey {
  readonly name: string;
  readonly versions: FakeVersion[];
  primary: number;
  readonly createTime: Date;
}

/** A gRPC error answer: status name and message, as the real service words them. */
class Status {
  constructor(
    readonly status: FakeGcpStatus,
    readonly message: string,
  ) {}
}

type Int64Value = { value?: string | number } | null | undefined;

function crcOf(field: Int64Value): number | undefined {
  if (field === null || field === undefined) return undefined;
  return Number(field.value ?? 0);
}

function checkCrc(data: Buffer, field: Int64Value, fieldName: string, dataName: string): boolean {
  const sent = crcOf(field);
  if (sent === undefined) return false;
  if (sent !== crc32c(data)) {
    throw new Status(
      'INVALID_ARGUMENT',
      `The checksum in field ${fieldName} did not match the data in field ${dataName}.`,
    );
  }
  return true;
}

function bytesOf(value: unknown): Buffer {
  if (value === undefined || value === null) return Buffer.alloc(0);
  return Buffer.isBuffer(value) ? value : Buffer.from(value as Uint8Array);
}

function timestamp(date: Date): { seconds: string; nanos: number } {
  return { seconds: String(Math.floor(date.getTime() / 1000)), nanos: (date.getTime() % 1000) * 1e6 };
}

/**
 * Starts a fake Cloud KMS on 127.0.0.1 and a free port. For tests: `kms-envelope/testing`.
 * @throws MissingDependencyError when `@grpc/grpc-js`, `@grpc/proto-loader` or `@google-cloud/kms`
 *   (whose protos it serves) is not installed.
 */
export async function startFakeGcpKms(options: FakeGcpKmsOptions = {}): Promise<FakeGcpKms> {
  const grpc = await importOptional('@grpc/grpc-js', 'startFakeGcpKms', () => import('@grpc/grpc-js'));
  const protoLoader = await importOptional(
    '@grpc/proto-loader',
    'startFakeGcpKms',
    () => import('@grpc/proto-loader'),
  );
  const require = createRequire(import.meta.url);
  let protosPath: string;
  try {
    protosPath = require.resolve('@google-cloud/kms/build/protos/protos.json');
  } catch (cause) {
    const { MissingDependencyError } = await import('../errors.js');
    throw new MissingDependencyError('@google-cloud/kms', 'startFakeGcpKms', cause);
  }
  const definition = protoLoader.fromJSON(JSON.parse(readFileSync(protosPath, 'utf8')), {
    longs: String,
    enums: String,
    defaults: false,
    oneofs: true,
  });
  // biome-ignore lint/suspicious/noExplicitAny: the loaded package tree is untyped by nature.
  const loaded = grpc.loadPackageDefinition(definition) as any;
  const service = loaded.google.cloud.kms.v1.KeyManagementService.service;

  const projectId = options.projectId ?? 'fake-project';
  const keys = new Map<string, FakeKey>();
  const received: FakeGcpKmsCall[] = [];
  let failing = { count: 0, status: 'UNAVAILABLE' as FakeGcpStatus, message: '' };
  let delayMs = 0;
  let corrupting = 0;
  const timers = new Set<NodeJS.Timeout>();

  function keyOf(name: string): FakeKey {
    const key = keys.get(name);
    if (key === undefined) throw new Status('NOT_FOUND', `CryptoKey ${name} not found.`);
    return key;
  }

  function versionOf(name: string): { key: FakeKey; version: FakeVersion } {
    const match = VERSION_NAME.exec(name);
    if (match === null) throw new Status('INVALID_ARGUMENT', `Resource name [${name}] is not valid.`);
    const key = keyOf(match[1]!);
    const version = key.versions[Number(match[2]) - 1];
    if (version === undefined) throw new Status('NOT_FOUND', `CryptoKeyVersion ${name} not found.`);
    return { key, version };
  }

  function requireEnabled(key: FakeKey, version: FakeVersion): void {
    if (version.state !== 'ENABLED') {
      throw new Status(
        'FAILED_PRECONDITION',
        `${key.name}/cryptoKeyVersions/${version.number} is not enabled, current state is: ${version.state}.`,
      );
    }
  }

  function addVersion(key: FakeKey, makePrimary: boolean): FakeVersion {
    const version: FakeVersion = {
      number: key.versions.length + 1,
      key: randomBytes(32),
      state: 'ENABLED',
      createTime: new Date(),
    };
    key.versions.push(version);
    if (makePrimary) key.primary = version.number;
    return version;
  }

  function versionMessage(key: FakeKey, version: FakeVersion) {
    return {
      name: `${key.name}/cryptoKeyVersions/${version.number}`,
      state: version.state,
      protectionLevel: 'SOFTWARE',
      algorithm: 'GOOGLE_SYMMETRIC_ENCRYPTION',
      createTime: timestamp(version.createTime),
      generateTime: timestamp(version.createTime),
    };
  }

  function cryptoKeyMessage(key: FakeKey) {
    return {
      name: key.name,
      primary: versionMessage(key, key.versions[key.primary - 1]!),
      purpose: 'ENCRYPT_DECRYPT',
      createTime: timestamp(key.createTime),
      versionTemplate: { protectionLevel: 'SOFTWARE', algorithm: 'GOOGLE_SYMMETRIC_ENCRYPTION' },
    };
  }

  // biome-ignore lint/suspicious/noExplicitAny: request messages are plain objects from proto-loader.
  type Request = any;

  function encrypt(request: Request) {
    const name = String(request.name ?? '');
    let key: FakeKey;
    let version: FakeVersion;
    if (CRYPTO_KEY_NAME.test(name)) {
      key = keyOf(name);
      version = key.versions[key.primary - 1]!;
    } else {
      ({ key, version } = versionOf(name));
    }
    requireEnabled(key, version);
    const plaintext = bytesOf(request.plaintext);
    const aad = bytesOf(request.additionalAuthenticatedData);
    if (plaintext.length === 0) throw new Status('INVALID_ARGUMENT', 'plaintext is required.');
    if (plaintext.length > MAX_DATA || aad.length > MAX_DATA) {
      throw new Status('INVALID_ARGUMENT', 'The request exceeds the maximum size of 64 KiB per field.');
    }
    const verifiedPlaintext = checkCrc(plaintext, request.plaintextCrc32c, 'plaintext_crc32c', 'plaintext');
    const verifiedAad = checkCrc(
      aad,
      request.additionalAuthenticatedDataCrc32c,
      'additional_authenticated_data_crc32c',
      'additional_authenticated_data',
    );
    const header = Buffer.alloc(CIPHERTEXT_HEADER);
    header[0] = CIPHERTEXT_FORMAT;
    header.writeUInt32BE(version.number, 1);
    const ciphertext = Buffer.concat([
      header,
      sealAes256Gcm(version.key, plaintext, Buffer.concat([header, aad])),
    ]);
    let ciphertextCrc = crc32c(ciphertext);
    if (corrupting > 0) {
      corrupting--;
      ciphertextCrc ^= 1;
    }
    return {
      name: `${key.name}/cryptoKeyVersions/${version.number}`,
      ciphertext,
      ciphertextCrc32c: { value: String(ciphertextCrc >>> 0) },
      verifiedPlaintextCrc32c: verifiedPlaintext,
      verifiedAdditionalAuthenticatedDataCrc32c: verifiedAad,
      protectionLevel: 'SOFTWARE',
    };
  }

  function decrypt(request: Request) {
    const name = String(request.name ?? '');
    if (!CRYPTO_KEY_NAME.test(name)) {
      throw new Status('INVALID_ARGUMENT', `Resource name [${name}] does not name a CryptoKey.`);
    }
    const key = keyOf(name);
    const ciphertext = bytesOf(request.ciphertext);
    const aad = bytesOf(request.additionalAuthenticatedData);
    checkCrc(ciphertext, request.ciphertextCrc32c, 'ciphertext_crc32c', 'ciphertext');
    checkCrc(
      aad,
      request.additionalAuthenticatedDataCrc32c,
      'additional_authenticated_data_crc32c',
      'additional_authenticated_data',
    );
    const invalid = new Status('INVALID_ARGUMENT', 'Decryption failed: the ciphertext is invalid.');
    if (ciphertext.length < CIPHERTEXT_HEADER || ciphertext[0] !== CIPHERTEXT_FORMAT) throw invalid;
    const header = ciphertext.subarray(0, CIPHERTEXT_HEADER);
    const version = key.versions[header.readUInt32BE(1) - 1];
    const wrongKey = new Status(
      'INVALID_ARGUMENT',
      "Decryption failed: verify that 'name' refers to the correct CryptoKey.",
    );
    if (version === undefined) throw wrongKey;
    requireEnabled(key, version);
    const plaintext = openAes256Gcm(
      version.key,
      ciphertext.subarray(CIPHERTEXT_HEADER),
      Buffer.concat([header, aad]),
    );
    if (plaintext === undefined) throw wrongKey;
    let plaintextCrc = crc32c(plaintext);
    if (corrupting > 0) {
      corrupting--;
      plaintextCrc ^= 1;
    }
    return {
      plaintext,
      plaintextCrc32c: { value: String(plaintextCrc >>> 0) },
      usedPrimary: version.number === key.primary,
      protectionLevel: 'SOFTWARE',
    };
  }

  const methods: Record<string, (request: Request) => unknown> = {
    Encrypt: encrypt,
    Decrypt: decrypt,
    GetCryptoKey: (request) => cryptoKeyMessage(keyOf(String(request.name ?? ''))),
    GetCryptoKeyVersion: (request) => {
      const { key, version } = versionOf(String(request.name ?? ''));
      return versionMessage(key, version);
    },
    CreateCryptoKeyVersion: (request) => {
      // Like the real service, a version created this way does not become the primary.
      const key = keyOf(String(request.parent ?? ''));
      return versionMessage(key, addVersion(key, false));
    },
  };

  type UnaryCall = {
    request: Request;
    cancelled: boolean;
    on(event: 'cancelled', listener: () => void): void;
  };
  type Callback = (error: { code: number; details: string } | null, response?: unknown) => void;

  const implementation: Record<string, (call: UnaryCall, callback: Callback) => void> = {};
  for (const [method, handle] of Object.entries(methods)) {
    const rpcName = method.charAt(0).toLowerCase() + method.slice(1);
    implementation[rpcName] = (call, callback) => {
      const record: FakeGcpKmsCall = {
        method,
        name: String(call.request.name ?? call.request.parent ?? ''),
        status: 'PENDING',
      };
      received.push(record);
      // grpc-js also reports 'cancelled' when a finished call's stream closes: only a call still
      // waiting for its answer was cancelled by the client (or its deadline).
      call.on('cancelled', () => {
        if (record.status === 'PENDING') record.status = 'CANCELLED';
      });
      const answer = () => {
        if (call.cancelled) return;
        try {
          if (failing.count > 0) {
            failing.count--;
            throw new Status(failing.status, failing.message || `injected ${failing.status}`);
          }
          const response = handle(call.request);
          record.status = 'OK';
          callback(null, response);
        } catch (err) {
          const status = err instanceof Status ? err : new Status('INTERNAL', 'internal error');
          record.status = status.status;
          callback({ code: grpc.status[status.status], details: status.message });
        }
      };
      if (delayMs <= 0) return answer();
      const timer = setTimeout(() => {
        timers.delete(timer);
        answer();
      }, delayMs);
      timers.add(timer);
    };
  }

  const server = new grpc.Server();
  server.addService(service, implementation as never);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, bound) =>
      err ? reject(err) : resolve(bound),
    ),
  );

  const handle: FakeGcpKms = {
    port,
    endpoint: `127.0.0.1:${port}`,
    projectId,
    clientOptions: <Credentials>() => ({
      apiEndpoint: '127.0.0.1',
      port,
      // The caller's Credentials is this type: the parameter only keeps grpc out of our types.
      sslCreds: grpc.credentials.createInsecure() as Credentials,
      universeDomain: 'googleapis.com',
      projectId,
    }),
    createCryptoKey(name) {
      if (!CRYPTO_KEY_NAME.test(name)) {
        throw new Error(`not a CryptoKey name (projects/P/locations/L/keyRings/R/cryptoKeys/K): ${name}`);
      }
      if (keys.has(name)) throw new Error(`CryptoKey ${name} already exists`);
      const key: FakeKey = { name, versions: [], primary: 0, createTime: new Date() };
      addVersion(key, true);
      keys.set(name, key);
      return name;
    },
    rotate(name) {
      const key = keys.get(name);
      if (key === undefined) throw new Error(`no CryptoKey ${name}`);
      return `${name}/cryptoKeyVersions/${addVersion(key, true).number}`;
    },
    setVersionState(name, state) {
      const key = keys.get(name);
      if (key !== undefined) {
        for (const version of key.versions) version.state = state;
        return;
      }
      try {
        versionOf(name).version.state = state;
      } catch {
        throw new Error(`no CryptoKey or CryptoKeyVersion ${name}`);
      }
    },
    failNext(count, status = 'UNAVAILABLE', message = '') {
      failing = { count, status, message };
    },
    delay(ms) {
      delayMs = ms;
    },
    corruptNext(count) {
      corrupting = count;
    },
    calls: () => received,
    close: async () => {
      for (const timer of timers) clearTimeout(timer);
      timers.clear();
      server.forceShutdown();
    },
  };
  for (const name of options.cryptoKeys ?? []) handle.createCryptoKey(name);
  return handle;
}
