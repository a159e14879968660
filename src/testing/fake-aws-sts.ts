import { randomBytes } from 'node:crypto';
import {
  awsUniqueId,
  type FakeAwsCaller,
  FakeAwsError,
  type FakeAwsScope,
  randomChars,
} from './fake-aws-protocol.js';

const STS_NAMESPACE = 'https://sts.amazonaws.com/doc/2011-06-15/';
const ROLE_ARN = /^arn:aws:iam::(\d{12}):role\/(?:[\w+=,.@/-]*\/)?([\w+=,.@-]{1,64})$/;
const SESSION_NAME = /^[\w+=,.@-]{2,64}$/;

/** Temporary credentials the fake's AssumeRole issued. */
export interface FakeStsSession {
  /** The temporary access key id (`ASIA…`). */
  readonly accessKeyId: string;
  /** Its secret access key. */
  readonly secretAccessKey: string;
  /** Its session token. */
  readonly sessionToken: string;
  /** When the credentials expire. */
  readonly expiration: Date;
  /** The role assumed. */
  readonly roleArn: string;
  /** The session name asked for. */
  readonly roleSessionName: string;
  /** `arn:aws:sts::<account>:assumed-role/<role name>/<session name>`. */
  readonly assumedRoleArn: string;
  /** `<role id>:<session name>`. */
  readonly assumedRoleId: string;
}

interface FakeRole {
  readonly roleArn: string;
  readonly roleId: string;
  readonly accountId: string;
  readonly roleName: string;
  externalId: string;
  durationSeconds: number | undefined;
  readonly issued: string[];
}

/** Escapes text for an XML element body. */
export function xmlText(value: string): string {
  return value.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

function isoSeconds(date: Date): string {
  return date.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** The `<ErrorResponse>` body of the query protocol. */
export function stsErrorXml(error: FakeAwsError, requestId: string): string {
  return (
    `<ErrorResponse xmlns="${STS_NAMESPACE}"><Error><Type>${error.status >= 500 ? 'Receiver' : 'Sender'}</Type>` +
    `<Code>${xmlText(error.type)}</Code><Message>${xmlText(error.message)}</Message></Error>` +
    `<RequestId>${requestId}</RequestId></ErrorResponse>`
  );
}

/**
 * The STS half of the fake AWS server (query protocol: form POST, XML answers): AssumeRole for
 * roles allowed with an external id, and GetCallerIdentity. It also remembers every session it
 * issued, so that the other services can tell who signed a request with temporary credentials.
 */
export class FakeSts {
  readonly #scope: FakeAwsScope;
  readonly #roles = new Map<string, FakeRole>();
  readonly #sessions = new Map<string, FakeStsSession>(); // by access key id

  constructor(scope: FakeAwsScope) {
    this.#scope = scope;
  }

  /**
   * Lets AssumeRole of `roleArn` succeed with this external id. `durationSeconds` forces the
   * lifetime of the credentials issued (even under the 900 s AWS minimum, to test refreshes);
   * otherwise the request's `DurationSeconds` or 3600.
   */
  allowRole(roleArn: string, externalId: string, options: { durationSeconds?: number } = {}): void {
    const match = ROLE_ARN.exec(roleArn);
    if (match === null) throw new FakeAwsError('ValidationError', `${roleArn} is not a role ARN`);
    const role = this.#roles.get(roleArn);
    if (role !== undefined) {
      role.externalId = externalId;
      role.durationSeconds = options.durationSeconds;
      return;
    }
    this.#roles.set(roleArn, {
      roleArn,
      roleId: awsUniqueId('AROA'),
      accountId: match[1]!,
      roleName: match[2]!,
      externalId,
      durationSeconds: options.durationSeconds,
      issued: [],
    });
  }

  /** Access key ids issued so far for `roleArn` (oldest first). */
  issuedCredentials(roleArn: string): string[] {
    return [...(this.#roles.get(roleArn)?.issued ?? [])];
  }

  /** The session behind a temporary access key id, if this fake issued it. */
  session(accessKeyId: string): FakeStsSession | undefined {
    return this.#sessions.get(accessKeyId);
  }

  /** Answers one query-protocol action with its XML result. */
  handle(action: string, form: URLSearchParams, caller: FakeAwsCaller, requestId: string): string {
    let result: string;
    switch (action) {
      case 'AssumeRole':
        result = this.#assumeRole(form, caller);
        break;
      case 'GetCallerIdentity':
        result = this.#callerIdentity(caller);
        break;
      default:
        throw new FakeAwsError('InvalidAction', `Could not find operation ${action} for version 2011-06-15`);
    }
    return (
      `<${action}Response xmlns="${STS_NAMESPACE}"><${action}Result>${result}</${action}Result>` +
      `<ResponseMetadata><RequestId>${requestId}</RequestId></ResponseMetadata></${action}Response>`
    );
  }

  #assumeRole(form: URLSearchParams, caller: FakeAwsCaller): string {
    const roleArn = form.get('RoleArn');
    const sessionName = form.get('RoleSessionName');
    if (roleArn === null || roleArn.length < 20) {
      throw new FakeAwsError(
        'ValidationError',
        "1 validation error detected: Value null at 'roleArn' failed to satisfy constraint: Member must not be null",
      );
    }
    if (sessionName === null || !SESSION_NAME.test(sessionName)) {
      throw new FakeAwsError(
        'ValidationError',
        `1 validation error detected: Value '${sessionName}' at 'roleSessionName' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]*`,
      );
    }
    const requested = form.get('DurationSeconds');
    const requestedSeconds = requested === null ? undefined : Number(requested);
    if (
      requestedSeconds !== undefined &&
      !(Number.isInteger(requestedSeconds) && requestedSeconds >= 900 && requestedSeconds <= 43_200)
    ) {
      throw new FakeAwsError(
        'ValidationError',
        `1 validation error detected: Value '${requested}' at 'durationSeconds' failed to satisfy constraint: Member must have value between 900 and 43200`,
      );
    }
    const role = this.#roles.get(roleArn);
    // A role that is not allowed and a wrong or missing external id look the same, as in AWS.
    if (role === undefined || form.get('ExternalId') !== role.externalId) {
      throw new FakeAwsError(
        'AccessDenied',
        `User: ${caller.arn} is not authorized to perform: sts:AssumeRole on resource: ${roleArn}`,
        403,
      );
    }
    const seconds = role.durationSeconds ?? requestedSeconds ?? 3600;
    const session: FakeStsSession = {
      accessKeyId: awsUniqueId('ASIA'),
      secretAccessKey: randomChars(40),
      sessionToken: `FakeSessionToken/${randomBytes(48).toString('base64')}`,
      expiration: new Date(Date.now() + seconds * 1000),
      roleArn,
      roleSessionName: sessionName,
      assumedRoleArn: `arn:aws:sts::${role.accountId}:assumed-role/${role.roleName}/${sessionName}`,
      assumedRoleId: `${role.roleId}:${sessionName}`,
    };
    this.#sessions.set(session.accessKeyId, session);
    role.issued.push(session.accessKeyId);
    return (
      `<Credentials><AccessKeyId>${session.accessKeyId}</AccessKeyId>` +
      `<SecretAccessKey>${xmlText(session.secretAccessKey)}</SecretAccessKey>` +
      `<SessionToken>${xmlText(session.sessionToken)}</SessionToken>` +
      `<Expiration>${isoSeconds(session.expiration)}</Expiration></Credentials>` +
      `<AssumedRoleUser><AssumedRoleId>${xmlText(session.assumedRoleId)}</AssumedRoleId>` +
      `<Arn>${xmlText(session.assumedRoleArn)}</Arn></AssumedRoleUser><PackedPolicySize>0</PackedPolicySize>`
    );
  }

  #callerIdentity(caller: FakeAwsCaller): string {
    const session = caller.accessKeyId === undefined ? undefined : this.#sessions.get(caller.accessKeyId);
    const account =
      session === undefined ? this.#scope.accountId : (ROLE_ARN.exec(session.roleArn)?.[1] ?? '');
    const userId = session?.assumedRoleId ?? caller.accessKeyId ?? '';
    return `<UserId>${xmlText(userId)}</UserId><Account>${account}</Account><Arn>${xmlText(caller.arn)}</Arn>`;
  }
}
