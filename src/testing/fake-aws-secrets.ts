import { randomUUID } from 'node:crypto';
import {
  epochSeconds,
  type FakeAwsCaller,
  FakeAwsError,
  type FakeAwsScope,
  type JsonRequest,
  optionalBlob,
  optionalInteger,
  optionalString,
  optionalStringList,
  randomChars,
  requiredString,
} from './fake-aws-protocol.js';

const CURRENT = 'AWSCURRENT';
const PREVIOUS = 'AWSPREVIOUS';
const SECRET_NAME = /^[A-Za-z0-9/_+=.@-]{1,512}$/;
const DAY_MS = 86_400_000;

interface FakeSecretVersion {
  readonly versionId: string;
  readonly value: Buffer | string; // Buffer: SecretBinary, string: SecretString
  readonly created: Date;
  readonly stages: Set<string>;
}

interface FakeSecret {
  readonly name: string;
  readonly arn: string;
  readonly description: string | undefined;
  readonly created: Date;
  lastChanged: Date;
  /** When the secret will be gone; set while it is scheduled for deletion. */
  deletionDate: Date | undefined;
  readonly versions: Map<string, FakeSecretVersion>;
  allowed: ReadonlySet<string> | undefined;
}

function sameValue(a: Buffer | string, b: Buffer | string): boolean {
  if (typeof a === 'string' || typeof b === 'string') return a === b;
  return a.equals(b);
}

/**
 * The Secrets Manager half of the fake AWS server (JSON 1.1, `secretsmanager.<Op>`): secrets with
 * versions and the AWSCURRENT / AWSPREVIOUS staging labels, deletion with a recovery window, and
 * per-secret access lists.
 */
export class FakeSecretsManager {
  readonly #scope: FakeAwsScope;
  readonly #secrets = new Map<string, FakeSecret>(); // by name

  constructor(scope: FakeAwsScope) {
    this.#scope = scope;
  }

  /** Creates the secret or adds a version that becomes AWSCURRENT. */
  putSecret(name: string, value: Uint8Array | string): { arn: string; versionId: string } {
    const secret = this.#secrets.get(name) ?? this.#create(name, undefined);
    this.#requireNotDeleted(secret);
    const version = this.#addVersion(secret, randomUUID(), value, [CURRENT]);
    return { arn: secret.arn, versionId: version.versionId };
  }

  /** Schedules the secret for deletion: reads fail with InvalidRequestException from now on. */
  deleteSecret(name: string): void {
    const secret = this.#secrets.get(name);
    if (secret === undefined) throw new FakeAwsError('ResourceNotFoundException', `No secret named ${name}`);
    secret.deletionDate = new Date(Date.now() + 30 * DAY_MS);
  }

  /** Restricts the secret to these access key ids or role ARNs; undefined lifts the restriction. */
  restrictSecret(name: string, principals: readonly string[] | undefined): void {
    const secret = this.#secrets.get(name);
    if (secret === undefined) throw new FakeAwsError('ResourceNotFoundException', `No secret named ${name}`);
    secret.allowed = principals === undefined ? undefined : new Set(principals);
  }

  /** Zeroes every binary secret value (the server is closing). */
  wipe(): void {
    for (const secret of this.#secrets.values()) {
      for (const version of secret.versions.values())
        if (typeof version.value !== 'string') version.value.fill(0);
    }
  }

  /** Answers one `secretsmanager.<operation>` request. */
  handle(operation: string, request: JsonRequest, caller: FakeAwsCaller): Record<string, unknown> {
    switch (operation) {
      case 'CreateSecret':
        return this.#createSecret(request);
      case 'PutSecretValue':
        return this.#putSecretValue(request, caller);
      case 'GetSecretValue':
        return this.#getSecretValue(request, caller);
      case 'DescribeSecret':
        return this.#describeSecret(request, caller);
      case 'DeleteSecret':
        return this.#deleteSecret(request, caller);
      case 'RestoreSecret':
        return this.#restoreSecret(request, caller);
      default:
        throw new FakeAwsError(
          'UnknownOperationException',
          `The fake Secrets Manager does not implement ${operation}`,
        );
    }
  }

  #create(name: string, description: string | undefined): FakeSecret {
    if (!SECRET_NAME.test(name)) {
      throw new FakeAwsError(
        'InvalidParameterException',
        `Invalid name. Must be a valid name containing alphanumeric characters, or any of the following: -/_+=.@!`,
      );
    }
    const now = new Date();
    const secret: FakeSecret = {
      name,
      arn: `arn:aws:secretsmanager:${this.#scope.region}:${this.#scope.accountId}:secret:${name}-${randomChars(6)}`,
      description,
      created: now,
      lastChanged: now,
      deletionDate: undefined,
      versions: new Map(),
      allowed: undefined,
    };
    this.#secrets.set(name, secret);
    return secret;
  }

  /** Adds a version carrying `stages`; moving AWSCURRENT makes the old current AWSPREVIOUS. */
  #addVersion(
    secret: FakeSecret,
    versionId: string,
    value: Uint8Array | string,
    stages: readonly string[],
  ): FakeSecretVersion {
    const stored = typeof value === 'string' ? value : Buffer.from(value);
    const existing = secret.versions.get(versionId);
    if (existing !== undefined) {
      // An idempotent retry with the same ClientRequestToken and value changes nothing.
      if (sameValue(existing.value, stored)) return existing;
      throw new FakeAwsError(
        'ResourceExistsException',
        "You can't modify an existing version, you can only create a new version.",
      );
    }
    const version: FakeSecretVersion = { versionId, value: stored, created: new Date(), stages: new Set() };
    for (const stage of stages) {
      for (const other of secret.versions.values()) {
        if (!other.stages.delete(stage) || stage !== CURRENT) continue;
        for (const older of secret.versions.values()) older.stages.delete(PREVIOUS);
        other.stages.add(PREVIOUS);
      }
      version.stages.add(stage);
    }
    secret.versions.set(versionId, version);
    secret.lastChanged = version.created;
    return version;
  }

  /** By name, full ARN or partial ARN (without the 6-character suffix); else ResourceNotFoundException. */
  #resolve(secretId: string): FakeSecret {
    const byName = this.#secrets.get(secretId);
    if (byName !== undefined) return byName;
    const prefix = `arn:aws:secretsmanager:${this.#scope.region}:${this.#scope.accountId}:secret:`;
    if (secretId.startsWith(prefix)) {
      for (const secret of this.#secrets.values()) if (secret.arn === secretId) return secret;
      const partial = this.#secrets.get(secretId.slice(prefix.length));
      if (partial !== undefined) return partial;
    }
    throw new FakeAwsError('ResourceNotFoundException', "Secrets Manager can't find the specified secret.");
  }

  #use(request: JsonRequest, caller: FakeAwsCaller, action: string): FakeSecret {
    const secret = this.#resolve(requiredString(request, 'SecretId'));
    if (
      secret.allowed !== undefined &&
      !(caller.accessKeyId !== undefined && secret.allowed.has(caller.accessKeyId)) &&
      !(caller.roleArn !== undefined && secret.allowed.has(caller.roleArn))
    ) {
      throw new FakeAwsError(
        'AccessDeniedException',
        `User: ${caller.arn} is not authorized to perform: secretsmanager:${action} on resource: ${secret.name} because no identity-based policy allows the secretsmanager:${action} action`,
      );
    }
    return secret;
  }

  #requireNotDeleted(secret: FakeSecret): void {
    if (secret.deletionDate !== undefined) {
      throw new FakeAwsError(
        'InvalidRequestException',
        "You can't perform this operation on the secret because it was marked for deletion.",
      );
    }
  }

  /** SecretBinary xor SecretString, as Secrets Manager requires. */
  #value(request: JsonRequest, required: boolean): Buffer | string | undefined {
    const binary = optionalBlob(request, 'SecretBinary');
    const text = optionalString(request, 'SecretString');
    if (binary !== undefined && text !== undefined) {
      throw new FakeAwsError(
        'InvalidParameterException',
        "You can't specify both a binary secret value and a string secret value in the same secret.",
      );
    }
    const value = binary ?? text;
    if (value === undefined && required) {
      throw new FakeAwsError(
        'InvalidRequestException',
        'You must provide either SecretString or SecretBinary.',
      );
    }
    return value;
  }

  #createSecret(request: JsonRequest): Record<string, unknown> {
    const name = requiredString(request, 'Name');
    const existing = this.#secrets.get(name);
    if (existing?.deletionDate !== undefined) {
      throw new FakeAwsError(
        'InvalidRequestException',
        "You can't create this secret because a secret with this name is already scheduled for deletion.",
      );
    }
    if (existing !== undefined) {
      throw new FakeAwsError(
        'ResourceExistsException',
        `The operation failed because the secret ${name} already exists.`,
      );
    }
    const value = this.#value(request, false);
    const secret = this.#create(name, optionalString(request, 'Description'));
    if (value === undefined) return { ARN: secret.arn, Name: secret.name };
    const versionId = optionalString(request, 'ClientRequestToken') ?? randomUUID();
    this.#addVersion(secret, versionId, value, [CURRENT]);
    return { ARN: secret.arn, Name: secret.name, VersionId: versionId };
  }

  #putSecretValue(request: JsonRequest, caller: FakeAwsCaller): Record<string, unknown> {
    const secret = this.#use(request, caller, 'PutSecretValue');
    this.#requireNotDeleted(secret);
    const value = this.#value(request, true)!;
    const stages = optionalStringList(request, 'VersionStages') ?? [CURRENT];
    const versionId = optionalString(request, 'ClientRequestToken') ?? randomUUID();
    const version = this.#addVersion(secret, versionId, value, stages);
    return {
      ARN: secret.arn,
      Name: secret.name,
      VersionId: version.versionId,
      VersionStages: [...version.stages],
    };
  }

  #getSecretValue(request: JsonRequest, caller: FakeAwsCaller): Record<string, unknown> {
    const secret = this.#use(request, caller, 'GetSecretValue');
    this.#requireNotDeleted(secret);
    const versionId = optionalString(request, 'VersionId');
    const stage = optionalString(request, 'VersionStage') ?? (versionId === undefined ? CURRENT : undefined);
    let version: FakeSecretVersion | undefined;
    if (versionId !== undefined) {
      version = secret.versions.get(versionId);
      if (version === undefined) {
        throw new FakeAwsError(
          'ResourceNotFoundException',
          `Secrets Manager can't find the specified secret value for VersionId: ${versionId}`,
        );
      }
      if (stage !== undefined && !version.stages.has(stage)) {
        throw new FakeAwsError(
          'InvalidRequestException',
          `The VersionId ${versionId} does not carry the staging label ${stage}`,
        );
      }
    } else {
      version = [...secret.versions.values()].find((candidate) => candidate.stages.has(stage!));
      if (version === undefined) {
        throw new FakeAwsError(
          'ResourceNotFoundException',
          `Secrets Manager can't find the specified secret value for staging label: ${stage}`,
        );
      }
    }
    return {
      ARN: secret.arn,
      Name: secret.name,
      VersionId: version.versionId,
      ...(typeof version.value === 'string'
        ? { SecretString: version.value }
        : { SecretBinary: version.value.toString('base64') }),
      VersionStages: [...version.stages],
      CreatedDate: epochSeconds(version.created),
    };
  }

  #describeSecret(request: JsonRequest, caller: FakeAwsCaller): Record<string, unknown> {
    const secret = this.#use(request, caller, 'DescribeSecret');
    const stages: Record<string, string[]> = {};
    // Versions without a label are deprecated: DescribeSecret leaves them out.
    for (const version of secret.versions.values()) {
      if (version.stages.size > 0) stages[version.versionId] = [...version.stages];
    }
    return {
      ARN: secret.arn,
      Name: secret.name,
      ...(secret.description === undefined ? {} : { Description: secret.description }),
      CreatedDate: epochSeconds(secret.created),
      LastChangedDate: epochSeconds(secret.lastChanged),
      ...(secret.deletionDate === undefined ? {} : { DeletedDate: epochSeconds(secret.deletionDate) }),
      VersionIdsToStages: stages,
    };
  }

  #deleteSecret(request: JsonRequest, caller: FakeAwsCaller): Record<string, unknown> {
    const secret = this.#use(request, caller, 'DeleteSecret');
    this.#requireNotDeleted(secret);
    const force = request.ForceDeleteWithoutRecovery === true;
    const days = optionalInteger(request, 'RecoveryWindowInDays');
    if (force && days !== undefined) {
      throw new FakeAwsError(
        'InvalidParameterException',
        "You can't use ForceDeleteWithoutRecovery in conjunction with RecoveryWindowInDays.",
      );
    }
    if (days !== undefined && (days < 7 || days > 30)) {
      throw new FakeAwsError(
        'InvalidParameterException',
        'RecoveryWindowInDays value must be between 7 and 30 days.',
      );
    }
    const deletionDate = new Date(Date.now() + (force ? 0 : (days ?? 30) * DAY_MS));
    if (force) this.#secrets.delete(secret.name);
    else secret.deletionDate = deletionDate;
    return { ARN: secret.arn, Name: secret.name, DeletionDate: epochSeconds(deletionDate) };
  }

  #restoreSecret(request: JsonRequest, caller: FakeAwsCaller): Record<string, unknown> {
    const secret = this.#use(request, caller, 'RestoreSecret');
    secret.deletionDate = undefined;
    return { ARN: secret.arn, Name: secret.name };
  }
}
