/**
 * The thread that talks to the PKCS#11 module for provider `pkcs11`.
 *
 * Every PKCS#11 call is synchronous (pkcs11js has `…Async` variants only for the data calls, not
 * for `C_Login`, `C_OpenSession` or `C_FindObjects`), so the calls run here, in a
 * `worker_threads` Worker that owns one pkcs11js handle and one session, and never on the event
 * loop. The main thread keeps the deadline: a slow token blocks this thread only.
 *
 * {@link pkcs11WorkerMain} is started as an `eval` worker from its own source text (`toString()`),
 * so it works from the compiled `dist/` and from the TypeScript sources alike without a second
 * entry file: it must not refer to anything outside its own body (no imports, no module
 * constants), and it loads pkcs11js from the absolute path the main thread resolved.
 *
 * Security: the PIN arrives once, in a transferred buffer, and is kept as bytes; pkcs11js's
 * `C_Login` takes a JS string, so each login makes a short-lived string of it that no code can
 * wipe (a limit of the binding). Nothing here puts the PIN, a key or a plaintext in a message: an
 * error carries only the CKR code, the function name and a fixed description.
 *
 * @module
 */

/** What the main thread gives the worker at start (`workerData`; no secrets). */
export interface Pkcs11WorkerData {
  /** Absolute path of pkcs11js's entry file. */
  readonly pkcs11jsPath: string;
  /** The PKCS#11 module (shared library) path. */
  readonly module: string;
  /** The token to use, by label ... */
  readonly tokenLabel: string | undefined;
  /** ... or by slot id (decimal text of the CK_SLOT_ID). */
  readonly slotId: string | undefined;
  /** The key, by `CKA_LABEL` ... */
  readonly keyLabel: string | undefined;
  /** ... or by `CKA_ID` (hex). */
  readonly keyIdHex: string | undefined;
  /** Accept a key that is extractable or not sensitive (default: refused). */
  readonly allowExtractableKey: boolean;
}

/** What a worker starts with: its data, and the process's setup lock of the module (see pool.ts). */
export interface Pkcs11WorkerStart extends Pkcs11WorkerData {
  /** One Int32 word: 0 free, 1 held. */
  readonly setupLock: SharedArrayBuffer;
}

/** An operation of the worker. */
export type Pkcs11Operation =
  /** AES-GCM encrypt of `data` (the KEK) with `aad`: answers `iv(12) ‖ ciphertext ‖ tag(16)`. */
  | 'encrypt'
  /** AES-GCM decrypt of `data` = `iv ‖ ciphertext ‖ tag` with `aad`: answers the plaintext. */
  | 'decrypt'
  /** `CKM_AES_KEY_WRAP_PAD` of `data` (a 32-byte key) under the token key: answers the wrapped key. */
  | 'wrapKey'
  /** `CKM_AES_KEY_WRAP_PAD` unwrap of `data`: answers the 32-byte key. */
  | 'unwrapKey'
  /** Nothing but the session and the key lookup (answers no data): what the token offers. */
  | 'probe';

/** A test seam, not the HSM: what the worker does instead of, or before, the real call. */
export interface Pkcs11InjectedFault {
  /** Blocks the worker this long before the call (a slow token). */
  readonly delayMs?: number;
  /** Fails the operation's main call with this CKR code instead of making it. */
  readonly failWith?: number;
  /**
   * With `failWith`: the first `sessionLosses` attempts of the operation each first close the
   * worker's session, as another thread's `C_CloseAllSessions` racing the call would. The worker
   * then decides from the token's state, as for a real failure, whether to open a new session and
   * retry (an injected fault alone is never retried).
   */
  readonly sessionLosses?: number;
}

/** Main thread → worker. */
export type Pkcs11WorkerRequest =
  | { readonly type: 'pin'; readonly pin: ArrayBuffer }
  | {
      readonly type: 'op';
      readonly id: number;
      readonly op: Pkcs11Operation;
      /** Transferred; the worker wipes it after use. */
      readonly data: ArrayBuffer;
      readonly aad: Uint8Array | undefined;
      /** Refuse unless the token's label is this one (the label an envelope recorded). */
      readonly expectTokenLabel: string | undefined;
      readonly fault: Pkcs11InjectedFault | undefined;
    }
  | { readonly type: 'close'; readonly finalize: boolean };

/** Why an operation failed, without any secret. */
export interface Pkcs11WorkerFailure {
  /**
   * `ckr`: a PKCS#11 return value (see `ckr`, `fn`); `load`: the module could not be loaded;
   * `token-absent`: no slot holds the token; `not-found`: no key with that label / id;
   * `ambiguous`: more than one; `disabled`: the key may not do this (usage flag off, end date
   * passed); `key-unfit`: not an AES-256 key, or extractable; `token-mismatch`: the token is not
   * the one the envelope names; `bad-input`: malformed input bytes; `session-lost`: the session
   * was lost under the call more often in a row than the worker recovers from (`ckr`, `fn`: the
   * last answer); `other`: anything else.
   */
  readonly kind:
    | 'ckr'
    | 'session-lost'
    | 'load'
    | 'token-absent'
    | 'not-found'
    | 'ambiguous'
    | 'disabled'
    | 'key-unfit'
    | 'token-mismatch'
    | 'bad-input'
    | 'other';
  /** The CKR code, for `ckr`. */
  readonly ckr?: number;
  /** The PKCS#11 function that returned it (`C_Decrypt` ...). */
  readonly fn?: string;
  /** A fixed description (never a value). */
  readonly detail: string;
}

/** Worker → main thread. */
export type Pkcs11WorkerResponse =
  | {
      readonly type: 'result';
      readonly id: number;
      readonly ok: true;
      /** Transferred; the receiver wipes it. */
      readonly data: ArrayBuffer;
      /** The token's label (as `C_GetTokenInfo` says, trailing blanks removed). */
      readonly tokenLabel: string;
      /** The token offers `CKM_AES_GCM`. */
      readonly gcm: boolean;
      /** The token offers `CKM_AES_KEY_WRAP_PAD`. */
      readonly wrapPad: boolean;
      /** This thread's `C_Initialize` initialised the module (so a `C_Finalize` is ours to make). */
      readonly initializedHere: boolean;
    }
  | {
      readonly type: 'result';
      readonly id: number;
      readonly ok: false;
      readonly failure: Pkcs11WorkerFailure;
      readonly initializedHere: boolean;
    }
  | { readonly type: 'closed' };

/**
 * The worker's body. Self-contained on purpose (see the module documentation): it is run from
 * its source text, so everything it uses is inside it.
 */
export function pkcs11WorkerMain(): void {
  // biome-ignore lint/suspicious/noExplicitAny: pkcs11js is loaded by path; its calls are typed below.
  type Handle = any;
  interface Pkcs11Lib {
    load(path: string): void;
    close(): void;
    C_Initialize(options?: { flags?: number }): void;
    C_Finalize(): void;
    C_GetSlotList(tokenPresent?: boolean): Handle[];
    C_GetTokenInfo(slot: Handle): { label: string };
    C_GetMechanismList(slot: Handle): number[];
    C_OpenSession(slot: Handle, flags: number): Handle;
    C_CloseSession(session: Handle): void;
    C_GetSessionInfo(session: Handle): { state: number };
    C_Login(session: Handle, userType: number, pin?: string): void;
    C_FindObjectsInit(session: Handle, template: { type: number; value?: unknown }[]): void;
    C_FindObjects(session: Handle, max: number): Handle[];
    C_FindObjectsFinal(session: Handle): void;
    C_GetAttributeValue(
      session: Handle,
      object: Handle,
      template: { type: number }[],
    ): { type: number; value?: Buffer }[];
    C_EncryptInit(session: Handle, mechanism: object, key: Handle): void;
    C_Encrypt(session: Handle, data: Buffer, out: Buffer): Buffer;
    C_DecryptInit(session: Handle, mechanism: object, key: Handle): void;
    C_Decrypt(session: Handle, data: Buffer, out: Buffer): Buffer;
    C_CreateObject(session: Handle, template: { type: number; value?: unknown }[]): Handle;
    C_DestroyObject(session: Handle, object: Handle): void;
    C_WrapKey(session: Handle, mechanism: object, wrappingKey: Handle, key: Handle, out: Buffer): Buffer;
    C_UnwrapKey(
      session: Handle,
      mechanism: object,
      unwrappingKey: Handle,
      wrapped: Buffer,
      template: { type: number; value?: unknown }[],
    ): Handle;
  }
  type Failure = Pkcs11WorkerFailure;

  const { parentPort, workerData } = require('node:worker_threads') as typeof import('node:worker_threads');
  const { randomFillSync } = require('node:crypto') as typeof import('node:crypto');
  const config = workerData as Pkcs11WorkerStart;
  const port = parentPort!;

  // PKCS#11 constants (the standard's numbers).
  const CKF_OS_LOCKING_OK = 0x2;
  const CKF_SERIAL_SESSION = 0x4;
  const CKU_USER = 1;
  const CKS_RO_USER_FUNCTIONS = 1;
  const CKS_RW_USER_FUNCTIONS = 3;
  const CKO_SECRET_KEY = 4;
  const CKK_AES = 0x1f;
  const CKA_CLASS = 0x0;
  const CKA_TOKEN = 0x1;
  const CKA_LABEL = 0x3;
  const CKA_VALUE = 0x11;
  const CKA_KEY_TYPE = 0x100;
  const CKA_ID = 0x102;
  const CKA_SENSITIVE = 0x103;
  const CKA_ENCRYPT = 0x104;
  const CKA_DECRYPT = 0x105;
  const CKA_WRAP = 0x106;
  const CKA_UNWRAP = 0x107;
  const CKA_END_DATE = 0x111;
  const CKA_VALUE_LEN = 0x161;
  const CKA_EXTRACTABLE = 0x162;
  const CKM_AES_GCM = 0x1087;
  const CKM_AES_KEY_WRAP_PAD = 0x210a;
  const CKR_USER_ALREADY_LOGGED_IN = 0x100;
  const CKR_CRYPTOKI_ALREADY_INITIALIZED = 0x191;
  // A session lost to a token reset, a logout or a finalize by someone else: open, log in, retry
  // (at most RECOVERIES times).
  const RECOVERABLE = new Set([
    0x32 /* DEVICE_REMOVED */, 0x60 /* KEY_HANDLE_INVALID */, 0x82 /* OBJECT_HANDLE_INVALID */,
    0xb0 /* SESSION_CLOSED */, 0xb3 /* SESSION_HANDLE_INVALID */, 0xe0 /* TOKEN_NOT_PRESENT */,
    0x101 /* USER_NOT_LOGGED_IN */, 0x190 /* CRYPTOKI_NOT_INITIALIZED */,
  ]);
  const GCM_IV_LENGTH = 12;
  /** Sessions lost in a row that one call recovers from: a reset and a logout right after it are two. */
  const RECOVERIES = 2;

  const pkcs11 = require(config.pkcs11jsPath) as { PKCS11: new () => Pkcs11Lib; CK_PARAMS_AES_GCM: number };
  let lib: Pkcs11Lib | undefined;
  let loaded = false;
  let initialized = false;
  let initializedHere = false;
  let slot: Handle | undefined;
  let session: Handle | undefined;
  let tokenLabel = '';
  let gcm = false;
  let wrapPad = false;
  let pin: Uint8Array | undefined;

  class Refusal {
    constructor(readonly failure: Failure) {}
  }
  const refuse = (failure: Failure): never => {
    throw new Refusal(failure);
  };
  const ckrOf = (err: unknown): number | undefined => {
    const code = (err as { code?: unknown } | null)?.code;
    const name = String((err as { message?: unknown } | null)?.message ?? '');
    return typeof code === 'number' && /^CKR_/.test(name) ? code : undefined;
  };
  /** Calls `fn`, turning a CKR error into a refusal naming the PKCS#11 function. */
  function call<T>(name: string, fn: () => T): T {
    try {
      return fn();
    } catch (err) {
      if (err instanceof Refusal) throw err;
      const ckr = ckrOf(err);
      if (ckr !== undefined) {
        const ckrName = String((err as Error).message);
        refuse({ kind: 'ckr', ckr, fn: name, detail: `${ckrName} from ${name}` });
      }
      // A binding error (argument types): its message names arguments, never their values.
      return refuse({ kind: 'other', fn: name, detail: `${name} failed in the binding` });
    }
  }

  const lockWord = new Int32Array(config.setupLock);
  /** How long a worker waits for the setup lock before going ahead (a holder that was terminated). */
  const SETUP_LOCK_WAIT_MS = 10_000;
  /** Runs `fn` holding the module's setup lock (one thread of the process at a time). */
  function underSetupLock<T>(fn: () => T): T {
    const until = Date.now() + SETUP_LOCK_WAIT_MS;
    const take = () => Atomics.compareExchange(lockWord, 0, 0, 1) === 0;
    let held = take();
    while (!held && Date.now() < until) {
      Atomics.wait(lockWord, 0, 1, 50);
      held = take();
    }
    try {
      return fn();
    } finally {
      if (held) {
        Atomics.store(lockWord, 0, 0);
        Atomics.notify(lockWord, 0, 1);
      }
    }
  }

  function ensureSession(): Handle {
    if (session !== undefined) return session;
    return underSetupLock(setUp);
  }

  function setUp(): Handle {
    if (lib === undefined) lib = new pkcs11.PKCS11();
    const l = lib;
    if (!loaded) {
      try {
        l.load(config.module);
      } catch {
        refuse({ kind: 'load', detail: 'the PKCS#11 module could not be loaded' });
      }
      loaded = true;
    }
    if (!initialized) {
      try {
        l.C_Initialize({ flags: CKF_OS_LOCKING_OK });
        initializedHere = true;
      } catch (err) {
        // Another thread of this process (another slot, the application) initialised it first.
        if (ckrOf(err) !== CKR_CRYPTOKI_ALREADY_INITIALIZED) {
          call('C_Initialize', () => {
            throw err;
          });
        }
      }
      initialized = true;
    }
    if (slot === undefined) {
      const slots = call('C_GetSlotList', () => l.C_GetSlotList(true));
      for (const candidate of slots) {
        const label = call('C_GetTokenInfo', () => l.C_GetTokenInfo(candidate)).label.replace(/[\s\0]+$/, '');
        const matches =
          config.slotId !== undefined
            ? Buffer.from(candidate).readBigUInt64LE(0).toString() === config.slotId
            : label === config.tokenLabel;
        if (matches) {
          slot = candidate;
          tokenLabel = label;
          break;
        }
      }
      if (slot === undefined)
        refuse({ kind: 'token-absent', detail: 'no slot of the module holds the token' });
      const mechanisms = call('C_GetMechanismList', () => l.C_GetMechanismList(slot));
      gcm = mechanisms.includes(CKM_AES_GCM);
      wrapPad = mechanisms.includes(CKM_AES_KEY_WRAP_PAD);
    }
    if (session === undefined) {
      session = call('C_OpenSession', () => l.C_OpenSession(slot, CKF_SERIAL_SESSION));
      login(l, session);
    }
    return session;
  }

  function login(l: Pkcs11Lib, s: Handle): void {
    const state = call('C_GetSessionInfo', () => l.C_GetSessionInfo(s)).state;
    // Login state is per application and token: another session of this process may have logged in.
    if (state === CKS_RO_USER_FUNCTIONS || state === CKS_RW_USER_FUNCTIONS) return;
    if (pin === undefined) refuse({ kind: 'other', detail: 'no PIN was given to the worker' });
    try {
      // The binding takes a string: this one lives until the collector takes it (see the module doc).
      l.C_Login(s, CKU_USER, new TextDecoder().decode(pin));
    } catch (err) {
      if (ckrOf(err) !== CKR_USER_ALREADY_LOGGED_IN) {
        call('C_Login', () => {
          throw err;
        });
      }
    }
  }

  /** Forgets the session (and, after a finalize by someone else or a removal, the slot). */
  function reset(ckr: number | undefined): void {
    const s = session;
    session = undefined;
    if (s !== undefined && lib !== undefined) {
      try {
        lib.C_CloseSession(s);
      } catch {
        // already gone
      }
    }
    if (ckr === 0x190 /* CRYPTOKI_NOT_INITIALIZED */) initialized = false;
    if (ckr === 0x190 || ckr === 0x32 || ckr === 0xe0) slot = undefined;
  }

  /**
   * A GENERAL_ERROR or DEVICE_ERROR is read as a lost session (closed or logged out by another
   * thread while the call ran: SoftHSM2 answers GENERAL_ERROR then) only when the session is
   * found gone or logged out afterwards. Otherwise it stands: on C_Decrypt SoftHSM2 answers
   * GENERAL_ERROR for a bad GCM tag, which must stay an unwrap failure and is never retried.
   */
  function lostMidCall(ckr: number): boolean {
    const vague = ckr === 0x05 /* GENERAL_ERROR */ || ckr === 0x30; /* DEVICE_ERROR */
    if (!vague || session === undefined) return false;
    try {
      return !loggedIn(session);
    } catch {
      return true;
    }
  }

  const loggedIn = (s: Handle): boolean => {
    const state = call('C_GetSessionInfo', () => lib!.C_GetSessionInfo(s)).state;
    return state === CKS_RO_USER_FUNCTIONS || state === CKS_RW_USER_FUNCTIONS;
  };

  function findKey(s: Handle): Handle {
    const l = lib!;
    const template: { type: number; value?: unknown }[] = [{ type: CKA_CLASS, value: CKO_SECRET_KEY }];
    if (config.keyLabel !== undefined) template.push({ type: CKA_LABEL, value: config.keyLabel });
    else template.push({ type: CKA_ID, value: Buffer.from(config.keyIdHex ?? '', 'hex') });
    const find = () => {
      call('C_FindObjectsInit', () => l.C_FindObjectsInit(s, template));
      try {
        return call('C_FindObjects', () => l.C_FindObjects(s, 2));
      } finally {
        call('C_FindObjectsFinal', () => l.C_FindObjectsFinal(s));
      }
    };
    let found = find();
    // A private key is invisible, not refused, once the login is gone (a logout elsewhere in
    // this process): log in again and look once more before saying "not found".
    if (found.length === 0 && !loggedIn(s)) {
      login(l, s);
      found = find();
    }
    if (found.length === 0) refuse({ kind: 'not-found', detail: 'no secret key with that label or id' });
    if (found.length > 1)
      refuse({ kind: 'ambiguous', detail: 'more than one secret key has that label or id' });
    return found[0];
  }

  function checkKey(s: Handle, key: Handle, usage: number): void {
    const attrs = call('C_GetAttributeValue', () =>
      lib!.C_GetAttributeValue(s, key, [
        { type: CKA_KEY_TYPE },
        { type: CKA_VALUE_LEN },
        { type: CKA_SENSITIVE },
        { type: CKA_EXTRACTABLE },
        { type: usage },
      ]),
    );
    const [keyType, valueLen, sensitive, extractable, allowed] = attrs.map((a) => a.value);
    // Asked alone: pkcs11js refuses an empty CKA_END_DATE (no end date) as a wrong length.
    let endDate: Buffer | undefined;
    try {
      endDate = lib!.C_GetAttributeValue(s, key, [{ type: CKA_END_DATE }])[0]?.value;
    } catch {
      endDate = undefined;
    }
    const number = (b: Buffer | undefined) =>
      b === undefined || b.length === 0 ? -1 : b.readUIntLE(0, Math.min(b.length, 6));
    const flag = (b: Buffer | undefined) => b !== undefined && b.length > 0 && b[0] !== 0;
    if (number(keyType) !== CKK_AES || number(valueLen) !== 32) {
      refuse({ kind: 'key-unfit', detail: 'the key is not an AES-256 secret key' });
    }
    if (!config.allowExtractableKey && (!flag(sensitive) || flag(extractable))) {
      refuse({
        kind: 'key-unfit',
        detail: 'the key is extractable or not sensitive (CKA_SENSITIVE true, CKA_EXTRACTABLE false needed)',
      });
    }
    // CKA_END_DATE is "YYYYMMDD" (or empty): past it the key is out of use, whatever the token does.
    const end = endDate === undefined ? '' : endDate.toString('latin1');
    if (/^\d{8}$/.test(end) && end !== '00000000') {
      const today = new Date().toISOString().slice(0, 10).replaceAll('-', '');
      if (today > end) refuse({ kind: 'disabled', detail: 'the key is past its CKA_END_DATE' });
    }
    if (!flag(allowed)) {
      const name = {
        [CKA_ENCRYPT]: 'CKA_ENCRYPT',
        [CKA_DECRYPT]: 'CKA_DECRYPT',
        [CKA_WRAP]: 'CKA_WRAP',
        [CKA_UNWRAP]: 'CKA_UNWRAP',
      }[usage];
      refuse({ kind: 'disabled', detail: `the key's ${name} is false` });
    }
  }

  const gcmMechanism = (iv: Buffer, aad: Uint8Array | undefined) => ({
    mechanism: CKM_AES_GCM,
    parameter: { type: pkcs11.CK_PARAMS_AES_GCM, iv, aad: Buffer.from(aad ?? []), ivBits: 96, tagBits: 128 },
  });
  const USAGE: Record<Pkcs11Operation, number> = {
    encrypt: CKA_ENCRYPT,
    decrypt: CKA_DECRYPT,
    wrapKey: CKA_WRAP,
    unwrapKey: CKA_UNWRAP,
    probe: CKA_ENCRYPT, // asked only before the first wrap of an `auto` slot
  };
  /** A copy in memory of its own (never a slice of Buffer's shared pool), which the caller wipes. */
  const unpooled = (bytes: Buffer): Buffer => {
    const copy = Buffer.allocUnsafeSlow(bytes.length);
    bytes.copy(copy);
    return copy;
  };
  /** Output buffers: the results are a 32-byte key or at most 61 bytes; wiped after the copy. */
  const OUT_LENGTH = 128;

  function operate(
    op: Pkcs11Operation,
    data: Buffer,
    aad: Uint8Array | undefined,
    fault: Pkcs11InjectedFault | undefined,
  ): Buffer {
    const l = lib!;
    const s = ensureSession();
    const key = findKey(s);
    checkKey(s, key, USAGE[op]);
    const injected = (name: string) => {
      if (fault?.failWith !== undefined) {
        const code = `CKR 0x${fault.failWith.toString(16)}`;
        // A lost session is judged as a real failure; a plain injected code carries "(test seam)",
        // which is never retried.
        const losesSession = fault.sessionLosses !== undefined && fault.sessionLosses > 0;
        if (losesSession) call('C_CloseSession', () => l.C_CloseSession(s));
        refuse({
          kind: 'ckr',
          ckr: fault.failWith,
          fn: name,
          detail: losesSession
            ? `${code} from ${name} after its session was closed`
            : `injected ${code} (test seam) from ${name}`,
        });
      }
    };
    const out = Buffer.alloc(OUT_LENGTH);
    try {
      switch (op) {
        case 'probe':
          return Buffer.alloc(0);
        case 'encrypt': {
          const iv = randomFillSync(Buffer.alloc(GCM_IV_LENGTH));
          injected('C_Encrypt');
          call('C_EncryptInit', () => l.C_EncryptInit(s, gcmMechanism(iv, aad), key));
          const sealed = call('C_Encrypt', () => l.C_Encrypt(s, data, out));
          return Buffer.concat([iv, sealed]);
        }
        case 'decrypt': {
          if (data.length <= GCM_IV_LENGTH + 16)
            refuse({ kind: 'bad-input', detail: 'the sealed KEK is too short' });
          const iv = Buffer.from(data.subarray(0, GCM_IV_LENGTH));
          injected('C_Decrypt');
          call('C_DecryptInit', () => l.C_DecryptInit(s, gcmMechanism(iv, aad), key));
          return unpooled(call('C_Decrypt', () => l.C_Decrypt(s, data.subarray(GCM_IV_LENGTH), out)));
        }
        case 'wrapKey': {
          injected('C_WrapKey');
          const object = call('C_CreateObject', () =>
            l.C_CreateObject(s, [
              { type: CKA_CLASS, value: CKO_SECRET_KEY },
              { type: CKA_KEY_TYPE, value: CKK_AES },
              { type: CKA_TOKEN, value: false },
              { type: CKA_VALUE, value: data },
              { type: CKA_EXTRACTABLE, value: true },
            ]),
          );
          try {
            return unpooled(
              call('C_WrapKey', () => l.C_WrapKey(s, { mechanism: CKM_AES_KEY_WRAP_PAD }, key, object, out)),
            );
          } finally {
            call('C_DestroyObject', () => l.C_DestroyObject(s, object));
          }
        }
        case 'unwrapKey': {
          injected('C_UnwrapKey');
          const object = call('C_UnwrapKey', () =>
            l.C_UnwrapKey(s, { mechanism: CKM_AES_KEY_WRAP_PAD }, key, data, [
              { type: CKA_CLASS, value: CKO_SECRET_KEY },
              { type: CKA_KEY_TYPE, value: CKK_AES },
              { type: CKA_TOKEN, value: false },
              { type: CKA_SENSITIVE, value: false },
              { type: CKA_EXTRACTABLE, value: true },
            ]),
          );
          try {
            const [value] = call('C_GetAttributeValue', () =>
              l.C_GetAttributeValue(s, object, [{ type: CKA_VALUE }]),
            );
            const bytes = unpooled(value?.value ?? Buffer.alloc(0));
            value?.value?.fill(0);
            return bytes;
          } finally {
            call('C_DestroyObject', () => l.C_DestroyObject(s, object));
          }
        }
      }
    } finally {
      out.fill(0);
    }
  }

  function run(
    op: Pkcs11Operation,
    data: Buffer,
    aad: Uint8Array | undefined,
    expectTokenLabel: string | undefined,
    fault: Pkcs11InjectedFault | undefined,
  ): Buffer {
    if (fault?.delayMs) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, fault.delayMs);
    for (let attempt = 0; ; attempt++) {
      try {
        ensureSession();
        if (expectTokenLabel !== undefined && expectTokenLabel !== tokenLabel) {
          refuse({ kind: 'token-mismatch', detail: 'the envelope names another token' });
        }
        const losing = fault?.sessionLosses !== undefined && attempt < fault.sessionLosses;
        return operate(op, data, aad, attempt === 0 || losing ? fault : undefined);
      } catch (err) {
        const failure = err instanceof Refusal ? err.failure : undefined;
        const ckr = failure?.kind === 'ckr' ? failure.ckr : undefined;
        const injectedFault = failure?.detail.includes('(test seam)') === true;
        const lost = ckr !== undefined && !injectedFault && (RECOVERABLE.has(ckr) || lostMidCall(ckr));
        if (lost && attempt < RECOVERIES) {
          reset(ckr);
          continue;
        }
        // Never an answer about the input (a vague code on C_Decrypt would read as a bad tag).
        if (lost && failure !== undefined && !RECOVERABLE.has(ckr)) {
          reset(ckr);
          refuse({ ...failure, kind: 'session-lost', detail: `${failure.detail}, the session lost again` });
        }
        throw err;
      }
    }
  }

  port.on('message', (message: Pkcs11WorkerRequest) => {
    if (message.type === 'pin') {
      pin = new Uint8Array(message.pin);
      return;
    }
    if (message.type === 'close') {
      if (session !== undefined) {
        try {
          lib?.C_CloseSession(session);
        } catch {
          // gone already
        }
      }
      if (message.finalize && initialized) {
        underSetupLock(() => {
          try {
            lib?.C_Finalize();
          } catch {
            // someone else finalised it
          }
        });
      }
      pin?.fill(0);
      pin = undefined;
      port.postMessage({ type: 'closed' } satisfies Pkcs11WorkerResponse);
      port.close();
      return;
    }
    const data = Buffer.from(message.data);
    try {
      const result = run(message.op, data, message.aad, message.expectTokenLabel, message.fault);
      const transfer = new ArrayBuffer(result.length);
      new Uint8Array(transfer).set(result);
      result.fill(0);
      port.postMessage(
        {
          type: 'result',
          id: message.id,
          ok: true,
          data: transfer,
          tokenLabel,
          gcm,
          wrapPad,
          initializedHere,
        } satisfies Pkcs11WorkerResponse,
        [transfer],
      );
    } catch (err) {
      const failure: Failure =
        err instanceof Refusal
          ? err.failure
          : { kind: 'other', detail: 'unexpected failure in the PKCS#11 worker' };
      port.postMessage({
        type: 'result',
        id: message.id,
        ok: false,
        failure,
        initializedHere,
      } satisfies Pkcs11WorkerResponse);
    } finally {
      data.fill(0);
    }
  });
}
