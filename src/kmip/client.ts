/**
 * A small KMIP client over TLS with client certificates (`node:tls`; there is no maintained KMIP
 * package on npm): the operations the `kmip` provider needs — Create (AES), Register (Secret
 * Data), Locate (by Name), Get, Get Attributes, Activate, Revoke, Destroy, Encrypt and Decrypt —
 * and batches of them in one message.
 *
 * Framing: a request is one TTLV Request Message; the reply is read by its 8-byte header, which
 * gives its length (bounded by `maxResponseBytes`). One request is in flight per connection; a
 * small pool (`poolSize`) of connections serves concurrent calls. A call's `signal` (its deadline)
 * destroys the connection it is using, so a server that never answers never hangs a caller, and
 * every call without a signal gets `requestTimeoutMs`.
 *
 * Errors are kms-envelope's typed errors, mapped from KMIP Result Reasons ({@link kmipResultError})
 * and from the socket and TLS layer; the server's own result travels as `cause`
 * ({@link KmipResultError}). Key material never appears in a message.
 *
 * Security: request frames (which hold a plaintext to encrypt or a secret to register) and
 * response frames (which hold a fetched key or a decrypted plaintext) are zeroed as soon as they
 * have been written or parsed; what an operation returns is a fresh copy the caller owns and
 * wipes. The client private key is used once, to build the TLS context, and not kept.
 *
 * @module
 */
import { isIP } from 'node:net';
import { createSecureContext, type SecureContext, type TLSSocket, connect as tlsConnect } from 'node:tls';
import {
  AccessDeniedError,
  ConfigError,
  DeadlineExceededError,
  type ErrorContext,
  KeyDisabledError,
  KeyNotFoundError,
  KmsEnvelopeError,
  ProviderUnavailableError,
  UnsupportedAlgorithmError,
  UnwrapFailedError,
} from '../errors.js';
import { isAbort } from '../providers/support.js';
import {
  BatchErrorContinuationOption,
  BlockCipherMode,
  CryptographicAlgorithm,
  KeyFormatType,
  NameType,
  ObjectType,
  OPERATION_NAMES,
  Operation,
  RESULT_REASON_NAMES,
  ResultReason,
  ResultStatus,
  RevocationReasonCode,
  SecretDataType,
  Tag,
  UsageMask,
} from './tags.js';
import {
  byteString,
  decodeTtlv,
  encodeTtlv,
  enumeration,
  findAll,
  findOne,
  integer,
  readTtlvHeader,
  requireOne,
  structure,
  TTLV_HEADER_LENGTH,
  TtlvError,
  type TtlvItem,
  textString,
} from './ttlv.js';

/** A KMIP protocol version. */
export interface KmipVersion {
  readonly major: number;
  readonly minor: number;
}

/** KMIP 1.2: Encrypt/Decrypt exist; no authenticated-encryption fields. */
export const KMIP_1_2: KmipVersion = { major: 1, minor: 2 };
/** KMIP 1.4: adds Authenticated Encryption Additional Data and Tag (AES-GCM with AAD). */
export const KMIP_1_4: KmipVersion = { major: 1, minor: 4 };

/** Options of {@link KmipClient}. */
export interface KmipClientOptions {
  /** Server host name or IP address. */
  readonly host: string;
  /** Server port (KMIP's registered port is 5696). */
  readonly port: number;
  /** CA certificate(s), PEM, that issued the server's certificate (default: Node's root store). */
  readonly ca?: string | Buffer | readonly (string | Buffer)[];
  /** The client certificate (chain), PEM. */
  readonly cert: string | Buffer;
  /**
   * The client private key, PEM. Used once, to build the TLS context, and not kept: wipe your
   * copy after the constructor returns.
   */
  readonly key: Buffer;
  /** TLS server name (SNI and the name the server certificate must carry; default `host` unless it is an IP). */
  readonly servername?: string;
  /** Protocol version sent in every request (default {@link KMIP_1_2}). */
  readonly protocolVersion?: KmipVersion;
  /** Connections kept open at most (default 2); more concurrent calls wait for one. */
  readonly poolSize?: number;
  /** Deadline of a TLS connect (default 10 s). */
  readonly connectTimeoutMs?: number;
  /** Deadline of a call that has no `signal` (default 30 s). */
  readonly requestTimeoutMs?: number;
  /** Largest response accepted (default 1 MiB); also sent as Maximum Response Size. */
  readonly maxResponseBytes?: number;
  /** An idle connection is closed after this long (default 30 s). */
  readonly idleTimeoutMs?: number;
}

/** Options of one call. */
export interface KmipCallOptions {
  /** The call's deadline: when it aborts, the connection is destroyed and the call fails. */
  readonly signal?: AbortSignal;
  /** Names the index, slot and provider in errors. */
  readonly where?: ErrorContext;
}

/** A failed KMIP batch item, as the server reported it. Travels as the `cause` of typed errors. */
export class KmipResultError extends Error {
  /** Result Status (1 Operation Failed, 2 Pending, 3 Undone). */
  readonly resultStatus: number;
  /** Result Reason, when the server gave one. */
  readonly resultReason: number | undefined;
  /** The server's Result Message (truncated, control characters removed). */
  readonly resultMessage: string;
  /** The operation the item was for. */
  readonly operation: number;
  constructor(operation: number, status: number, reason: number | undefined, message: string) {
    const reasonName =
      reason === undefined ? 'no reason' : (RESULT_REASON_NAMES[reason] ?? `reason 0x${reason.toString(16)}`);
    super(
      `KMIP ${OPERATION_NAMES[operation] ?? operation} failed: ${reasonName}${message ? `: ${message}` : ''}`,
    );
    this.name = 'KmipResultError';
    this.operation = operation;
    this.resultStatus = status;
    this.resultReason = reason;
    this.resultMessage = message;
  }
}

const clean = (text: string) =>
  Array.from(text, (c) => (c.charCodeAt(0) < 0x20 || c.charCodeAt(0) === 0x7f ? ' ' : c))
    .join('')
    .slice(0, 200);

/**
 * Maps a failed KMIP result to kms-envelope's typed error: Item Not Found → `KeyNotFoundError`;
 * Permission Denied, Authentication Not Successful → `AccessDeniedError`; Wrong Key Lifecycle
 * State, Object Archived → `KeyDisabledError`; Operation or Feature Not Supported → `ConfigError`;
 * unsupported cryptographic parameters or key format → `UnsupportedAlgorithmError`; a
 * Cryptographic Failure or General Failure of a Decrypt → `UnwrapFailedError` (PyKMIP reports a
 * GCM tag mismatch as General Failure); a General Failure elsewhere → `ProviderUnavailableError`
 * (retryable); an invalid request → `ConfigError`.
 */
export function kmipResultError(result: KmipResultError, where: ErrorContext = {}): KmsEnvelopeError {
  const ctx = { ...where, cause: result };
  const reasonName =
    result.resultReason === undefined
      ? 'no reason'
      : (RESULT_REASON_NAMES[result.resultReason] ?? 'unknown reason');
  const what = `KMIP ${OPERATION_NAMES[result.operation] ?? 'operation'}`;
  const said = result.resultMessage ? ` (${reasonName}: ${result.resultMessage})` : ` (${reasonName})`;
  switch (result.resultReason) {
    case ResultReason.ItemNotFound:
    case ResultReason.ObjectNotFound:
    case ResultReason.ObjectDestroyed:
      return new KeyNotFoundError(`the KMIP object was not found${said}`, ctx);
    case ResultReason.PermissionDenied:
    case ResultReason.NotAuthorised:
    case ResultReason.AuthenticationNotSuccessful:
      return new AccessDeniedError(`the KMIP server refused ${what}${said}`, ctx);
    case ResultReason.WrongKeyLifecycleState:
    case ResultReason.ObjectArchived:
      return new KeyDisabledError(`the KMIP object cannot be used in its present state${said}`, ctx);
    case ResultReason.OperationNotSupported:
    case ResultReason.FeatureNotSupported:
    case ResultReason.UnsupportedProtocolVersion:
      return new ConfigError(`the KMIP server does not support ${what}${said}`, ctx);
    case ResultReason.UnsupportedCryptographicParameters:
    case ResultReason.BadCryptographicParameters:
    case ResultReason.KeyFormatTypeNotSupported:
    case ResultReason.KeyCompressionTypeNotSupported:
      return new UnsupportedAlgorithmError(
        `the KMIP server does not support these parameters for ${what}${said}`,
        ctx,
      );
    case ResultReason.CryptographicFailure:
    case ResultReason.GeneralFailure:
      if (result.operation === Operation.Decrypt)
        return new UnwrapFailedError('the KMIP server could not decrypt', ctx);
      if (result.resultReason === ResultReason.GeneralFailure)
        return new ProviderUnavailableError(`the KMIP server failed ${what}${said}`, ctx);
      return new KmsEnvelopeError(`${what} failed${said}`, ctx);
    case ResultReason.ServerLimitExceeded:
      return new ProviderUnavailableError(`the KMIP server is over a limit${said}`, ctx);
    case ResultReason.InvalidMessage:
    case ResultReason.InvalidField:
    case ResultReason.MissingData:
    case ResultReason.IllegalOperation:
    case ResultReason.ResponseTooLarge:
      return new ConfigError(`the KMIP server refused ${what} as invalid${said}`, ctx);
    default:
      return new KmsEnvelopeError(`${what} failed${said}`, ctx);
  }
}

const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ERR_SOCKET_CLOSED',
  'KMIP_CONNECTION_CLOSED',
]);

/** Certificate checks of the *server's* certificate that failed on this side. */
const SERVER_CERT_CODES = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_SIGNATURE_FAILURE',
  'CERT_REVOKED',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'INVALID_CA',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

/**
 * Maps a socket or TLS failure to a typed error: the server refusing the client certificate (a
 * TLS alert such as unknown CA, bad or unsupported certificate, access denied) →
 * `AccessDeniedError`; the server's certificate failing verification here → `ConfigError`
 * (check `ca` and `servername`); an abort → `DeadlineExceededError`; refused, reset or closed
 * connections → `ProviderUnavailableError` (retryable).
 */
export function kmipConnectionError(
  err: unknown,
  where: ErrorContext,
  signal?: AbortSignal,
): KmsEnvelopeError {
  if (err instanceof KmsEnvelopeError) return err;
  const code = String((err as { code?: unknown } | null)?.code ?? '');
  const ctx = { ...where, cause: err };
  // `signal` is the call's deadline: the caller's, or the client's own `requestTimeoutMs`.
  if (isAbort(err, signal) || code === 'ABORT_ERR')
    return new DeadlineExceededError('the KMIP call was aborted (deadline)', ctx);
  if (
    /ALERT_(UNKNOWN_CA|BAD_CERTIFICATE|CERTIFICATE_UNKNOWN|CERTIFICATE_REQUIRED|ACCESS_DENIED|UNSUPPORTED_CERTIFICATE|CERTIFICATE_EXPIRED|CERTIFICATE_REVOKED|DECRYPT_ERROR)/.test(
      code,
    )
  ) {
    return new AccessDeniedError(`the KMIP server refused the client certificate (TLS alert ${code})`, ctx);
  }
  if (SERVER_CERT_CODES.has(code)) {
    return new ConfigError(
      `the KMIP server's certificate was not accepted (${code}): check the slot's "ca" and "servername"`,
      ctx,
    );
  }
  if (/^ERR_SSL_|^ERR_TLS_|^ERR_OSSL_/.test(code)) {
    return new ConfigError(`the TLS handshake with the KMIP server failed (${code})`, ctx);
  }
  if (NETWORK_CODES.has(code))
    return new ProviderUnavailableError(`the KMIP server could not be reached (${code})`, ctx);
  return new ProviderUnavailableError(
    `the KMIP connection failed (${code || (err as Error)?.message || String(err)})`,
    ctx,
  );
}

// --- messages ----------------------------------------------------------------------------------

/** One operation of a request. */
export interface KmipBatchItem {
  readonly operation: Operation;
  /** The Request Payload's fields. */
  readonly payload: readonly TtlvItem[];
}

/** One operation's result: its Response Payload (on success) or the failure. */
export interface KmipBatchResult {
  readonly operation: number;
  /** The Response Payload; a view into the response frame, valid only inside the `parse` callback. */
  readonly payload: TtlvItem | undefined;
  readonly failure: KmipResultError | undefined;
}

/** Options of {@link buildRequestMessage}. */
export interface KmipRequestOptions {
  /** Sent as Maximum Response Size when given. */
  readonly maxResponseSize?: number;
}

/**
 * Encodes a Request Message: the header (Protocol Version, Maximum Response Size, for batches
 * Batch Error Continuation Option "Continue", Batch Count) and one Batch Item per operation (with a
 * Unique Batch Item ID when there are several), fields in the order KMIP 1.x prescribes.
 * @throws TtlvError when a field cannot be encoded.
 */
export function buildRequestMessage(
  version: KmipVersion,
  items: readonly KmipBatchItem[],
  options: KmipRequestOptions = {},
): Buffer {
  const header: TtlvItem[] = [
    structure(Tag.ProtocolVersion, [
      integer(Tag.ProtocolVersionMajor, version.major),
      integer(Tag.ProtocolVersionMinor, version.minor),
    ]),
  ];
  if (options.maxResponseSize !== undefined)
    header.push(integer(Tag.MaximumResponseSize, options.maxResponseSize));
  if (items.length > 1)
    header.push(enumeration(Tag.BatchErrorContinuationOption, BatchErrorContinuationOption.Continue));
  header.push(integer(Tag.BatchCount, items.length));
  const batch = items.map((item, i) =>
    structure(Tag.BatchItem, [
      enumeration(Tag.Operation, item.operation),
      ...(items.length > 1 ? [byteString(Tag.UniqueBatchItemId, Uint8Array.of(i + 1))] : []),
      structure(Tag.RequestPayload, item.payload),
    ]),
  );
  return encodeTtlv(structure(Tag.RequestMessage, [structure(Tag.RequestHeader, header), ...batch]));
}

/**
 * The protocol version a Response Message's header says the server answered in, or `undefined`
 * when the header has none (a malformed response; {@link parseResponseMessage} refuses it).
 */
export function responseProtocolVersion(message: TtlvItem): KmipVersion | undefined {
  const header =
    message.tag === Tag.ResponseMessage ? findOne(message, Tag.ResponseHeader, 'Structure') : undefined;
  const version = header === undefined ? undefined : findOne(header, Tag.ProtocolVersion, 'Structure');
  if (version === undefined) return undefined;
  const major = findOne(version, Tag.ProtocolVersionMajor, 'Integer')?.value;
  const minor = findOne(version, Tag.ProtocolVersionMinor, 'Integer')?.value;
  return major === undefined || minor === undefined ? undefined : { major, minor };
}

/** Whether `got` is an older KMIP version than `wanted` (another major counts as older). */
export function olderKmipVersion(got: KmipVersion, wanted: KmipVersion): boolean {
  return got.major !== wanted.major || got.minor < wanted.minor;
}

/**
 * Reads a decoded Response Message into one result per requested operation (matched by Unique
 * Batch Item ID when several were sent). A single failure without an operation (the server could
 * not read the request) is the result of every operation.
 * @throws TtlvError for a message that is not a well-formed response to `operations`.
 */
export function parseResponseMessage(message: TtlvItem, operations: readonly number[]): KmipBatchResult[] {
  if (message.tag !== Tag.ResponseMessage) throw new TtlvError('not a KMIP Response Message');
  requireOne(message, Tag.ResponseHeader, 'Structure');
  const items = findAll(message, Tag.BatchItem);
  const results = items.map((item) => {
    const status = requireOne(item, Tag.ResultStatus, 'Enumeration').value;
    const operation = findOne(item, Tag.Operation, 'Enumeration')?.value;
    const id = findOne(item, Tag.UniqueBatchItemId, 'ByteString')?.value;
    const payload = findOne(item, Tag.ResponsePayload, 'Structure');
    const failure =
      status === ResultStatus.Success
        ? undefined
        : new KmipResultError(
            operation ?? operations[0] ?? 0,
            status,
            findOne(item, Tag.ResultReason, 'Enumeration')?.value,
            clean(findOne(item, Tag.ResultMessage, 'TextString')?.value ?? ''),
          );
    return { operation, id, status, payload, failure };
  });
  if (results.length === 1 && results[0]!.failure !== undefined && results[0]!.operation === undefined) {
    const only = results[0]!.failure;
    return operations.map((operation) => ({
      operation,
      payload: undefined,
      failure: new KmipResultError(operation, only.resultStatus, only.resultReason, only.resultMessage),
    }));
  }
  return operations.map((operation, i) => {
    const found =
      operations.length === 1
        ? results.length === 1
          ? results[0]
          : undefined
        : results.find((r) => r.id !== undefined && r.id.length === 1 && r.id[0] === i + 1);
    if (found === undefined) {
      // Batch Error Continuation "Continue" answers every item; a server that stopped after a
      // failure leaves the rest unanswered: they did not happen.
      return {
        operation,
        payload: undefined,
        failure: new KmipResultError(
          operation,
          ResultStatus.OperationUndone,
          undefined,
          'not processed by the server',
        ),
      };
    }
    if (found.operation !== undefined && found.operation !== operation)
      throw new TtlvError(`a result for operation ${found.operation} answers operation ${operation}`);
    if (found.failure === undefined && found.payload === undefined && operation !== Operation.Activate)
      throw new TtlvError(`a successful ${OPERATION_NAMES[operation] ?? operation} has no Response Payload`);
    return { operation, payload: found.payload, failure: found.failure };
  });
}

// --- payload builders ------------------------------------------------------------------------

const attribute = (name: string, value: TtlvItem): TtlvItem =>
  structure(Tag.Attribute, [
    textString(Tag.AttributeName, name),
    { ...value, tag: Tag.AttributeValue } as TtlvItem,
  ]);

const nameAttribute = (name: string): TtlvItem =>
  attribute(
    'Name',
    structure(Tag.AttributeValue, [
      textString(Tag.NameValue, name),
      enumeration(Tag.NameType, NameType.UninterpretedTextString),
    ]),
  );

const uid = (uniqueIdentifier: string) => textString(Tag.UniqueIdentifier, uniqueIdentifier);

/** Options of {@link KmipClient.createSymmetricKey}. */
export interface KmipCreateOptions {
  /** Name attribute (what `name:<Name>` slots Locate). */
  readonly name?: string;
  /** Key length in bits (default 256). */
  readonly lengthBits?: number;
  /** Cryptographic Usage Mask (default Encrypt | Decrypt). */
  readonly usageMask?: number;
  /** Cryptographic Algorithm (default AES). */
  readonly algorithm?: number;
}

/** The Create payload of a symmetric key (exported for the vector tests). */
export function createPayload(options: KmipCreateOptions = {}): TtlvItem[] {
  const attributes = [
    attribute('Cryptographic Algorithm', enumeration(0, options.algorithm ?? CryptographicAlgorithm.Aes)),
    attribute('Cryptographic Length', integer(0, options.lengthBits ?? 256)),
    attribute(
      'Cryptographic Usage Mask',
      integer(0, options.usageMask ?? UsageMask.Encrypt | UsageMask.Decrypt),
    ),
  ];
  if (options.name !== undefined) attributes.push(nameAttribute(options.name));
  return [enumeration(Tag.ObjectType, ObjectType.SymmetricKey), structure(Tag.TemplateAttribute, attributes)];
}

/** Options of {@link KmipClient.locate}. */
export interface KmipLocateOptions {
  /** The Name to look for. */
  readonly name: string;
  /** Only objects of this Object Type. */
  readonly objectType?: number;
  /** Only objects in this State. */
  readonly state?: number;
  /** At most this many identifiers (default: the server's choice). */
  readonly maximumItems?: number;
}

/** The Locate payload (exported for the vector tests). */
export function locatePayload(options: KmipLocateOptions): TtlvItem[] {
  const out: TtlvItem[] = [];
  if (options.maximumItems !== undefined) out.push(integer(Tag.MaximumItems, options.maximumItems));
  if (options.objectType !== undefined)
    out.push(attribute('Object Type', enumeration(0, options.objectType)));
  out.push(nameAttribute(options.name));
  if (options.state !== undefined) out.push(attribute('State', enumeration(0, options.state)));
  return out;
}

/** A key or secret fetched with Get. */
export interface KmipManagedSecret {
  readonly uniqueIdentifier: string;
  /** Object Type (2 Symmetric Key, 7 Secret Data ...). */
  readonly objectType: number;
  readonly keyFormatType: number;
  /** Cryptographic Algorithm from the Key Block, when it has one. */
  readonly algorithm: number | undefined;
  /** Cryptographic Length (bits) from the Key Block, when it has one. */
  readonly lengthBits: number | undefined;
  /** The key bytes: a copy the caller owns and must wipe. */
  readonly keyMaterial: Buffer;
}

/** Reads a Get Response Payload; copies the key material out of the frame. @throws TtlvError */
export function parseGetPayload(payload: TtlvItem): KmipManagedSecret {
  const objectType = requireOne(payload, Tag.ObjectType, 'Enumeration').value;
  const uniqueIdentifier = requireOne(payload, Tag.UniqueIdentifier, 'TextString').value;
  const object = fieldsOf1(payload, [Tag.SymmetricKey, Tag.SecretData]);
  const block = requireOne(object, Tag.KeyBlock, 'Structure');
  if (findOne(block, Tag.KeyWrappingData, 'Structure') !== undefined)
    throw new TtlvError(
      'the server returned a wrapped key (Key Wrapping Data), which this client does not unwrap',
    );
  const keyFormatType = requireOne(block, Tag.KeyFormatType, 'Enumeration').value;
  const value = requireOne(block, Tag.KeyValue, 'Structure');
  let material: Uint8Array;
  if (keyFormatType === KeyFormatType.TransparentSymmetricKey) {
    // Transparent Symmetric Key: Key Material is a Structure holding Key (0x42003F).
    material = requireOne(requireOne(value, Tag.KeyMaterial, 'Structure'), 0x42003f, 'ByteString').value;
  } else {
    material = requireOne(value, Tag.KeyMaterial, 'ByteString').value;
  }
  return {
    uniqueIdentifier,
    objectType,
    keyFormatType,
    algorithm: findOne(block, Tag.CryptographicAlgorithm, 'Enumeration')?.value,
    lengthBits: findOne(block, Tag.CryptographicLength, 'Integer')?.value,
    keyMaterial: Buffer.from(material),
  };
}

function fieldsOf1(payload: TtlvItem, tags: readonly number[]): TtlvItem {
  const found = (payload.type === 'Structure' ? payload.value : []).filter((c) => tags.includes(c.tag));
  if (found.length !== 1 || found[0]!.type !== 'Structure')
    throw new TtlvError('the Get response holds no Symmetric Key or Secret Data (or more than one object)');
  return found[0]!;
}

/** Attribute values read by {@link KmipClient.getAttributes}. */
export interface KmipAttributes {
  /** State, when asked for and present. */
  readonly state: number | undefined;
  /** Every Name Value. */
  readonly names: readonly string[];
  /** Object Type, when asked for and present. */
  readonly objectType: number | undefined;
}

/** Reads a Get Attributes Response Payload. @throws TtlvError */
export function parseAttributesPayload(payload: TtlvItem): KmipAttributes {
  let state: number | undefined;
  let objectType: number | undefined;
  const names: string[] = [];
  for (const item of findAll(payload, Tag.Attribute)) {
    const name = requireOne(item, Tag.AttributeName, 'TextString').value;
    const value = findAll(item, Tag.AttributeValue)[0];
    if (value === undefined) continue;
    if (name === 'State' && value.type === 'Enumeration') state = value.value;
    else if (name === 'Object Type' && value.type === 'Enumeration') objectType = value.value;
    else if (name === 'Name' && value.type === 'Structure')
      names.push(requireOne(value, Tag.NameValue, 'TextString').value);
  }
  return { state, names, objectType };
}

/** Parameters of {@link KmipClient.encrypt} / {@link KmipClient.decrypt}. */
export interface KmipCipherParameters {
  /** Block Cipher Mode (default GCM). */
  readonly mode?: number;
  /** Cryptographic Algorithm (default AES). */
  readonly algorithm?: number;
  /** IV / nonce to use (encrypt: optional, the server then makes one; decrypt: required). */
  readonly iv?: Uint8Array;
  /** Authenticated Encryption Additional Data (KMIP 1.4; GCM only). */
  readonly aad?: Uint8Array;
  /** GCM tag length in bytes (default 16 with GCM). */
  readonly tagLength?: number;
  /** Decrypt: the Authenticated Encryption Tag. */
  readonly tag?: Uint8Array;
}

/** What an Encrypt answered. */
export interface KmipEncryptResult {
  readonly data: Buffer;
  /** The IV the server used, when it made one (or echoed it). */
  readonly iv: Buffer | undefined;
  /** The Authenticated Encryption Tag (KMIP 1.4), when the server returned one. */
  readonly tag: Buffer | undefined;
}

function cipherPayload(
  uniqueIdentifier: string,
  data: Uint8Array,
  p: KmipCipherParameters,
  decrypt: boolean,
): TtlvItem[] {
  const mode = p.mode ?? BlockCipherMode.Gcm;
  // Cryptographic Parameters fields in the order of KMIP 1.4 §3.6.
  const params: TtlvItem[] = [
    enumeration(Tag.BlockCipherMode, mode),
    enumeration(Tag.CryptographicAlgorithm, p.algorithm ?? CryptographicAlgorithm.Aes),
  ];
  if (mode === BlockCipherMode.Gcm) params.push(integer(Tag.TagLength, p.tagLength ?? 16));
  const out: TtlvItem[] = [
    uid(uniqueIdentifier),
    structure(Tag.CryptographicParameters, params),
    byteString(Tag.Data, data),
  ];
  if (p.iv !== undefined) out.push(byteString(Tag.IvCounterNonce, p.iv));
  if (p.aad !== undefined) out.push(byteString(Tag.AuthenticatedEncryptionAdditionalData, p.aad));
  if (decrypt && p.tag !== undefined) out.push(byteString(Tag.AuthenticatedEncryptionTag, p.tag));
  return out;
}

// --- connections -------------------------------------------------------------------------------

/** A connection-level failure that is not the socket's own error. */
class ConnectionClosed extends Error {
  readonly code = 'KMIP_CONNECTION_CLOSED';
}

/** One TLS connection; one exchange at a time. */
class KmipConnection {
  readonly socket: TLSSocket;
  readonly #maxBytes: number;
  #chunks: Buffer[] = [];
  #have = 0;
  #need = -1;
  #pending: { resolve: (frame: Buffer) => void; reject: (err: unknown) => void } | undefined;
  #failed: unknown;

  constructor(socket: TLSSocket, maxBytes: number) {
    this.socket = socket;
    this.#maxBytes = maxBytes;
    socket.on('data', (chunk: Buffer) => this.#onData(chunk));
    socket.on('error', (err) => this.#fail(err));
    socket.on('close', () => this.#fail(new ConnectionClosed('the KMIP server closed the connection')));
    // Armed only while idle (the pool sets and clears the timeout): an idle connection goes.
    socket.on('timeout', () => this.destroy(new ConnectionClosed('idle')));
  }

  get usable(): boolean {
    return this.#failed === undefined && !this.socket.destroyed;
  }

  /** Writes `frame` (zeroed once written) and resolves the one response frame (caller zeroes it). */
  exchange(frame: Buffer): Promise<Buffer> {
    if (!this.usable) {
      frame.fill(0);
      return Promise.reject(this.#failed ?? new ConnectionClosed('the KMIP connection is closed'));
    }
    return new Promise((resolve, reject) => {
      this.#pending = { resolve, reject };
      this.socket.write(frame, () => frame.fill(0));
    });
  }

  destroy(reason: unknown): void {
    this.#fail(reason);
    this.socket.destroy();
  }

  #onData(chunk: Buffer): void {
    if (this.#pending === undefined) {
      // One request in flight: bytes nobody asked for mean the stream is out of step.
      chunk.fill(0);
      this.destroy(new TtlvError('the KMIP server sent data without a request'));
      return;
    }
    this.#chunks.push(chunk);
    this.#have += chunk.length;
    try {
      if (this.#need < 0 && this.#have >= TTLV_HEADER_LENGTH) {
        const head = Buffer.concat(this.#chunks, this.#have).subarray(0, TTLV_HEADER_LENGTH);
        const header = readTtlvHeader(head);
        if (header.tag !== Tag.ResponseMessage || header.type !== 'Structure')
          throw new TtlvError(
            `the KMIP server answered with item 0x${header.tag.toString(16)}, not a Response Message`,
          );
        if (header.totalLength > this.#maxBytes)
          throw new TtlvError(
            `a response of ${header.totalLength} bytes exceeds the limit of ${this.#maxBytes}`,
          );
        this.#need = header.totalLength;
      }
      if (this.#need >= 0 && this.#have >= this.#need) {
        if (this.#have > this.#need) throw new TtlvError('the KMIP server sent more than one response');
        const frame = Buffer.concat(this.#chunks, this.#have);
        this.#wipeChunks();
        const pending = this.#pending;
        this.#pending = undefined;
        this.#need = -1;
        pending.resolve(frame);
      }
    } catch (err) {
      this.destroy(err);
    }
  }

  #wipeChunks(): void {
    for (const c of this.#chunks) c.fill(0);
    this.#chunks = [];
    this.#have = 0;
  }

  #fail(err: unknown): void {
    this.#failed ??= err;
    this.#wipeChunks();
    const pending = this.#pending;
    this.#pending = undefined;
    pending?.reject(this.#failed);
  }
}

const DEFAULTS = {
  poolSize: 2,
  connectTimeoutMs: 10_000,
  requestTimeoutMs: 30_000,
  maxResponseBytes: 1 << 20,
  idleTimeoutMs: 30_000,
};

/**
 * A KMIP client: see the module comment. Every method takes {@link KmipCallOptions} and throws
 * kms-envelope's typed errors (see {@link kmipResultError}, {@link kmipConnectionError});
 * a malformed response is a `ProviderUnavailableError` whose cause is the {@link TtlvError}.
 */
export class KmipClient {
  readonly #host: string;
  readonly #port: number;
  readonly #servername: string | undefined;
  readonly #context: SecureContext;
  readonly #version: KmipVersion;
  readonly #poolSize: number;
  readonly #connectTimeoutMs: number;
  readonly #requestTimeoutMs: number;
  readonly #maxResponseBytes: number;
  readonly #idleTimeoutMs: number;
  readonly #idle: KmipConnection[] = [];
  #open = 0;
  readonly #waiters: { resolve: (c: KmipConnection | undefined) => void }[] = [];
  #closed = false;

  /** @throws ConfigError when the certificate, key or CA cannot be loaded (the message names which, never the key). */
  constructor(options: KmipClientOptions) {
    if (!options.host) throw new ConfigError('a KMIP client needs a host');
    if (!Number.isInteger(options.port) || options.port < 1 || options.port > 65535)
      throw new ConfigError('a KMIP client needs a port between 1 and 65535');
    this.#host = options.host;
    this.#port = options.port;
    this.#servername = options.servername ?? (isIP(options.host) ? undefined : options.host);
    this.#version = options.protocolVersion ?? KMIP_1_2;
    this.#poolSize = Math.max(1, options.poolSize ?? DEFAULTS.poolSize);
    this.#connectTimeoutMs = options.connectTimeoutMs ?? DEFAULTS.connectTimeoutMs;
    this.#requestTimeoutMs = options.requestTimeoutMs ?? DEFAULTS.requestTimeoutMs;
    this.#maxResponseBytes = options.maxResponseBytes ?? DEFAULTS.maxResponseBytes;
    this.#idleTimeoutMs = options.idleTimeoutMs ?? DEFAULTS.idleTimeoutMs;
    try {
      this.#context = createSecureContext({
        ...(options.ca !== undefined ? { ca: options.ca as string | Buffer | (string | Buffer)[] } : {}),
        cert: options.cert,
        key: options.key,
        minVersion: 'TLSv1.2',
      });
    } catch (cause) {
      // OpenSSL's message names what failed to parse, never the key's bytes.
      throw new ConfigError(
        `the KMIP client certificate, key or CA could not be loaded (${(cause as Error).message})`,
        { cause },
      );
    }
  }

  /** The protocol version this client sends. */
  get protocolVersion(): KmipVersion {
    return this.#version;
  }

  /**
   * Sends `items` in one request; `parse` reads the results before the response frame is wiped
   * (copy what you keep). Exported for operations this class has no method for.
   */
  async batch<T>(
    items: readonly KmipBatchItem[],
    parse: (results: KmipBatchResult[]) => T,
    call: KmipCallOptions = {},
  ): Promise<T> {
    const where = call.where ?? {};
    if (this.#closed) throw new ProviderUnavailableError('the KMIP client is closed', where);
    if (call.signal?.aborted) throw new DeadlineExceededError('the KMIP call was aborted (deadline)', where);
    const request = buildRequestMessage(this.#version, items, { maxResponseSize: this.#maxResponseBytes });
    // A call without a signal runs under the client's own timeout: that is its deadline.
    const signal = call.signal ?? AbortSignal.timeout(this.#requestTimeoutMs);
    const frame = await this.#exchange(request, signal).catch((err: unknown) => {
      request.fill(0);
      throw kmipConnectionError(err, where, signal);
    });
    try {
      let results: KmipBatchResult[];
      let answered: KmipVersion | undefined;
      try {
        const message = decodeTtlv(frame, { maxBytes: this.#maxResponseBytes });
        answered = responseProtocolVersion(message);
        results = parseResponseMessage(
          message,
          items.map((i) => i.operation),
        );
      } catch (err) {
        throw new ProviderUnavailableError('the KMIP server sent a malformed response', {
          ...where,
          cause: err,
        });
      }
      // A server that answers in an older version may have read the request as that version
      // (KMIP 1.2 has no authenticated-encryption fields): never act on a success it reports so.
      // Its failures are mapped as any failure (nothing of theirs is used).
      if (
        answered !== undefined &&
        olderKmipVersion(answered, this.#version) &&
        results.some((result) => result.failure === undefined)
      ) {
        throw new ConfigError(
          `the KMIP server answered in KMIP ${answered.major}.${answered.minor}, not the ${this.#version.major}.${this.#version.minor} asked for`,
          where,
        );
      }
      try {
        return parse(results);
      } catch (err) {
        if (err instanceof TtlvError)
          throw new ProviderUnavailableError('the KMIP server sent a malformed response', {
            ...where,
            cause: err,
          });
        throw err;
      }
    } finally {
      frame.fill(0);
    }
  }

  /** Sends one operation; returns its payload (parsed by `parse`) or throws its mapped failure. */
  async one<T>(
    item: KmipBatchItem,
    parse: (payload: TtlvItem | undefined) => T,
    call: KmipCallOptions = {},
  ): Promise<T> {
    return this.batch(
      [item],
      ([result]) => {
        if (result!.failure !== undefined) throw kmipResultError(result!.failure, call.where);
        return parse(result!.payload);
      },
      call,
    );
  }

  /** Create: a new symmetric key (AES-256 by default); returns its Unique Identifier. */
  createSymmetricKey(options: KmipCreateOptions = {}, call?: KmipCallOptions): Promise<string> {
    return this.one({ operation: Operation.Create, payload: createPayload(options) }, uidOf, call);
  }

  /**
   * Register: a Secret Data object holding `secret` (copied into the request, which is wiped once
   * sent); returns its Unique Identifier.
   */
  registerSecretData(
    secret: Uint8Array,
    options: { readonly name?: string; readonly usageMask?: number } = {},
    call?: KmipCallOptions,
  ): Promise<string> {
    const attributes = [
      attribute(
        'Cryptographic Usage Mask',
        integer(0, options.usageMask ?? UsageMask.Encrypt | UsageMask.Decrypt),
      ),
    ];
    if (options.name !== undefined) attributes.push(nameAttribute(options.name));
    return this.one(
      {
        operation: Operation.Register,
        payload: [
          enumeration(Tag.ObjectType, ObjectType.SecretData),
          structure(Tag.TemplateAttribute, attributes),
          structure(Tag.SecretData, [
            enumeration(Tag.SecretDataType, SecretDataType.Seed),
            structure(Tag.KeyBlock, [
              enumeration(Tag.KeyFormatType, KeyFormatType.Opaque),
              structure(Tag.KeyValue, [byteString(Tag.KeyMaterial, secret)]),
            ]),
          ]),
        ],
      },
      uidOf,
      call,
    );
  }

  /** Locate: the Unique Identifiers of objects with this Name (the server's order: PyKMIP's is newest first). */
  locate(options: KmipLocateOptions, call?: KmipCallOptions): Promise<string[]> {
    return this.one(
      { operation: Operation.Locate, payload: locatePayload(options) },
      (payload) =>
        payload === undefined
          ? []
          : findAll(payload, Tag.UniqueIdentifier).map((i) => (i.type === 'TextString' ? i.value : '')),
      call,
    );
  }

  /** Get: the object's key material (a copy the caller wipes). */
  get(uniqueIdentifier: string, call?: KmipCallOptions): Promise<KmipManagedSecret> {
    return this.one(
      { operation: Operation.Get, payload: [uid(uniqueIdentifier)] },
      (p) => parseGetPayload(required(p)),
      call,
    );
  }

  /** Get Attributes: the named attributes (`State`, `Name`, `Object Type` are parsed). */
  getAttributes(
    uniqueIdentifier: string,
    names: readonly string[],
    call?: KmipCallOptions,
  ): Promise<KmipAttributes> {
    return this.one(
      { operation: Operation.GetAttributes, payload: getAttributesPayload(uniqueIdentifier, names) },
      (p) => parseAttributesPayload(required(p)),
      call,
    );
  }

  /** Activate: Pre-Active → Active. */
  async activate(uniqueIdentifier: string, call?: KmipCallOptions): Promise<void> {
    await this.one(
      { operation: Operation.Activate, payload: [uid(uniqueIdentifier)] },
      () => undefined,
      call,
    );
  }

  /** Revoke: Active → Deactivated (or Compromised with `KeyCompromise`). Irreversible in KMIP. */
  async revoke(
    uniqueIdentifier: string,
    reason: number = RevocationReasonCode.CessationOfOperation,
    call?: KmipCallOptions,
  ): Promise<void> {
    await this.one(
      {
        operation: Operation.Revoke,
        payload: [
          uid(uniqueIdentifier),
          structure(Tag.RevocationReason, [enumeration(Tag.RevocationReasonCode, reason)]),
        ],
      },
      () => undefined,
      call,
    );
  }

  /** Destroy: removes the key material (a Pre-Active or Deactivated object). */
  async destroy(uniqueIdentifier: string, call?: KmipCallOptions): Promise<void> {
    await this.one({ operation: Operation.Destroy, payload: [uid(uniqueIdentifier)] }, () => undefined, call);
  }

  /** Encrypt under the object (AES-GCM by default; `aad` needs KMIP 1.4). */
  encrypt(
    uniqueIdentifier: string,
    data: Uint8Array,
    parameters: KmipCipherParameters = {},
    call?: KmipCallOptions,
  ): Promise<KmipEncryptResult> {
    return this.one(
      { operation: Operation.Encrypt, payload: cipherPayload(uniqueIdentifier, data, parameters, false) },
      (p) => parseEncryptPayload(required(p)),
      call,
    );
  }

  /** Decrypt under the object; the plaintext is a copy the caller wipes. */
  decrypt(
    uniqueIdentifier: string,
    data: Uint8Array,
    parameters: KmipCipherParameters = {},
    call?: KmipCallOptions,
  ): Promise<Buffer> {
    return this.one(
      { operation: Operation.Decrypt, payload: cipherPayload(uniqueIdentifier, data, parameters, true) },
      (p) => Buffer.from(requireOne(required(p), Tag.Data, 'ByteString').value),
      call,
    );
  }

  /** Closes every connection; later calls fail. */
  async close(): Promise<void> {
    this.#closed = true;
    for (const c of this.#idle.splice(0)) c.destroy(new ConnectionClosed('the KMIP client was closed'));
    for (const w of this.#waiters.splice(0)) w.resolve(undefined);
  }

  // --- the pool ---

  async #exchange(request: Buffer, signal: AbortSignal): Promise<Buffer> {
    const connection = await this.#acquire(signal);
    const onAbort = () => connection.destroy(signal.reason ?? new Error('aborted'));
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      if (signal.aborted) throw signal.reason;
      const frame = await connection.exchange(request);
      return frame;
    } catch (err) {
      connection.destroy(err);
      throw err;
    } finally {
      signal.removeEventListener('abort', onAbort);
      this.#release(connection);
    }
  }

  async #acquire(signal: AbortSignal): Promise<KmipConnection> {
    for (;;) {
      while (this.#idle.length > 0) {
        const c = this.#idle.pop()!;
        if (c.usable) {
          c.socket.ref();
          c.socket.setTimeout(0);
          return c;
        }
        this.#open--;
      }
      if (this.#closed) throw new ConnectionClosed('the KMIP client is closed');
      if (this.#open < this.#poolSize) {
        this.#open++;
        try {
          return await this.#connect(signal);
        } catch (err) {
          this.#open--;
          this.#wakeOne();
          throw err;
        }
      }
      // Every connection is busy: wait for one to be released (or for the deadline).
      const connection = await new Promise<KmipConnection | undefined>((resolve, reject) => {
        const waiter = {
          resolve: (c: KmipConnection | undefined) => {
            signal.removeEventListener('abort', onAbort);
            resolve(c);
          },
        };
        const onAbort = () => {
          const i = this.#waiters.indexOf(waiter);
          if (i >= 0) this.#waiters.splice(i, 1);
          reject(signal.reason);
        };
        signal.addEventListener('abort', onAbort, { once: true });
        this.#waiters.push(waiter);
      });
      if (connection !== undefined) return connection;
      // undefined: a slot freed up without a connection (one failed): loop and open one.
    }
  }

  #release(connection: KmipConnection): void {
    if (!connection.usable || this.#closed) {
      this.#open--;
      if (this.#closed) connection.destroy(new ConnectionClosed('the KMIP client was closed'));
      this.#wakeOne();
      return;
    }
    const waiter = this.#waiters.shift();
    if (waiter !== undefined) {
      waiter.resolve(connection);
      return;
    }
    // Idle: it must not keep the process alive, and it goes after idleTimeoutMs.
    connection.socket.unref();
    connection.socket.setTimeout(this.#idleTimeoutMs);
    this.#idle.push(connection);
  }

  #wakeOne(): void {
    this.#waiters.shift()?.resolve(undefined);
  }

  #connect(signal: AbortSignal): Promise<KmipConnection> {
    return new Promise((resolve, reject) => {
      const socket = tlsConnect({
        host: this.#host,
        port: this.#port,
        secureContext: this.#context,
        ...(this.#servername !== undefined ? { servername: this.#servername } : {}),
        minVersion: 'TLSv1.2',
      });
      const connection = new KmipConnection(socket, this.#maxResponseBytes);
      const fail = (err: unknown) => {
        cleanup();
        connection.destroy(err);
        reject(err);
      };
      const onAbort = () => fail(signal.reason ?? new Error('aborted'));
      const timer = setTimeout(
        () => fail(Object.assign(new Error('the TLS connect timed out'), { code: 'ETIMEDOUT' })),
        this.#connectTimeoutMs,
      );
      const onError = (err: Error) => fail(err);
      const cleanup = () => {
        clearTimeout(timer);
        signal.removeEventListener('abort', onAbort);
        socket.removeListener('error', onError);
        socket.removeListener('secureConnect', onSecure);
      };
      const onSecure = () => {
        cleanup();
        resolve(connection);
      };
      signal.addEventListener('abort', onAbort, { once: true });
      socket.once('error', onError);
      socket.once('secureConnect', onSecure);
    });
  }
}

function required(payload: TtlvItem | undefined): TtlvItem {
  if (payload === undefined) throw new TtlvError('a successful operation has no Response Payload');
  return payload;
}

function uidOf(payload: TtlvItem | undefined): string {
  return requireOne(required(payload), Tag.UniqueIdentifier, 'TextString').value;
}

function getAttributesPayload(uniqueIdentifier: string, names: readonly string[]): TtlvItem[] {
  return [uid(uniqueIdentifier), ...names.map((n) => textString(Tag.AttributeName, n))];
}

function parseEncryptPayload(payload: TtlvItem): KmipEncryptResult {
  const iv = findOne(payload, Tag.IvCounterNonce, 'ByteString')?.value;
  const tag = findOne(payload, Tag.AuthenticatedEncryptionTag, 'ByteString')?.value;
  return {
    data: Buffer.from(requireOne(payload, Tag.Data, 'ByteString').value),
    iv: iv === undefined ? undefined : Buffer.from(iv),
    tag: tag === undefined ? undefined : Buffer.from(tag),
  };
}

/** Batch items the provider sends together (exported for it and for tests). */
export const kmipItems = {
  get: (uniqueIdentifier: string): KmipBatchItem => ({
    operation: Operation.Get,
    payload: [uid(uniqueIdentifier)],
  }),
  getAttributes: (uniqueIdentifier: string, names: readonly string[]): KmipBatchItem => ({
    operation: Operation.GetAttributes,
    payload: getAttributesPayload(uniqueIdentifier, names),
  }),
  encrypt: (uniqueIdentifier: string, data: Uint8Array, parameters: KmipCipherParameters): KmipBatchItem => ({
    operation: Operation.Encrypt,
    payload: cipherPayload(uniqueIdentifier, data, parameters, false),
  }),
  decrypt: (uniqueIdentifier: string, data: Uint8Array, parameters: KmipCipherParameters): KmipBatchItem => ({
    operation: Operation.Decrypt,
    payload: cipherPayload(uniqueIdentifier, data, parameters, true),
  }),
  destroy: (uniqueIdentifier: string): KmipBatchItem => ({
    operation: Operation.Destroy,
    payload: [uid(uniqueIdentifier)],
  }),
};

/** Parsers of Response Payloads (exported for the provider and tests). */
export const kmipParse = {
  get: parseGetPayload,
  attributes: parseAttributesPayload,
  encrypt: parseEncryptPayload,
  decrypt: (payload: TtlvItem): Buffer => Buffer.from(requireOne(payload, Tag.Data, 'ByteString').value),
  uniqueIdentifier: uidOf,
};
