import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { PROVIDER_ID_PATTERN } from '../envelope/kms-blob.js';
import { ConfigError } from '../errors.js';
import { isValidName, parseSlotName, type SlotName } from '../names.js';

// yaml is loaded on the first parse, not by `import 'kms-envelope'`: only slot files need it.
const parseYaml = (text: string, options: { logLevel: 'error' }): unknown =>
  (createRequire(import.meta.url)('yaml') as typeof import('yaml')).parse(text, options);

/**
 * A KMS slot: a named configuration of one provider, what `KMSBlob.kms_name` refers to.
 * Fields a provider needs but the slot lacks fail with `ConfigError` when the slot is first used.
 */
export interface KmsSlot {
  /** Slot name, e.g. `prod-kms`. */
  readonly name: SlotName;
  /** Provider id: `none`, `local`, `aws`, `aws-kms`, `gcp-kms`, `azure-kv` or a plugin's. */
  readonly provider: string;
  /** The provider's key reference (ARN / alias, secret id, CryptoKey name, key URL, local key id). */
  readonly keyId?: string;
  /** Region or location. */
  readonly region?: string;
  /** Service endpoint override (LocalStack, a proxy, a fake server). */
  readonly endpoint?: string;
  /** Cross-account BYOK: the role to assume (AWS). */
  readonly roleArn?: string;
  /** Required with `roleArn`. */
  readonly externalId?: string;
  /** Session name for AssumeRole. */
  readonly roleSessionName?: string;
  /** `local`: a secret reference (`env:`, `file:`, `secret:`, `literal:`) to the 32-byte master key. */
  readonly masterKey?: string;
  /** Provider-specific settings (a ready SDK client, timeouts, ...). */
  readonly options?: Readonly<Record<string, unknown>>;
  /**
   * Which indexes this slot may serve: patterns of index names where `*` matches any run of
   * characters (`orders`, `tenant-a-*`, `*`). Default `['*']`. The reader's configuration, not
   * the stored envelope, decides which slot may unwrap an index: an envelope naming a slot whose
   * patterns do not match its index is refused before any KMS call (`SlotNotAllowedError`), and
   * so is creating or rotating an index into such a slot.
   */
  readonly indexes?: readonly string[];
  /**
   * Let a slot whose wrap needs only a public key (RSA key wrapping: `azure-kv` with
   * `RSA-OAEP-256`) unwrap (default false). Anyone who can read the public key can make such a
   * wrap of a KEK of their choosing, so a store writer could forge an envelope for any index this
   * slot serves: narrow {@link indexes} when you set it.
   */
  readonly allowPublicKeyWrap?: boolean;
}

/** The snake_case spelling of each field, as config files write them; code may use either. */
export interface KmsSlotSnakeCase {
  /** {@link KmsSlot.keyId}. */
  readonly key_id?: string;
  /** {@link KmsSlot.roleArn}. */
  readonly role_arn?: string;
  /** {@link KmsSlot.externalId}. */
  readonly external_id?: string;
  /** {@link KmsSlot.roleSessionName}. */
  readonly role_session_name?: string;
  /** {@link KmsSlot.masterKey}. */
  readonly master_key?: string;
  /** {@link KmsSlot.allowPublicKeyWrap}. */
  readonly allow_public_key_wrap?: boolean;
}

/**
 * A slot as written in code or in a config file, before validation: each field in camelCase or
 * snake_case (`roleArn` or `role_arn`), never both; any other field is refused.
 */
export type KmsSlotInput = Omit<KmsSlot, 'name' | 'provider'> &
  KmsSlotSnakeCase & {
    /** The slot's name, when the slots are given as a list. */
    readonly name?: string;
    /** The provider id. */
    readonly provider: string;
  };

/** Every accepted spelling of a slot field, camelCase and snake_case, to the field. */
const SLOT_KEYS: Record<string, keyof KmsSlot> = {
  name: 'name',
  provider: 'provider',
  key_id: 'keyId',
  keyId: 'keyId',
  region: 'region',
  endpoint: 'endpoint',
  role_arn: 'roleArn',
  roleArn: 'roleArn',
  external_id: 'externalId',
  externalId: 'externalId',
  role_session_name: 'roleSessionName',
  roleSessionName: 'roleSessionName',
  master_key: 'masterKey',
  masterKey: 'masterKey',
  options: 'options',
  indexes: 'indexes',
  allow_public_key_wrap: 'allowPublicKeyWrap',
  allowPublicKeyWrap: 'allowPublicKeyWrap',
};

/**
 * The fields of a slot written in code or a file, each under its camelCase name.
 *
 * Security: a field the library does not read is refused rather than ignored. A slot written
 * with `role_arn` in code used to assume no role at all, silently; so every spelling is either
 * read or refused, and one field given twice (`roleArn` and `role_arn`) is refused too, since
 * which one wins would be a guess. Errors name the field, never its value.
 * @throws ConfigError
 */
function slotFields(name: string, input: object): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const spelled: Record<string, string> = {};
  for (const [key, value] of Object.entries(input)) {
    const field = Object.hasOwn(SLOT_KEYS, key) ? SLOT_KEYS[key] : undefined;
    if (field === undefined) {
      throw new ConfigError(`unknown slot setting ${shownKey(key) === key ? `"${key}"` : '(not shown)'}`, {
        slot: name,
      });
    }
    if (value === undefined) continue;
    const earlier = spelled[field];
    if (earlier !== undefined) {
      throw new ConfigError(`slot setting "${field}" is given twice ("${earlier}" and "${key}")`, {
        slot: name,
      });
    }
    spelled[field] = key;
    out[field] = value;
  }
  return out;
}

/**
 * Validates one slot. Checks what holds for every provider (name, provider id, `externalId`
 * whenever `roleArn` is set); provider-specific fields are checked by the provider on first use.
 * Fields may be spelled in camelCase or snake_case (see {@link KmsSlotInput}); the result is in
 * camelCase.
 * @throws ConfigError, also for an unknown field or one given in both spellings.
 */
export function parseKmsSlot(name: string, slotInput: KmsSlotInput): KmsSlot {
  let slotName: SlotName;
  try {
    slotName = parseSlotName(name);
  } catch (cause) {
    throw new ConfigError(`invalid slot name: ${(cause as Error).message}`, { cause });
  }
  if (typeof slotInput !== 'object' || slotInput === null)
    throw new ConfigError('slot must be an object', { slot: name });
  const input = slotFields(name, slotInput) as Partial<KmsSlot>;
  if (typeof input.provider !== 'string' || !PROVIDER_ID_PATTERN.test(input.provider)) {
    throw new ConfigError('slot needs a "provider" (none, local, aws, aws-kms, gcp-kms, azure-kv, ...)', {
      slot: name,
    });
  }
  for (const field of [
    'keyId',
    'region',
    'endpoint',
    'roleArn',
    'externalId',
    'roleSessionName',
    'masterKey',
  ] as const) {
    const value = input[field];
    if (value !== undefined && typeof value !== 'string') {
      throw new ConfigError(`slot field "${field}" must be a string`, { slot: name });
    }
  }
  if (
    input.indexes !== undefined &&
    (!Array.isArray(input.indexes) ||
      input.indexes.some((p: unknown) => typeof p !== 'string' || !INDEX_PATTERN.test(p)))
  ) {
    throw new ConfigError(
      'slot field "indexes" must be a list of index name patterns (letters, digits, ".", "_", "-" and "*")',
      { slot: name },
    );
  }
  if (input.allowPublicKeyWrap !== undefined && typeof input.allowPublicKeyWrap !== 'boolean') {
    throw new ConfigError('slot field "allow_public_key_wrap" must be true or false', { slot: name });
  }
  if (input.roleArn !== undefined && !input.externalId) {
    throw new ConfigError('"external_id" is required when "role_arn" is set', { slot: name });
  }
  return { ...input, provider: input.provider, name: slotName };
}

/** An `indexes` pattern: name characters and `*`. */
const INDEX_PATTERN = /^[A-Za-z0-9._*-]{1,128}$/;

/**
 * Whether `slot` may serve `index`, by its {@link KmsSlot.indexes} patterns (`*` any run of
 * characters; no patterns: every index).
 */
export function slotServesIndex(slot: KmsSlot, index: string): boolean {
  const patterns = slot.indexes;
  if (patterns === undefined) return true;
  return patterns.some((pattern) => globMatch(pattern, index));
}

/** `*`-only glob match, iterative (no regular expression built from configuration). */
function globMatch(pattern: string, name: string): boolean {
  let p = 0;
  let n = 0;
  let star = -1;
  let mark = 0;
  while (n < name.length) {
    if (p < pattern.length && pattern[p] !== '*' && pattern[p] === name[n]) {
      p++;
      n++;
    } else if (p < pattern.length && pattern[p] === '*') {
      star = p++;
      mark = n;
    } else if (star >= 0) {
      p = star + 1;
      n = ++mark;
    } else {
      return false;
    }
  }
  while (p < pattern.length && pattern[p] === '*') p++;
  return p === pattern.length;
}

/**
 * Replaces `${VAR}` and `${VAR:-default}` in every string of a parsed config.
 *
 * Security: errors name the variable and the path of keys to the value, never the value or a
 * default; a key that is not a plain name (a mistyped line can turn `literal:…` into a key) is
 * shown as `[key]`.
 * @throws ConfigError for a variable that is unset and has no default.
 */
export function interpolateEnv(value: unknown, env: NodeJS.ProcessEnv, where = 'config'): unknown {
  if (typeof value === 'string') {
    return value.replace(
      /\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g,
      (_, name: string, fallback?: string) => {
        const found = env[name];
        if (found !== undefined && found !== '') return found;
        if (fallback !== undefined) return fallback;
        throw new ConfigError(
          `${where}: environment variable ${name} is not set and has no default (\${${name}:-…})`,
        );
      },
    );
  }
  if (Array.isArray(value)) return value.map((item) => interpolateEnv(item, env, where));
  if (typeof value === 'object' && value !== null) {
    return Object.fromEntries(
      Object.entries(value).map(([k, v]) => [k, interpolateEnv(v, env, `${where}.${shownKey(k)}`)]),
    );
  }
  return value;
}

/** A config key as errors may show it: a plain name, or `[key]` for anything else. */
function shownKey(key: string): string {
  return /^[A-Za-z0-9_][A-Za-z0-9._-]{0,31}$/.test(key) ? key : '[key]';
}

/**
 * The error for a slots config that does not parse. The `yaml` package's errors quote the
 * offending source line (which may be `master_key: literal:<key>`) and an unresolved alias names
 * itself, so neither their message nor the error itself is kept (no `cause`): only the kind of
 * error and where it is.
 */
function syntaxError(err: unknown): ConfigError {
  const e = (typeof err === 'object' && err !== null ? err : {}) as { code?: unknown; linePos?: unknown };
  const kind =
    typeof e.code === 'string' && /^[A-Z][A-Z_]{0,39}$/.test(e.code)
      ? e.code
      : err instanceof ReferenceError
        ? 'BAD_ALIAS'
        : 'UNKNOWN';
  const pos = (Array.isArray(e.linePos) ? e.linePos[0] : undefined) as
    | { line?: unknown; col?: unknown }
    | undefined;
  const at =
    Number.isSafeInteger(pos?.line) && Number.isSafeInteger(pos?.col)
      ? ` at line ${pos?.line as number}, column ${pos?.col as number}`
      : '';
  return new ConfigError(`slots config is neither valid YAML nor JSON: ${kind}${at}`);
}

/**
 * Parses a slots config (YAML or JSON text; JSON is YAML) of the form
 * `slots: { <name>: { provider, key_id, region, endpoint, role_arn, external_id, role_session_name, master_key } }`,
 * with `${VAR}` / `${VAR:-default}` taken from `env`. Snake_case and camelCase keys both work.
 * @throws ConfigError
 */
export function parseSlotsConfig(text: string, env: NodeJS.ProcessEnv = process.env): KmsSlot[] {
  let doc: unknown;
  try {
    // logLevel 'error': errors still throw, but warnings (which quote the source too) are not
    // written to the process's warnings.
    doc = parseYaml(text, { logLevel: 'error' });
  } catch (err) {
    throw syntaxError(err);
  }
  const slots = (doc as { slots?: unknown } | null)?.slots;
  if (typeof slots !== 'object' || slots === null || Array.isArray(slots)) {
    throw new ConfigError('slots config needs a top-level "slots" map of slot name → settings');
  }
  return Object.entries(slots).map(([name, raw]) => {
    // A mis-indented line can make a secret a slot name: an invalid name is not shown.
    if (!isValidName(name)) {
      throw new ConfigError(
        "invalid slot name (not shown): use letters, digits, '.', '_' and '-', starting with a letter or digit",
      );
    }
    if (typeof raw !== 'object' || raw === null)
      throw new ConfigError('slot must be a map of settings', { slot: name });
    const input = interpolateEnv(raw, env, `slots.${name}`) as Record<string, unknown>;
    // The slot's name is its key in the file.
    if (Object.hasOwn(input, 'name')) throw new ConfigError('unknown slot setting "name"', { slot: name });
    return parseKmsSlot(name, input as unknown as KmsSlotInput);
  });
}

/** Reads and parses a slots config file. @throws ConfigError */
export function loadSlotsConfig(path: string, env: NodeJS.ProcessEnv = process.env): KmsSlot[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (cause) {
    throw new ConfigError(`cannot read slots config ${path}`, { cause });
  }
  return parseSlotsConfig(text, env);
}
