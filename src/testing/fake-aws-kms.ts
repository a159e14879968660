import { createCipheriv, createDecipheriv, randomBytes, randomUUID } from 'node:crypto';
import {
  epochSeconds,
  type FakeAwsCaller,
  FakeAwsError,
  type FakeAwsScope,
  type JsonRequest,
  optionalInteger,
  optionalString,
  optionalStringMap,
  requiredBlob,
  requiredString,
} from './fake-aws-protocol.js';

/** The key states the fake models (real KMS has more: PendingImport, Unavailable, …). */
export type FakeKmsKeyState = 'Enabled' | 'Disabled' | 'PendingDeletion';

interface FakeKmsKey {
  readonly keyId: string;
  readonly arn: string;
  readonly description: string;
  readonly created: Date;
  readonly material: Buffer; // AES-256 key, zeroed on close
  state: FakeKmsKeyState;
  deletionDate: Date | undefined;
  pendingWindowInDays: number | undefined;
  /** Access key ids or role ARNs allowed to use the key; undefined = anyone. */
  allowed: ReadonlySet<string> | undefined;
}

interface ResolvedBlob {
  readonly key: FakeKmsKey;
  readonly plaintext: Buffer;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const ALIAS_NAME = /^alias\/[a-zA-Z0-9/_-]{1,250}$/;
const BLOB_VERSION = 0x01;
const KEY_ID_BYTES = 36;
const IV_BYTES = 12;
const TAG_BYTES = 16;
const HEADER_BYTES = 1 + KEY_ID_BYTES;
const ALGORITHM = 'SYMMETRIC_DEFAULT';
const DAY_MS = 86_400_000;

/**
 * Encryption context as AAD: sorted by key so that `{a,b}` and `{b,a}` are the same context, and
 * an empty map the same as none (as in KMS).
 */
function contextAad(context: Readonly<Record<string, string>> | undefined): Buffer {
  const entries = Object.entries(context ?? {}).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return Buffer.from(JSON.stringify(entries), 'utf8');
}

function invalidCiphertext(): FakeAwsError {
  // KMS says nothing about why (wrong context, tampered blob, foreign blob): neither does the fake.
  return new FakeAwsError('InvalidCiphertextException', '');
}

/**
 * The KMS half of the fake AWS server (JSON 1.1, `TrentService.<Op>`): symmetric keys with real
 * AES-256-GCM, aliases, key states and per-key access lists.
 *
 * Ciphertext blobs are `0x01 ‖ key id (36 ASCII) ‖ IV (12) ‖ ciphertext ‖ tag (16)`, the header and
 * the canonical encryption context being AAD. Like KMS's own blobs they name their key, so Decrypt
 * works without `KeyId`; unlike them they are not portable to real KMS.
 */
export class FakeKms {
  readonly #scope: FakeAwsScope;
  readonly #keys = new Map<string, FakeKmsKey>();
  readonly #aliases = new Map<string, string>(); // alias name → key id

  constructor(scope: FakeAwsScope) {
    this.#scope = scope;
  }

  /** Creates an enabled symmetric key, optionally with an alias (`alias/` is added if missing). */
  createKey(options: { alias?: string; description?: string } = {}): { keyId: string; arn: string } {
    const alias = options.alias === undefined ? undefined : this.#aliasName(options.alias);
    if (alias !== undefined && this.#aliases.has(alias)) {
      throw new FakeAwsError(
        'AlreadyExistsException',
        `An alias with the name ${this.#aliasArn(alias)} already exists`,
      );
    }
    const keyId = randomUUID();
    const key: FakeKmsKey = {
      keyId,
      arn: `arn:aws:kms:${this.#scope.region}:${this.#scope.accountId}:key/${keyId}`,
      description: options.description ?? '',
      created: new Date(),
      material: randomBytes(32),
      state: 'Enabled',
      deletionDate: undefined,
      pendingWindowInDays: undefined,
      allowed: undefined,
    };
    this.#keys.set(keyId, key);
    if (alias !== undefined) this.#aliases.set(alias, keyId);
    return { keyId, arn: key.arn };
  }

  /** Sets a key's state directly (PendingDeletion schedules the deletion 30 days out). */
  setKeyState(ref: string, state: FakeKmsKeyState): void {
    const key = this.#resolve(ref);
    key.state = state;
    key.pendingWindowInDays = state === 'PendingDeletion' ? 30 : undefined;
    key.deletionDate = state === 'PendingDeletion' ? new Date(Date.now() + 30 * DAY_MS) : undefined;
  }

  /** Restricts a key to these access key ids or role ARNs; undefined lifts the restriction. */
  restrictKey(ref: string, principals: readonly string[] | undefined): void {
    this.#resolve(ref).allowed = principals === undefined ? undefined : new Set(principals);
  }

  /** Zeroes every key's material (the server is closing). */
  wipe(): void {
    for (const key of this.#keys.values()) key.material.fill(0);
  }

  /** Answers one `TrentService.<operation>` request. */
  handle(operation: string, request: JsonRequest, caller: FakeAwsCaller): Record<string, unknown> {
    switch (operation) {
      case 'CreateKey':
        return this.#createKey(request);
      case 'CreateAlias':
        return this.#createAlias(request, caller);
      case 'DescribeKey':
        return { KeyMetadata: this.#metadata(this.#use(request, 'KeyId', caller, operation)) };
      case 'Encrypt':
        return this.#encrypt(request, caller);
      case 'Decrypt':
        return this.#decrypt(request, caller);
      case 'ReEncrypt':
        return this.#reEncrypt(request, caller);
      case 'GenerateDataKey':
        return this.#generateDataKey(request, caller, true);
      case 'GenerateDataKeyWithoutPlaintext':
        return this.#generateDataKey(request, caller, false);
      case 'EnableKey':
      case 'DisableKey':
        return this.#enableOrDisable(request, caller, operation === 'EnableKey');
      case 'ScheduleKeyDeletion':
        return this.#scheduleKeyDeletion(request, caller);
      case 'CancelKeyDeletion':
        return this.#cancelKeyDeletion(request, caller);
      case 'ListKeys':
        return this.#listKeys(request);
      case 'ListAliases':
        return this.#listAliases(request, caller);
      default:
        throw new FakeAwsError('UnknownOperationException', `The fake KMS does not implement ${operation}`);
    }
  }

  #aliasName(alias: string): string {
    const name = alias.startsWith('alias/') ? alias : `alias/${alias}`;
    if (!ALIAS_NAME.test(name) || name.startsWith('alias/aws/')) {
      throw new FakeAwsError('InvalidAliasNameException', `Alias name ${name} is not valid`);
    }
    return name;
  }

  #aliasArn(alias: string): string {
    return `arn:aws:kms:${this.#scope.region}:${this.#scope.accountId}:${alias}`;
  }

  /** A key id, key ARN, alias name or alias ARN → the key, else NotFoundException (as KMS). */
  #resolve(ref: string): FakeKmsKey {
    let id: string | undefined = ref;
    const arn = /^arn:aws:kms:([^:]*):([^:]*):((?:key|alias)\/.+)$/.exec(ref);
    if (arn !== null) {
      if (arn[1] !== this.#scope.region || arn[2] !== this.#scope.accountId) {
        throw new FakeAwsError('NotFoundException', `Key '${ref}' does not exist`);
      }
      id = arn[3]!.startsWith('key/') ? arn[3]!.slice('key/'.length) : arn[3]!;
      if (arn[3]!.startsWith('key/') && !UUID.test(id))
        throw new FakeAwsError('NotFoundException', `Invalid keyId ${ref}`);
    }
    if (id.startsWith('alias/')) {
      const target = this.#aliases.get(id);
      if (target === undefined)
        throw new FakeAwsError('NotFoundException', `Alias ${this.#aliasArn(id)} is not found.`);
      id = target;
    } else if (!UUID.test(id)) {
      throw new FakeAwsError('NotFoundException', `Invalid keyId ${ref}`);
    }
    const key = this.#keys.get(id);
    if (key === undefined) throw new FakeAwsError('NotFoundException', `Key '${ref}' does not exist`);
    return key;
  }

  #authorize(key: FakeKmsKey, caller: FakeAwsCaller, action: string): void {
    if (key.allowed === undefined) return;
    if (caller.accessKeyId !== undefined && key.allowed.has(caller.accessKeyId)) return;
    if (caller.roleArn !== undefined && key.allowed.has(caller.roleArn)) return;
    throw new FakeAwsError(
      'AccessDeniedException',
      `User: ${caller.arn} is not authorized to perform: kms:${action} on resource: ${key.arn} because no resource-based policy allows the kms:${action} action`,
    );
  }

  /** Resolves `member`, checks the caller may use the key for `action`. */
  #use(request: JsonRequest, member: string, caller: FakeAwsCaller, action: string): FakeKmsKey {
    const key = this.#resolve(requiredString(request, member));
    this.#authorize(key, caller, action);
    return key;
  }

  /** Cryptographic operations need an enabled key (DisabledException / KMSInvalidStateException). */
  #requireEnabled(key: FakeKmsKey): void {
    if (key.state === 'Disabled') throw new FakeAwsError('DisabledException', `${key.arn} is disabled.`);
    if (key.state === 'PendingDeletion') {
      throw new FakeAwsError('KMSInvalidStateException', `${key.arn} is pending deletion.`);
    }
  }

  #requireSymmetric(request: JsonRequest, member: string): void {
    const algorithm = optionalString(request, member);
    if (algorithm !== undefined && algorithm !== ALGORITHM) {
      throw new FakeAwsError('InvalidKeyUsageException', `${algorithm} is not supported by a symmetric key`);
    }
  }

  #metadata(key: FakeKmsKey): Record<string, unknown> {
    return {
      AWSAccountId: this.#scope.accountId,
      KeyId: key.keyId,
      Arn: key.arn,
      CreationDate: epochSeconds(key.created),
      Enabled: key.state === 'Enabled',
      Description: key.description,
      KeyUsage: 'ENCRYPT_DECRYPT',
      KeyState: key.state,
      ...(key.deletionDate === undefined
        ? {}
        : {
            DeletionDate: epochSeconds(key.deletionDate),
            PendingDeletionWindowInDays: key.pendingWindowInDays,
          }),
      Origin: 'AWS_KMS',
      KeyManager: 'CUSTOMER',
      CustomerMasterKeySpec: ALGORITHM,
      KeySpec: ALGORITHM,
      EncryptionAlgorithms: [ALGORITHM],
      MultiRegion: false,
    };
  }

  #seal(key: FakeKmsKey, plaintext: Buffer, context: Record<string, string> | undefined): Buffer {
    const header = Buffer.alloc(HEADER_BYTES);
    header[0] = BLOB_VERSION;
    header.write(key.keyId, 1, 'latin1');
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv('aes-256-gcm', key.material, iv);
    cipher.setAAD(Buffer.concat([header, contextAad(context)]));
    const body = Buffer.concat([cipher.update(plaintext), cipher.final()]);
    return Buffer.concat([header, iv, body, cipher.getAuthTag()]);
  }

  /**
   * Opens a blob: `expectedKeyRef` (the request's KeyId) must name the key that sealed it
   * (IncorrectKeyException); the key must be usable; a tampered blob or another context is
   * InvalidCiphertextException.
   */
  #open(
    blob: Buffer,
    context: Record<string, string> | undefined,
    expectedKeyRef: string | undefined,
    caller: FakeAwsCaller,
    action: string,
  ): ResolvedBlob {
    if (blob.length < HEADER_BYTES + IV_BYTES + TAG_BYTES || blob[0] !== BLOB_VERSION)
      throw invalidCiphertext();
    const key = this.#keys.get(blob.toString('latin1', 1, HEADER_BYTES));
    if (expectedKeyRef !== undefined) {
      const expected = this.#resolve(expectedKeyRef);
      if (key === undefined || expected.keyId !== key.keyId) {
        throw new FakeAwsError(
          'IncorrectKeyException',
          'The key ID in the request does not identify a KMS key that can perform this operation.',
        );
      }
    }
    if (key === undefined) throw invalidCiphertext();
    this.#authorize(key, caller, action);
    this.#requireEnabled(key);
    const iv = blob.subarray(HEADER_BYTES, HEADER_BYTES + IV_BYTES);
    const decipher = createDecipheriv('aes-256-gcm', key.material, iv);
    decipher.setAAD(Buffer.concat([blob.subarray(0, HEADER_BYTES), contextAad(context)]));
    decipher.setAuthTag(blob.subarray(blob.length - TAG_BYTES));
    try {
      const body = blob.subarray(HEADER_BYTES + IV_BYTES, blob.length - TAG_BYTES);
      return { key, plaintext: Buffer.concat([decipher.update(body), decipher.final()]) };
    } catch {
      throw invalidCiphertext();
    }
  }

  #createKey(request: JsonRequest): Record<string, unknown> {
    for (const member of ['KeySpec', 'CustomerMasterKeySpec']) {
      const spec = optionalString(request, member);
      if (spec !== undefined && spec !== ALGORITHM) {
        throw new FakeAwsError(
          'ValidationException',
          `The fake KMS supports only ${ALGORITHM} keys, not ${spec}`,
        );
      }
    }
    const usage = optionalString(request, 'KeyUsage');
    if (usage !== undefined && usage !== 'ENCRYPT_DECRYPT') {
      throw new FakeAwsError(
        'ValidationException',
        `The fake KMS supports only ENCRYPT_DECRYPT keys, not ${usage}`,
      );
    }
    const description = optionalString(request, 'Description');
    const { keyId } = this.createKey(description === undefined ? {} : { description });
    return { KeyMetadata: this.#metadata(this.#keys.get(keyId)!) };
  }

  #createAlias(request: JsonRequest, caller: FakeAwsCaller): Record<string, unknown> {
    const alias = requiredString(request, 'AliasName');
    if (!alias.startsWith('alias/')) {
      throw new FakeAwsError('ValidationException', `Alias must start with the prefix "alias/"`);
    }
    const name = this.#aliasName(alias);
    const key = this.#use(request, 'TargetKeyId', caller, 'CreateAlias');
    if (key.state === 'PendingDeletion') {
      throw new FakeAwsError('KMSInvalidStateException', `${key.arn} is pending deletion.`);
    }
    if (this.#aliases.has(name)) {
      throw new FakeAwsError(
        'AlreadyExistsException',
        `An alias with the name ${this.#aliasArn(name)} already exists`,
      );
    }
    this.#aliases.set(name, key.keyId);
    return {};
  }

  #encrypt(request: JsonRequest, caller: FakeAwsCaller): Record<string, unknown> {
    const key = this.#use(request, 'KeyId', caller, 'Encrypt');
    const plaintext = requiredBlob(request, 'Plaintext');
    if (plaintext.length < 1 || plaintext.length > 4096) {
      throw new FakeAwsError(
        'ValidationException',
        "1 validation error detected: Value at 'plaintext' failed to satisfy constraint: Member must have length between 1 and 4096",
      );
    }
    this.#requireSymmetric(request, 'EncryptionAlgorithm');
    this.#requireEnabled(key);
    const blob = this.#seal(key, plaintext, optionalStringMap(request, 'EncryptionContext'));
    plaintext.fill(0);
    return { CiphertextBlob: blob.toString('base64'), KeyId: key.arn, EncryptionAlgorithm: ALGORITHM };
  }

  #decrypt(request: JsonRequest, caller: FakeAwsCaller): Record<string, unknown> {
    this.#requireSymmetric(request, 'EncryptionAlgorithm');
    const { key, plaintext } = this.#open(
      requiredBlob(request, 'CiphertextBlob'),
      optionalStringMap(request, 'EncryptionContext'),
      optionalString(request, 'KeyId'),
      caller,
      'Decrypt',
    );
    const encoded = plaintext.toString('base64');
    plaintext.fill(0);
    return { KeyId: key.arn, Plaintext: encoded, EncryptionAlgorithm: ALGORITHM };
  }

  #reEncrypt(request: JsonRequest, caller: FakeAwsCaller): Record<string, unknown> {
    this.#requireSymmetric(request, 'SourceEncryptionAlgorithm');
    this.#requireSymmetric(request, 'DestinationEncryptionAlgorithm');
    const destination = this.#use(request, 'DestinationKeyId', caller, 'ReEncryptTo');
    const source = this.#open(
      requiredBlob(request, 'CiphertextBlob'),
      optionalStringMap(request, 'SourceEncryptionContext'),
      optionalString(request, 'SourceKeyId'),
      caller,
      'ReEncryptFrom',
    );
    try {
      this.#requireEnabled(destination);
      const blob = this.#seal(
        destination,
        source.plaintext,
        optionalStringMap(request, 'DestinationEncryptionContext'),
      );
      return {
        CiphertextBlob: blob.toString('base64'),
        SourceKeyId: source.key.arn,
        KeyId: destination.arn,
        SourceEncryptionAlgorithm: ALGORITHM,
        DestinationEncryptionAlgorithm: ALGORITHM,
      };
    } finally {
      source.plaintext.fill(0);
    }
  }

  #generateDataKey(
    request: JsonRequest,
    caller: FakeAwsCaller,
    withPlaintext: boolean,
  ): Record<string, unknown> {
    const action = withPlaintext ? 'GenerateDataKey' : 'GenerateDataKeyWithoutPlaintext';
    const key = this.#use(request, 'KeyId', caller, action);
    const spec = optionalString(request, 'KeySpec');
    const numberOfBytes = optionalInteger(request, 'NumberOfBytes');
    if ((spec === undefined) === (numberOfBytes === undefined)) {
      throw new FakeAwsError('ValidationException', 'Please specify either number of bytes or key spec.');
    }
    let length: number;
    if (spec === 'AES_256') length = 32;
    else if (spec === 'AES_128') length = 16;
    else if (spec !== undefined) throw new FakeAwsError('ValidationException', `Invalid KeySpec ${spec}`);
    else if (numberOfBytes! < 1 || numberOfBytes! > 1024) {
      throw new FakeAwsError('ValidationException', 'NumberOfBytes must be between 1 and 1024');
    } else length = numberOfBytes!;
    this.#requireEnabled(key);
    const plaintext = randomBytes(length);
    try {
      const blob = this.#seal(key, plaintext, optionalStringMap(request, 'EncryptionContext'));
      return {
        CiphertextBlob: blob.toString('base64'),
        ...(withPlaintext ? { Plaintext: plaintext.toString('base64') } : {}),
        KeyId: key.arn,
      };
    } finally {
      plaintext.fill(0);
    }
  }

  #enableOrDisable(request: JsonRequest, caller: FakeAwsCaller, enable: boolean): Record<string, unknown> {
    const key = this.#use(request, 'KeyId', caller, enable ? 'EnableKey' : 'DisableKey');
    if (key.state === 'PendingDeletion') {
      throw new FakeAwsError('KMSInvalidStateException', `${key.arn} is pending deletion.`);
    }
    key.state = enable ? 'Enabled' : 'Disabled';
    return {};
  }

  #scheduleKeyDeletion(request: JsonRequest, caller: FakeAwsCaller): Record<string, unknown> {
    const key = this.#use(request, 'KeyId', caller, 'ScheduleKeyDeletion');
    const days = optionalInteger(request, 'PendingWindowInDays') ?? 30;
    if (days < 7 || days > 30) {
      throw new FakeAwsError(
        'ValidationException',
        "1 validation error detected: Value at 'pendingWindowInDays' failed to satisfy constraint: Member must have value between 7 and 30",
      );
    }
    if (key.state === 'PendingDeletion') {
      throw new FakeAwsError('KMSInvalidStateException', `${key.arn} is pending deletion.`);
    }
    key.state = 'PendingDeletion';
    key.pendingWindowInDays = days;
    key.deletionDate = new Date(Date.now() + days * DAY_MS);
    return {
      KeyId: key.arn,
      DeletionDate: epochSeconds(key.deletionDate),
      KeyState: key.state,
      PendingWindowInDays: days,
    };
  }

  #cancelKeyDeletion(request: JsonRequest, caller: FakeAwsCaller): Record<string, unknown> {
    const key = this.#use(request, 'KeyId', caller, 'CancelKeyDeletion');
    if (key.state !== 'PendingDeletion') {
      throw new FakeAwsError('KMSInvalidStateException', `${key.arn} is not pending deletion.`);
    }
    // As in KMS, a key whose deletion is cancelled comes back disabled.
    key.state = 'Disabled';
    key.deletionDate = undefined;
    key.pendingWindowInDays = undefined;
    return { KeyId: key.arn };
  }

  #page<T>(request: JsonRequest, items: readonly T[]): { page: T[]; next: Record<string, unknown> } {
    const limit = optionalInteger(request, 'Limit') ?? 100;
    if (limit < 1 || limit > 1000)
      throw new FakeAwsError('ValidationException', 'Limit must be between 1 and 1000');
    const marker = optionalString(request, 'Marker');
    const start = marker === undefined ? 0 : Number.parseInt(marker, 10);
    if (!Number.isInteger(start) || start < 0 || start > items.length) {
      throw new FakeAwsError('InvalidMarkerException', 'The marker is not valid');
    }
    const end = Math.min(items.length, start + limit);
    return {
      page: items.slice(start, end),
      next: end < items.length ? { NextMarker: String(end), Truncated: true } : { Truncated: false },
    };
  }

  #listKeys(request: JsonRequest): Record<string, unknown> {
    const { page, next } = this.#page(request, [...this.#keys.values()]);
    return { Keys: page.map((key) => ({ KeyId: key.keyId, KeyArn: key.arn })), ...next };
  }

  #listAliases(request: JsonRequest, caller: FakeAwsCaller): Record<string, unknown> {
    const keyRef = optionalString(request, 'KeyId');
    const only = keyRef === undefined ? undefined : this.#use(request, 'KeyId', caller, 'ListAliases').keyId;
    const aliases = [...this.#aliases].filter(([, keyId]) => only === undefined || keyId === only);
    const { page, next } = this.#page(request, aliases);
    return {
      Aliases: page.map(([name, keyId]) => ({
        AliasName: name,
        AliasArn: this.#aliasArn(name),
        TargetKeyId: keyId,
      })),
      ...next,
    };
  }
}
