import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { FakeKms } from './fake-aws-kms.js';
import {
  type FakeAwsCaller,
  FakeAwsError,
  type FakeAwsScope,
  type FakeAwsService,
  parseJsonRequest,
} from './fake-aws-protocol.js';
import { FakeSecretsManager } from './fake-aws-secrets.js';
import { FakeSts, stsErrorXml } from './fake-aws-sts.js';

export { FakeAwsError, type FakeAwsService } from './fake-aws-protocol.js';
export type { FakeStsSession } from './fake-aws-sts.js';

/** Options of {@link startFakeAws}. */
export interface FakeAwsOptions {
  /** The region every ARN names (default `us-east-1`). */
  region?: string;
  /** The account every ARN names (default `111122223333`). */
  accountId?: string;
}

/** Static credentials for an SDK client of the fake (never real ones). */
export interface FakeAwsCredentials {
  /** Access key id (the fake's checks key on it). */
  accessKeyId: string;
  /** Secret access key (any value: the fake does not verify signatures). */
  secretAccessKey: string;
  /** Session token of temporary credentials. */
  sessionToken?: string;
}

/** A KMS key the fake made. */
export interface FakeKmsKeyRef {
  /** The key id (a UUID). */
  keyId: string;
  /** The key ARN. */
  arn: string;
}

/** A secret version the fake stored. */
export interface FakeSecretVersion {
  /** The secret ARN. */
  arn: string;
  /** The new version's `VersionId`. */
  versionId: string;
}

/** What {@link FakeAws.clientConfig} returns: spread it into any AWS SDK v3 client's config. */
export interface FakeAwsClientConfig {
  /** The fake's URL. */
  endpoint: string;
  /** The fake's region. */
  region: string;
  /** Dummy static credentials (or those given). */
  credentials: FakeAwsCredentials;
  /** 1: faults reach the caller unretried. */
  maxAttempts: number;
}

/** One request the fake received. */
export interface FakeAwsRequest {
  /** `kms`, `secretsmanager`, `sts`, or `unknown` for a request it could not route. */
  readonly service: string;
  /** The operation (`Decrypt`, `GetSecretValue`, `AssumeRole`, …). */
  readonly operation: string;
  /** The access key id of the SigV4 `Credential=` scope; undefined when unsigned. */
  readonly accessKeyId: string | undefined;
  /** The region of the SigV4 credential scope. */
  readonly region: string | undefined;
}

/** An error the fake answers with, in the service's own protocol. */
export interface FakeAwsFault {
  /** HTTP status (400 for most AWS client errors, 5xx for service faults). */
  status: number;
  /** The error code: `__type` for KMS and Secrets Manager, `<Code>` for STS. */
  type: string;
  /** The error message (a default per type when absent). */
  message?: string;
}

/**
 * A wire-level fake of AWS KMS, Secrets Manager and STS on 127.0.0.1, for tests with the real AWS
 * SDK v3 clients and no cloud account. Signatures are not verified; the access key id of each
 * request is recorded and is the identity that key and secret access lists check.
 *
 * Not a security boundary: key material lives in this process's memory.
 */
export interface FakeAws {
  /** `http://127.0.0.1:<port>`. */
  readonly endpoint: string;
  /** The region the fake answers for (`us-east-1` unless given). */
  readonly region: string;
  /** The account id in the ARNs it makes. */
  readonly accountId: string;
  /**
   * Config for any AWS SDK v3 client: this endpoint and region, dummy static credentials (or
   * `credentials`), `maxAttempts: 1` so that faults reach the caller unretried.
   */
  clientConfig(credentials?: FakeAwsCredentials): FakeAwsClientConfig;

  /**
   * Creates an enabled symmetric KMS key with fresh random AES-256 material, optionally with an
   * alias (`alias/` added if missing).
   * @throws FakeAwsError `AlreadyExistsException` / `InvalidAliasNameException` for the alias.
   */
  createKey(options?: { alias?: string; description?: string }): FakeKmsKeyRef;
  /**
   * Sets a key's state (id, ARN, alias or alias ARN): Disabled → `DisabledException`,
   * PendingDeletion → `KMSInvalidStateException` on cryptographic calls.
   * @throws FakeAwsError `NotFoundException` for an unknown key.
   */
  setKeyState(key: string, state: 'Enabled' | 'Disabled' | 'PendingDeletion'): void;
  /**
   * Only these access key ids may use the key (others get `AccessDeniedException`); an entry may
   * also be a role ARN, which admits every temporary credential issued for that role;
   * undefined = anyone.
   * @throws FakeAwsError `NotFoundException` for an unknown key.
   */
  restrictKey(key: string, accessKeyIds: readonly string[] | undefined): void;

  /**
   * Creates the secret or adds a version (AWSCURRENT moves; the old current becomes AWSPREVIOUS).
   * The value is copied. Strings are served as `SecretString`, bytes as `SecretBinary`.
   * @throws FakeAwsError `InvalidRequestException` if the secret is scheduled for deletion.
   */
  putSecret(name: string, value: Uint8Array | string): FakeSecretVersion;
  /** Later reads fail like a secret scheduled for deletion (`InvalidRequestException`). */
  deleteSecret(name: string): void;
  /** As {@link restrictKey}, for a secret (by name). */
  restrictSecret(name: string, accessKeyIds: readonly string[] | undefined): void;

  /**
   * AssumeRole of `roleArn` succeeds only with this external id; returns temporary credentials
   * (fresh `ASIA…` ids). `durationSeconds` forces their lifetime (requests signed with expired
   * ones get `ExpiredTokenException`).
   */
  allowRole(roleArn: string, externalId: string, options?: { durationSeconds?: number }): void;
  /** Access key ids of the temporary credentials issued so far for `roleArn`. */
  issuedCredentials(roleArn: string): string[];

  /**
   * The next `count` calls (of `service`; omitted = any) answer the service's throttling error
   * (`ThrottlingException`, STS `Throttling`). Replaces the previous count for that scope: 0 clears it.
   */
  throttleNext(count: number, service?: FakeAwsService): void;
  /** The next `count` calls (of `service`) answer `error`; `count` 0 clears the pending ones of that scope. */
  failNext(count: number, error: FakeAwsFault, service?: FakeAwsService): void;
  /** The next `count` calls (of `service`) get their connection reset without an answer. */
  dropNext(count: number, service?: FakeAwsService): void;
  /** Every response `ms` later (0 = none). A request whose caller gave up meanwhile is not carried out. */
  delay(ms: number): void;
  /** Requests received so far (of `service`; omitted = all), faulted ones included. */
  calls(service?: FakeAwsService): number;
  /** Every request so far: service, operation, access key id used (a copy). */
  readonly requests: ReadonlyArray<FakeAwsRequest>;
  /** Stops the server, resets open connections and zeroes the key material. Idempotent. */
  close(): Promise<void>;
}

/** The access key id {@link FakeAws.clientConfig} uses when given none. */
export const FAKE_AWS_ACCESS_KEY_ID = 'AKIAFAKETESTKEY00001';
const FAKE_AWS_SECRET_ACCESS_KEY = 'fake-secret-access-key-not-a-secret';
const MAX_BODY_BYTES = 1024 * 1024;
const JSON_CONTENT_TYPE = 'application/x-amz-json-1.1';

type Scope = FakeAwsService | 'any';

interface PendingFailure {
  remaining: number;
  readonly scope: Scope;
  readonly error: FakeAwsFault;
}

function readBody(request: IncomingMessage): Promise<Buffer | undefined> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    request.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) {
        resolve(undefined);
        request.destroy();
        return;
      }
      chunks.push(chunk);
    });
    request.on('end', () => resolve(Buffer.concat(chunks)));
    request.on('error', reject);
  });
}

/** `Credential=<AKID>/<date>/<region>/<service>/aws4_request` of a SigV4 Authorization header. */
function credentialScope(header: string | undefined): { accessKeyId?: string; region?: string } {
  const match = header === undefined ? null : /Credential=([^/,\s]+)\/[^/,\s]*\/([^/,\s]*)\//.exec(header);
  return match === null ? {} : { accessKeyId: match[1]!, region: match[2]! };
}

interface Route {
  readonly service: FakeAwsService | 'unknown';
  readonly operation: string;
  /** Parsed form of a query-protocol (STS) request. */
  readonly form?: URLSearchParams;
}

function route(request: IncomingMessage, body: Buffer): Route {
  const target = request.headers['x-amz-target'];
  if (typeof target === 'string') {
    const dot = target.indexOf('.');
    const prefix = target.slice(0, dot);
    const operation = target.slice(dot + 1);
    if (prefix === 'TrentService') return { service: 'kms', operation };
    if (prefix === 'secretsmanager') return { service: 'secretsmanager', operation };
    return { service: 'unknown', operation: target };
  }
  const form = new URLSearchParams(body.toString('utf8'));
  const action = form.get('Action');
  if (action !== null) return { service: 'sts', operation: action, form };
  return { service: 'unknown', operation: `${request.method ?? ''} ${request.url ?? ''}` };
}

class FakeAwsServer implements FakeAws {
  readonly endpoint: string;
  readonly region: string;
  readonly accountId: string;
  readonly #server: Server;
  readonly #kms: FakeKms;
  readonly #secrets: FakeSecretsManager;
  readonly #sts: FakeSts;
  readonly #requests: FakeAwsRequest[] = [];
  readonly #throttles = new Map<Scope, number>();
  readonly #drops = new Map<Scope, number>();
  #failures: PendingFailure[] = [];
  #delayMs = 0;
  readonly #waiting = new Set<() => void>();
  #closed: Promise<void> | undefined;

  constructor(server: Server, scope: FakeAwsScope) {
    this.#server = server;
    const { port } = server.address() as AddressInfo;
    this.endpoint = `http://127.0.0.1:${port}`;
    this.region = scope.region;
    this.accountId = scope.accountId;
    this.#kms = new FakeKms(scope);
    this.#secrets = new FakeSecretsManager(scope);
    this.#sts = new FakeSts(scope);
    server.on('request', (request: IncomingMessage, response: ServerResponse) => {
      this.#serve(request, response).catch(() => response.destroy());
    });
  }

  clientConfig(credentials?: FakeAwsCredentials): FakeAwsClientConfig {
    return {
      endpoint: this.endpoint,
      region: this.region,
      credentials: credentials ?? {
        accessKeyId: FAKE_AWS_ACCESS_KEY_ID,
        secretAccessKey: FAKE_AWS_SECRET_ACCESS_KEY,
      },
      maxAttempts: 1,
    };
  }

  createKey(options?: { alias?: string; description?: string }): FakeKmsKeyRef {
    return this.#kms.createKey(options);
  }

  setKeyState(key: string, state: 'Enabled' | 'Disabled' | 'PendingDeletion'): void {
    this.#kms.setKeyState(key, state);
  }

  restrictKey(key: string, accessKeyIds: readonly string[] | undefined): void {
    this.#kms.restrictKey(key, accessKeyIds);
  }

  putSecret(name: string, value: Uint8Array | string): FakeSecretVersion {
    return this.#secrets.putSecret(name, value);
  }

  deleteSecret(name: string): void {
    this.#secrets.deleteSecret(name);
  }

  restrictSecret(name: string, accessKeyIds: readonly string[] | undefined): void {
    this.#secrets.restrictSecret(name, accessKeyIds);
  }

  allowRole(roleArn: string, externalId: string, options?: { durationSeconds?: number }): void {
    this.#sts.allowRole(roleArn, externalId, options);
  }

  issuedCredentials(roleArn: string): string[] {
    return this.#sts.issuedCredentials(roleArn);
  }

  throttleNext(count: number, service?: FakeAwsService): void {
    this.#throttles.set(service ?? 'any', Math.max(0, count));
  }

  failNext(count: number, error: FakeAwsFault, service?: FakeAwsService): void {
    const scope = service ?? 'any';
    if (count <= 0) this.#failures = this.#failures.filter((failure) => failure.scope !== scope);
    else this.#failures.push({ remaining: count, scope, error: { ...error } });
  }

  dropNext(count: number, service?: FakeAwsService): void {
    this.#drops.set(service ?? 'any', Math.max(0, count));
  }

  delay(ms: number): void {
    this.#delayMs = Math.max(0, ms);
  }

  calls(service?: FakeAwsService): number {
    if (service === undefined) return this.#requests.length;
    return this.#requests.filter((request) => request.service === service).length;
  }

  get requests(): ReadonlyArray<FakeAwsRequest> {
    return [...this.#requests];
  }

  close(): Promise<void> {
    this.#closed ??= new Promise<void>((resolve) => {
      for (const release of [...this.#waiting]) release();
      this.#server.close(() => resolve());
      this.#server.closeAllConnections();
      this.#kms.wipe();
      this.#secrets.wipe();
    });
    return this.#closed;
  }

  /** Takes one from a counter of `service` or of any service, the specific one first. */
  #take(counters: Map<Scope, number>, service: FakeAwsService): boolean {
    for (const scope of [service, 'any'] as const) {
      const left = counters.get(scope) ?? 0;
      if (left > 0) {
        counters.set(scope, left - 1);
        return true;
      }
    }
    return false;
  }

  #injectedFault(service: FakeAwsService): FakeAwsError | 'drop' | undefined {
    const failure = this.#failures.find(
      (candidate) => candidate.scope === service || candidate.scope === 'any',
    );
    if (failure !== undefined) {
      failure.remaining -= 1;
      if (failure.remaining === 0) this.#failures.splice(this.#failures.indexOf(failure), 1);
      return new FakeAwsError(failure.error.type, failure.error.message ?? '', failure.error.status);
    }
    if (this.#take(this.#drops, service)) return 'drop';
    if (this.#take(this.#throttles, service)) {
      return new FakeAwsError(service === 'sts' ? 'Throttling' : 'ThrottlingException', 'Rate exceeded');
    }
    return undefined;
  }

  /** Resolves true after the delay, false if the caller went away (or the server closed) first. */
  #wait(response: ServerResponse): Promise<boolean> {
    if (this.#delayMs === 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const finish = (ok: boolean) => {
        clearTimeout(timer);
        response.off('close', gone);
        this.#waiting.delete(gone);
        resolve(ok);
      };
      const gone = () => finish(false);
      const timer = setTimeout(() => finish(true), this.#delayMs);
      response.once('close', gone);
      this.#waiting.add(gone);
    });
  }

  /** Who signed: temporary credentials of this fake must carry their token and be unexpired. */
  #caller(request: IncomingMessage, accessKeyId: string | undefined, service: FakeAwsService): FakeAwsCaller {
    const sts = service === 'sts';
    if (accessKeyId === undefined) {
      throw sts
        ? new FakeAwsError('MissingAuthenticationToken', 'Request is missing Authentication Token', 403)
        : new FakeAwsError('MissingAuthenticationTokenException', 'Missing Authentication Token');
    }
    const session = this.#sts.session(accessKeyId);
    if (session === undefined) {
      return { accessKeyId, arn: `arn:aws:iam::${this.accountId}:user/${accessKeyId}` };
    }
    if (request.headers['x-amz-security-token'] !== session.sessionToken) {
      throw sts
        ? new FakeAwsError(
            'InvalidClientTokenId',
            'The security token included in the request is invalid.',
            403,
          )
        : new FakeAwsError(
            'UnrecognizedClientException',
            'The security token included in the request is invalid.',
          );
    }
    if (session.expiration.getTime() <= Date.now()) {
      throw new FakeAwsError(
        'ExpiredTokenException',
        'The security token included in the request is expired',
      );
    }
    return {
      accessKeyId,
      arn: session.assumedRoleArn,
      roleArn: session.roleArn,
      roleSessionName: session.roleSessionName,
    };
  }

  async #serve(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const requestId = randomUUID();
    const body = await readBody(request);
    if (body === undefined) {
      response.writeHead(413).end();
      return;
    }
    const target = route(request, body);
    const { accessKeyId, region } = credentialScope(request.headers.authorization);
    this.#requests.push({ service: target.service, operation: target.operation, accessKeyId, region });
    if (!(await this.#wait(response))) return;
    if (target.service === 'unknown') {
      this.#answerJson(
        response,
        requestId,
        new FakeAwsError('UnknownOperationException', 'Unknown operation'),
      );
      return;
    }
    const service = target.service;
    try {
      const fault = this.#injectedFault(service);
      if (fault === 'drop') {
        request.socket.destroy();
        return;
      }
      if (fault !== undefined) throw fault;
      const caller = this.#caller(request, accessKeyId, service);
      if (service === 'sts') {
        const xml = this.#sts.handle(target.operation, target.form!, caller, requestId);
        this.#answer(response, requestId, 200, 'text/xml', xml);
      } else {
        const json = parseJsonRequest(body);
        const answer =
          service === 'kms'
            ? this.#kms.handle(target.operation, json, caller)
            : this.#secrets.handle(target.operation, json, caller);
        this.#answer(response, requestId, 200, JSON_CONTENT_TYPE, JSON.stringify(answer));
      }
    } catch (error) {
      const known =
        error instanceof FakeAwsError
          ? error
          : new FakeAwsError(
              service === 'kms' ? 'KMSInternalException' : 'InternalFailure',
              'Internal error',
              500,
            );
      if (service === 'sts')
        this.#answer(response, requestId, known.status, 'text/xml', stsErrorXml(known, requestId));
      else this.#answerJson(response, requestId, known);
    }
  }

  #answerJson(response: ServerResponse, requestId: string, error: FakeAwsError): void {
    const body = JSON.stringify({ __type: error.type, message: error.message });
    this.#answer(response, requestId, error.status, JSON_CONTENT_TYPE, body);
  }

  #answer(
    response: ServerResponse,
    requestId: string,
    status: number,
    contentType: string,
    body: string,
  ): void {
    response.writeHead(status, {
      'content-type': contentType,
      'content-length': Buffer.byteLength(body),
      'x-amzn-requestid': requestId,
    });
    response.end(body);
  }
}

/**
 * Starts the fake AWS server on 127.0.0.1 and a free port. For tests: `kms-envelope/testing`.
 *
 * @example
 * const aws = await startFakeAws();
 * const { arn } = aws.createKey({ alias: 'alias/app' });
 * const kms = new KMSClient(aws.clientConfig());
 * await kms.send(new EncryptCommand({ KeyId: 'alias/app', Plaintext: bytes, EncryptionContext: { index: 'a' } }));
 * await aws.close();
 */
export async function startFakeAws(options: FakeAwsOptions = {}): Promise<FakeAws> {
  const scope: FakeAwsScope = {
    region: options.region ?? 'us-east-1',
    accountId: options.accountId ?? '111122223333',
  };
  if (!/^\d{12}$/.test(scope.accountId)) throw new Error('accountId must be 12 digits');
  if (!/^[a-z0-9-]+$/.test(scope.region)) throw new Error('region must look like us-east-1');
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  return new FakeAwsServer(server, scope);
}
