import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * A SoftHSM2 token for tests: a token made in a temporary folder with `softhsm2-util
 * --init-token`, AES-256 keys generated inside it, and helpers that change the token the way an
 * operator (or a failure) would: key usage flags, labels, the PIN, a logout, a reset of every
 * session.
 *
 * SoftHSM2 reads `SOFTHSM2_CONF` when the module is initialised (`C_Initialize`), which is once
 * per process: {@link startSoftHsm} sets it in `process.env` of the main thread (which changes
 * the process environment the module and its worker threads read), so call it before any
 * PKCS#11 provider of the process first uses the module, and run one SoftHSM at a time per
 * process. The helpers load the module in this thread and share its state with every other
 * thread of the process (a logout or `closeAllSessions` here is one for the provider's workers
 * too: that is how the tests reset a token under a running provider).
 *
 * @module
 */

/** A key to make in the token. */
export interface SoftHsmKeySpec {
  /** `CKA_LABEL`. */
  readonly label: string;
  /** `CKA_ID`, hex (default: none). */
  readonly id?: string;
  /** `CKA_ENCRYPT` (default true). */
  readonly encrypt?: boolean;
  /** `CKA_DECRYPT` (default true). */
  readonly decrypt?: boolean;
  /** `CKA_WRAP` (default true). */
  readonly wrap?: boolean;
  /** `CKA_UNWRAP` (default true). */
  readonly unwrap?: boolean;
  /** `CKA_EXTRACTABLE` (default false). */
  readonly extractable?: boolean;
  /** `CKA_SENSITIVE` (default true). */
  readonly sensitive?: boolean;
  /** `CKA_END_DATE` as `YYYYMMDD` (default: none). */
  readonly endDate?: string;
}

/** Options of {@link startSoftHsm}. */
export interface SoftHsmOptions {
  /** Keys to make (labels, or full specs). */
  readonly keys?: readonly (string | SoftHsmKeySpec)[];
  /** Token label (default `kms-envelope-test`). */
  readonly tokenLabel?: string;
  /** User PIN (default random digits). */
  readonly pin?: string;
  /** Security officer PIN (default random digits). */
  readonly soPin?: string;
  /** The SoftHSM2 module (default {@link SOFTHSM_MODULE}). */
  readonly module?: string;
  /** Where the temporary folder is made (default `os.tmpdir()`). */
  readonly parentDir?: string;
}

/** Attributes {@link SoftHsmHandle.setKeyAttributes} can change. */
export interface SoftHsmKeyChange {
  /** A new `CKA_ENCRYPT`. */
  readonly encrypt?: boolean;
  /** A new `CKA_DECRYPT`. */
  readonly decrypt?: boolean;
  /** A new `CKA_WRAP`. */
  readonly wrap?: boolean;
  /** A new `CKA_UNWRAP`. */
  readonly unwrap?: boolean;
  /** A new `CKA_LABEL`. */
  readonly label?: string;
  /** A new `CKA_END_DATE` (`YYYYMMDD`, or `''` for none). */
  readonly endDate?: string;
}

/** A running SoftHSM2 token. */
export interface SoftHsmHandle {
  /** The module path, for a slot's `options.module`. */
  readonly module: string;
  /** The `softhsm2.conf` written for this token. */
  readonly conf: string;
  /** The temporary folder (config and token directory). */
  readonly dir: string;
  /** The token's label, for `options.tokenLabel`. */
  readonly tokenLabel: string;
  /** The user PIN as it is now (changes with {@link setPin}): for tests only. */
  readonly pin: string;
  /** The security officer PIN. */
  readonly soPin: string;
  /** The slot id of the token (decimal), for `options.slotId`. */
  readonly slotId: string;
  /** What to put in a child process's environment. */
  readonly env: {
    /** The path of {@link conf}: SoftHSM2 reads it at `C_Initialize`. */
    readonly SOFTHSM2_CONF: string;
  };
  /** Makes another AES-256 key in the token. */
  createKey(spec: string | SoftHsmKeySpec): void;
  /** Changes attributes of the key with this label (or `id:<hex>`). */
  setKeyAttributes(key: string, change: SoftHsmKeyChange): void;
  /** Changes the user PIN (from the current one). */
  setPin(newPin: string): void;
  /** `C_Logout`: ends the user login of every session of this process on the token. */
  logout(): void;
  /** `C_CloseAllSessions`: closes every session of this process on the token (a token reset, as a session sees it). */
  closeAllSessions(): void;
  /**
   * Makes the token unusable for this process until {@link stop}: moves its storage away and
   * closes every session (SoftHSM2 then answers `CKR_GENERAL_ERROR` to a login).
   */
  breakToken(): void;
  /**
   * Finalises the module in this process (`C_Finalize`: close the providers that use it first),
   * restores `SOFTHSM2_CONF` and removes the folder. Idempotent.
   */
  stop(): Promise<void>;
}

/** Debian's SoftHSM2 module. */
export const SOFTHSM_MODULE = '/usr/lib/softhsm/libsofthsm2.so';

const INSTALL_HINT = 'apt-get install softhsm2 (Debian), and npm install pkcs11js';

/** True when SoftHSM2 (module and `softhsm2-util`) and pkcs11js are installed. */
export function softHsmAvailable(module = SOFTHSM_MODULE): boolean {
  if (!existsSync(module)) return false;
  const probe = spawnSync('softhsm2-util', ['--version'], { stdio: 'ignore' });
  if (probe.error !== undefined || probe.status !== 0) return false;
  try {
    createRequire(import.meta.url).resolve('pkcs11js');
    return true;
  } catch {
    return false;
  }
}

// What the helpers use of pkcs11js, typed here so this file needs no SDK types.
// biome-ignore lint/suspicious/noExplicitAny: handles are opaque buffers.
type Handle = any;
interface Attribute {
  type: number;
  value?: unknown;
}
interface Pkcs11Admin {
  load(path: string): void;
  close(): void;
  C_Initialize(options?: { flags?: number }): void;
  C_Finalize(): void;
  C_GetSlotList(tokenPresent?: boolean): Handle[];
  C_GetTokenInfo(slot: Handle): { label: string };
  C_OpenSession(slot: Handle, flags: number): Handle;
  C_CloseSession(session: Handle): void;
  C_CloseAllSessions(slot: Handle): void;
  C_GetSessionInfo(session: Handle): { state: number };
  C_Login(session: Handle, userType: number, pin?: string): void;
  C_Logout(session: Handle): void;
  C_SetPIN(session: Handle, oldPin: string, newPin: string): void;
  C_GenerateKey(session: Handle, mechanism: { mechanism: number }, template: Attribute[]): Handle;
  C_FindObjectsInit(session: Handle, template: Attribute[]): void;
  C_FindObjects(session: Handle, max: number): Handle[];
  C_FindObjectsFinal(session: Handle): void;
  C_SetAttributeValue(session: Handle, object: Handle, template: Attribute[]): void;
}

const CKF_OS_LOCKING_OK = 0x2;
const CKF_RW_SESSION = 0x2;
const CKF_SERIAL_SESSION = 0x4;
const CKU_USER = 1;
const CKA = {
  CLASS: 0x0,
  TOKEN: 0x1,
  PRIVATE: 0x2,
  LABEL: 0x3,
  KEY_TYPE: 0x100,
  ID: 0x102,
  SENSITIVE: 0x103,
  ENCRYPT: 0x104,
  DECRYPT: 0x105,
  WRAP: 0x106,
  UNWRAP: 0x107,
  END_DATE: 0x111,
  VALUE_LEN: 0x161,
  EXTRACTABLE: 0x162,
} as const;
const CKO_SECRET_KEY = 4;
const CKK_AES = 0x1f;
const CKM_AES_KEY_GEN = 0x1080;
const CKR_CRYPTOKI_ALREADY_INITIALIZED = 0x191;
const CKR_USER_ALREADY_LOGGED_IN = 0x100;

const ckrOf = (err: unknown) => (err as { code?: unknown })?.code;
const digits = (n: number) => Array.from(randomBytes(n), (b) => String(b % 10)).join('');

/**
 * Starts a SoftHSM2 token in a new temporary folder: writes `softhsm2.conf`, sets
 * `SOFTHSM2_CONF`, runs `softhsm2-util --init-token --free`, and makes `keys` (AES-256, on the
 * token, private, sensitive, not extractable) with `C_GenerateKey`.
 * @throws Error when SoftHSM2 or pkcs11js is missing (with how to install them) or a step fails.
 */
export async function startSoftHsm(options: SoftHsmOptions = {}): Promise<SoftHsmHandle> {
  const module = options.module ?? SOFTHSM_MODULE;
  if (!softHsmAvailable(module)) throw new Error(`SoftHSM2 is not available: ${INSTALL_HINT}`);
  const tokenLabel = options.tokenLabel ?? 'kms-envelope-test';
  let pin = options.pin ?? digits(8);
  const soPin = options.soPin ?? digits(8);
  const dir = mkdtempSync(join(options.parentDir ?? tmpdir(), 'kms-envelope-softhsm-'));
  const tokenDir = join(dir, 'tokens');
  mkdirSync(tokenDir, { mode: 0o700 });
  const conf = join(dir, 'softhsm2.conf');
  writeFileSync(
    conf,
    `directories.tokendir = ${tokenDir}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n`,
    {
      mode: 0o600,
    },
  );
  const previousConf = process.env.SOFTHSM2_CONF;
  process.env.SOFTHSM2_CONF = conf;
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    if (process.env.SOFTHSM2_CONF === conf) {
      if (previousConf === undefined) delete process.env.SOFTHSM2_CONF;
      else process.env.SOFTHSM2_CONF = previousConf;
    }
    // The module's state is per process: finalise it, so that the next token's SOFTHSM2_CONF is
    // read by the next C_Initialize (a provider still open re-initialises on its next call).
    try {
      const lib = new (
        createRequire(import.meta.url)('pkcs11js') as { PKCS11: new () => Pkcs11Admin }
      ).PKCS11();
      lib.load(module);
      try {
        lib.C_Finalize();
      } catch {
        // not initialised
      }
      lib.close();
    } catch {
      // pkcs11js or the module is gone: nothing to finalise
    }
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const init = spawnSync(
      'softhsm2-util',
      ['--init-token', '--free', '--label', tokenLabel, '--so-pin', soPin, '--pin', pin],
      { env: { ...process.env, SOFTHSM2_CONF: conf }, encoding: 'utf8', timeout: 30_000 },
    );
    if (init.status !== 0) {
      // Its output names the token and slot, never the PINs.
      throw new Error(
        `softhsm2-util --init-token failed (${init.status ?? init.signal}): ${String(init.stderr).trim().slice(-300)}`,
      );
    }
    const pkcs11 = createRequire(import.meta.url)('pkcs11js') as { PKCS11: new () => Pkcs11Admin };
    let slotId = '';

    /** Runs `fn` in a logged-in R/W session of this thread; initialises (and then finalises) the module only when nobody in the process has. */
    const withSession = <T>(
      fn: (lib: Pkcs11Admin, session: Handle, slot: Handle) => T,
      loginFirst = true,
    ): T => {
      const lib = new pkcs11.PKCS11();
      lib.load(module);
      let initializedHere = false;
      try {
        lib.C_Initialize({ flags: CKF_OS_LOCKING_OK });
        initializedHere = true;
      } catch (err) {
        if (ckrOf(err) !== CKR_CRYPTOKI_ALREADY_INITIALIZED) throw err;
      }
      try {
        const slot = lib
          .C_GetSlotList(true)
          .find((s: Handle) => lib.C_GetTokenInfo(s).label.replace(/[\s\0]+$/, '') === tokenLabel);
        if (slot === undefined) {
          throw new Error(
            `token "${tokenLabel}" is not visible: was the module initialised in this process with another SOFTHSM2_CONF?`,
          );
        }
        slotId = Buffer.from(slot).readBigUInt64LE(0).toString();
        const session = lib.C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION);
        try {
          const state = lib.C_GetSessionInfo(session).state;
          if (loginFirst && state !== 3 /* CKS_RW_USER_FUNCTIONS */) {
            try {
              lib.C_Login(session, CKU_USER, pin);
            } catch (err) {
              if (ckrOf(err) !== CKR_USER_ALREADY_LOGGED_IN) throw err;
            }
          }
          return fn(lib, session, slot);
        } finally {
          try {
            lib.C_CloseSession(session);
          } catch {
            // closed by fn (closeAllSessions)
          }
        }
      } finally {
        if (initializedHere) lib.C_Finalize();
        lib.close();
      }
    };

    const findKey = (lib: Pkcs11Admin, session: Handle, key: string): Handle => {
      const template: Attribute[] = [{ type: CKA.CLASS, value: CKO_SECRET_KEY }];
      if (key.startsWith('id:')) template.push({ type: CKA.ID, value: Buffer.from(key.slice(3), 'hex') });
      else template.push({ type: CKA.LABEL, value: key });
      lib.C_FindObjectsInit(session, template);
      const found = lib.C_FindObjects(session, 2);
      lib.C_FindObjectsFinal(session);
      if (found.length !== 1) throw new Error(`token has ${found.length} keys "${key}"`);
      return found[0];
    };

    const createKey = (spec: string | SoftHsmKeySpec) => {
      const s: SoftHsmKeySpec = typeof spec === 'string' ? { label: spec } : spec;
      withSession((lib, session) => {
        const template: Attribute[] = [
          { type: CKA.CLASS, value: CKO_SECRET_KEY },
          { type: CKA.KEY_TYPE, value: CKK_AES },
          { type: CKA.VALUE_LEN, value: 32 },
          { type: CKA.TOKEN, value: true },
          { type: CKA.PRIVATE, value: true },
          { type: CKA.SENSITIVE, value: s.sensitive ?? true },
          { type: CKA.EXTRACTABLE, value: s.extractable ?? false },
          { type: CKA.ENCRYPT, value: s.encrypt ?? true },
          { type: CKA.DECRYPT, value: s.decrypt ?? true },
          { type: CKA.WRAP, value: s.wrap ?? true },
          { type: CKA.UNWRAP, value: s.unwrap ?? true },
          { type: CKA.LABEL, value: s.label },
        ];
        if (s.id !== undefined) template.push({ type: CKA.ID, value: Buffer.from(s.id, 'hex') });
        if (s.endDate !== undefined)
          template.push({ type: CKA.END_DATE, value: Buffer.from(s.endDate, 'latin1') });
        lib.C_GenerateKey(session, { mechanism: CKM_AES_KEY_GEN }, template);
      });
    };

    for (const key of options.keys ?? []) createKey(key);
    if (slotId === '') withSession(() => undefined, false);

    const handle: SoftHsmHandle = {
      module,
      conf,
      dir,
      tokenLabel,
      get pin() {
        return pin;
      },
      soPin,
      get slotId() {
        return slotId;
      },
      env: { SOFTHSM2_CONF: conf },
      createKey,
      setKeyAttributes(key, change) {
        withSession((lib, session) => {
          const template: Attribute[] = [];
          if (change.encrypt !== undefined) template.push({ type: CKA.ENCRYPT, value: change.encrypt });
          if (change.decrypt !== undefined) template.push({ type: CKA.DECRYPT, value: change.decrypt });
          if (change.wrap !== undefined) template.push({ type: CKA.WRAP, value: change.wrap });
          if (change.unwrap !== undefined) template.push({ type: CKA.UNWRAP, value: change.unwrap });
          if (change.label !== undefined) template.push({ type: CKA.LABEL, value: change.label });
          if (change.endDate !== undefined)
            template.push({ type: CKA.END_DATE, value: Buffer.from(change.endDate, 'latin1') });
          lib.C_SetAttributeValue(session, findKey(lib, session, key), template);
        });
      },
      setPin(newPin) {
        withSession((lib, session) => lib.C_SetPIN(session, pin, newPin));
        pin = newPin;
      },
      logout() {
        withSession((lib, session) => {
          lib.C_Logout(session);
        }, true);
      },
      closeAllSessions() {
        withSession((lib, _session, slot) => lib.C_CloseAllSessions(slot), false);
      },
      breakToken() {
        withSession((lib, _session, slot) => {
          rmSync(tokenDir, { recursive: true, force: true });
          lib.C_CloseAllSessions(slot);
        }, false);
      },
      stop,
    };
    return handle;
  } catch (err) {
    await stop();
    throw err;
  }
}
