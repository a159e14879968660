import { randomInt } from 'node:crypto';

/** The three services the fake AWS server speaks. */
export type FakeAwsService = 'kms' | 'secretsmanager' | 'sts';

/** Who signed a request, as the fake sees it (signatures are not verified). */
export interface FakeAwsCaller {
  /** The access key id of the SigV4 `Credential=` scope, undefined when the request was unsigned. */
  readonly accessKeyId: string | undefined;
  /** The caller's ARN as AWS names it in AccessDenied messages and GetCallerIdentity. */
  readonly arn: string;
  /** The role whose temporary credentials signed the request (issued by the fake's AssumeRole). */
  readonly roleArn?: string;
  /** The session name those temporary credentials were issued for. */
  readonly roleSessionName?: string;
}

/** Where the fake lives: every ARN it hands out names this partition, region and account. */
export interface FakeAwsScope {
  readonly region: string;
  readonly accountId: string;
}

/**
 * An error answer of a service, rendered in the service's protocol (JSON `__type` for KMS and
 * Secrets Manager, `<ErrorResponse>` XML for STS) so the SDK throws the matching exception class.
 */
export class FakeAwsError extends Error {
  constructor(
    /** The error code (`__type` / `<Code>`), e.g. `NotFoundException`. */
    readonly type: string,
    message: string,
    /** HTTP status; AWS answers most client errors with 400. */
    readonly status = 400,
  ) {
    super(message);
    this.name = type;
  }
}

/** A JSON 1.1 request body: an object whose members are checked as they are read. */
export type JsonRequest = Readonly<Record<string, unknown>>;

/** Parses a JSON 1.1 body; anything but an object is a `SerializationException`, as AWS answers. */
export function parseJsonRequest(body: Buffer): JsonRequest {
  if (body.length === 0) return {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(body.toString('utf8'));
  } catch {
    throw new FakeAwsError('SerializationException', 'Malformed JSON request body');
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new FakeAwsError('SerializationException', 'Start of structure expected');
  }
  return parsed as JsonRequest;
}

function memberName(name: string): string {
  return name.charAt(0).toLowerCase() + name.slice(1);
}

/** A required string member; missing is the `ValidationException` AWS's JSON services give. */
export function requiredString(request: JsonRequest, name: string): string {
  const value = optionalString(request, name);
  if (value === undefined || value === '') {
    throw new FakeAwsError(
      'ValidationException',
      `1 validation error detected: Value null at '${memberName(name)}' failed to satisfy constraint: Member must not be null`,
    );
  }
  return value;
}

/** An optional string member; another JSON type is a `SerializationException`. */
export function optionalString(request: JsonRequest, name: string): string | undefined {
  const value = request[name];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'string') throw new FakeAwsError('SerializationException', `${name} must be a string`);
  return value;
}

/** An optional integer member. */
export function optionalInteger(request: JsonRequest, name: string): number | undefined {
  const value = request[name];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'number' || !Number.isInteger(value)) {
    throw new FakeAwsError('SerializationException', `${name} must be an integer`);
  }
  return value;
}

/** An optional blob member (base64 in JSON 1.1). */
export function optionalBlob(request: JsonRequest, name: string): Buffer | undefined {
  const value = optionalString(request, name);
  if (value === undefined) return undefined;
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(value) || value.length % 4 !== 0) {
    throw new FakeAwsError('SerializationException', `${name} is not valid base64`);
  }
  return Buffer.from(value, 'base64');
}

/** A required blob member. */
export function requiredBlob(request: JsonRequest, name: string): Buffer {
  const value = optionalBlob(request, name);
  if (value === undefined) requiredString(request, name); // throws the ValidationException
  return value as Buffer;
}

/** An optional string-to-string map member (KMS encryption context). */
export function optionalStringMap(request: JsonRequest, name: string): Record<string, string> | undefined {
  const value = request[name];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'object' || Array.isArray(value)) {
    throw new FakeAwsError('SerializationException', `${name} must be a map`);
  }
  const map: Record<string, string> = {};
  for (const [key, entry] of Object.entries(value)) {
    if (typeof entry !== 'string')
      throw new FakeAwsError('SerializationException', `${name} values must be strings`);
    map[key] = entry;
  }
  return map;
}

/** An optional list of strings member. */
export function optionalStringList(request: JsonRequest, name: string): string[] | undefined {
  const value = request[name];
  if (value === undefined || value === null) return undefined;
  if (!Array.isArray(value) || value.some((entry) => typeof entry !== 'string')) {
    throw new FakeAwsError('SerializationException', `${name} must be a list of strings`);
  }
  return value as string[];
}

const UPPER_ALNUM = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
const ALNUM = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';

/** `length` random characters from `alphabet` (ids, not secrets: the fake hands out test credentials). */
export function randomChars(length: number, alphabet: string = ALNUM): string {
  let out = '';
  for (let i = 0; i < length; i++) out += alphabet.charAt(randomInt(alphabet.length));
  return out;
}

/** An AWS-style unique id: `prefix` + 16 upper-case base32 characters (`ASIA…`, `AROA…`). */
export function awsUniqueId(prefix: string): string {
  return prefix + randomChars(16, UPPER_ALNUM);
}

/** Seconds since the epoch, the timestamp format of JSON 1.1 responses. */
export function epochSeconds(date: Date): number {
  return date.getTime() / 1000;
}
