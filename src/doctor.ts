/**
 * `doctor`: checks one KMS slot end to end — its configuration, that its provider can be built
 * (SDK installed, fields present), and that its credentials and permissions allow a wrap and an
 * unwrap of a throwaway KEK — and says what is wrong in plain words. No envelope is stored and
 * the throwaway KEK is zeroed.
 *
 * @module
 */
import {
  AccessDeniedError,
  ConfigError,
  DeadlineExceededError,
  IntegrityError,
  KeyDisabledError,
  KeyNotFoundError,
  KmsEnvelopeError,
  MissingDependencyError,
  ProviderUnavailableError,
  ThrottledError,
  UnwrapFailedError,
} from './errors.js';
import { Kek } from './keys/kek.js';
import { parseIndexName } from './names.js';
import type { KmsProvider, WrappedKek } from './providers/provider.js';
import type { KmsRegistry } from './providers/registry.js';
import type { KmsSlot } from './providers/slot.js';
import { KmsCaller } from './unwrap/kms-calls.js';
import { Telemetry } from './unwrap/telemetry.js';

/** One check of a doctor run. */
export interface DoctorCheck {
  /** `config`, `provider`, `wrap` or `unwrap`. */
  readonly name: string;
  /** Whether the check passed. */
  readonly ok: boolean;
  /** What was found, in plain words. */
  readonly summary: string;
  /** For a failed check: what to do about it. */
  readonly advice?: string;
  /** For a failed check: the typed error. */
  readonly error?: KmsEnvelopeError;
  /** Milliseconds the check took (the KMS calls). */
  readonly ms?: number;
}

/** The outcome of {@link diagnoseSlot}. */
export interface DoctorReport {
  /** The slot checked. */
  readonly slot: string;
  /** Its provider id, when the slot is configured. */
  readonly provider: string | undefined;
  /** Whether every check passed. */
  readonly ok: boolean;
  /** The checks run, in order; the first failure ends the run. */
  readonly checks: readonly DoctorCheck[];
}

/** Options of {@link diagnoseSlot}. */
export interface DoctorOptions {
  /** Deadline of each KMS call (default 10 s). */
  readonly deadlineMs?: number;
}

/** The permissions each provider needs, for advice after "access denied". */
const PERMISSIONS: Record<string, string> = {
  local: 'read access to the master key reference (env:, file:, secret:)',
  aws: 'secretsmanager:GetSecretValue on the secret (and kms:Decrypt on the KMS key that encrypts it, if customer managed)',
  'aws-kms':
    'kms:Encrypt, kms:Decrypt and kms:ReEncrypt* on the key (kms:DescribeKey when key_id is an alias); with role_arn, sts:AssumeRole on the role with the external id',
  'gcp-kms': 'roles/cloudkms.cryptoKeyEncrypterDecrypter on the CryptoKey',
  'azure-kv':
    'the "Key Vault Crypto User" role (or an access policy with get, wrapKey and unwrapKey) on the key',
  pkcs11:
    'the token PIN (CKU_USER login) and an AES-256 key on the token with CKA_ENCRYPT and CKA_DECRYPT true (CKA_WRAP and CKA_UNWRAP for mechanism wrap-pad), CKA_SENSITIVE true and CKA_EXTRACTABLE false; a login is per process, so check a PIN with doctor in a process of its own',
  kmip: "for the client certificate's identity, on the KMIP key: Get and Get Attributes (mode key; also Locate for name: key ids), or Encrypt, Decrypt and Get Attributes with the Encrypt and Decrypt usage-mask bits (mode delegated); the server must trust the client certificate's CA (PyKMIP: extendedKeyUsage clientAuth)",
  'vault-transit':
    'a Vault policy with path "transit/encrypt/<key>" { capabilities = ["update"] }, path "transit/decrypt/<key>" { capabilities = ["update"] } and path "transit/keys/<key>" { capabilities = ["read"] } (no "create", so a missing key is not upserted); with AppRole, a role whose token has that policy',
  recipient:
    'only the public key in the slot: the private key stays offline (used by `kms-envelope recover`)',
};

/** The index name the throwaway wrap is bound to. */
const DOCTOR_INDEX = parseIndexName('kms-envelope-doctor');

function where(slot: KmsSlot): string {
  const parts = [`provider ${slot.provider}`];
  if (slot.keyId) parts.push(`key_id ${slot.keyId}`);
  if (slot.region) parts.push(`region ${slot.region}`);
  parts.push(slot.endpoint ? `endpoint ${slot.endpoint}` : 'default endpoint');
  if (slot.roleArn) parts.push(`role ${slot.roleArn}`);
  return parts.join(', ');
}

/** Plain-words advice for a failure of `step` with `err`. */
function advise(err: KmsEnvelopeError, slot: KmsSlot, step: string): string {
  const perms = PERMISSIONS[slot.provider];
  if (err instanceof MissingDependencyError) return err.detail;
  if (err instanceof ConfigError) return `fix the slot's configuration: ${err.detail}`;
  if (err instanceof AccessDeniedError) {
    return `the credentials were refused or lack a permission. Needed: ${perms ?? 'see the provider documentation'}. Check which identity the SDK uses (environment, profile, role) and the key's policy.`;
  }
  if (err instanceof KeyNotFoundError) {
    return `the key "${slot.keyId ?? ''}" does not exist where the slot looks (region ${slot.region ?? 'default'}, ${slot.endpoint ?? 'default endpoint'}), or this identity may not see it: check key_id, region and account.`;
  }
  if (err instanceof KeyDisabledError) {
    return 'the key is disabled or scheduled for deletion: enable it (or cancel the deletion) in the KMS.';
  }
  if (err instanceof ThrottledError) return 'the KMS throttled the call: retry later, or raise the quota.';
  if (err instanceof DeadlineExceededError) {
    return 'no answer within the deadline: check the network path to the endpoint, proxies and the region.';
  }
  if (err instanceof ProviderUnavailableError) {
    return `the service could not be reached or failed (${err.detail}): check the endpoint, region, DNS and network.`;
  }
  if (err instanceof IntegrityError) return 'an answer was corrupted in transit: check proxies; retry.';
  if (err instanceof UnwrapFailedError && step === 'unwrap') {
    return `the wrap worked but the unwrap did not: the identity may be allowed to encrypt but not decrypt (${perms ?? 'check permissions'}), or the key changed in between.`;
  }
  return err.detail;
}

function asTyped(err: unknown, slot: KmsSlot): KmsEnvelopeError {
  if (err instanceof KmsEnvelopeError) return err;
  return new KmsEnvelopeError(`unexpected failure: ${(err as Error)?.message ?? String(err)}`, {
    slot: slot.name,
    provider: slot.provider,
    cause: err,
  });
}

/**
 * Checks slot `slotName` of `registry`: configuration, provider, then a wrap and an unwrap of a
 * throwaway KEK bound to the index `kms-envelope-doctor`. A slot whose provider unwraps only
 * offline (`recipient`) gets the wrap check and an unwrap check marked "not tried". Never throws
 * for what it diagnoses.
 */
export async function diagnoseSlot(
  registry: KmsRegistry,
  slotName: string,
  options: DoctorOptions = {},
): Promise<DoctorReport> {
  const deadlineMs = options.deadlineMs ?? 10_000;
  const checks: DoctorCheck[] = [];
  const report = (provider?: string): DoctorReport => ({
    slot: slotName,
    provider,
    ok: checks.every((c) => c.ok),
    checks,
  });
  let slot: KmsSlot;
  try {
    slot = registry.slot(slotName);
  } catch (err) {
    const error = err instanceof KmsEnvelopeError ? err : new ConfigError(String(err), { cause: err });
    checks.push({
      name: 'config',
      ok: false,
      summary: error.message,
      advice:
        'define the slot in the slots config (--config or KMS_ENVELOPE_CONFIG), or give --provider and its flags',
      error,
    });
    return report();
  }
  checks.push({ name: 'config', ok: true, summary: `slot "${slot.name}": ${where(slot)}` });
  let provider: KmsProvider;
  try {
    provider = await registry.provider(slot.name);
  } catch (err) {
    const error = asTyped(err, slot);
    checks.push({
      name: 'provider',
      ok: false,
      summary: error.detail,
      advice: advise(error, slot, 'provider'),
      error,
    });
    return report(slot.provider);
  }
  checks.push({
    name: 'provider',
    ok: true,
    summary: `provider "${provider.id}" is installed and configured`,
  });
  if (provider.id === 'none') {
    checks.push({
      name: 'wrap',
      ok: true,
      summary:
        'provider "none" stores nothing key-derived: the caller supplies the KEK; nothing more to check',
    });
    return report(provider.id);
  }
  const context = { index: DOCTOR_INDEX, slot: slot.name, encryptionContext: { purpose: 'doctor' } };
  // The client's own call policy, with a deadline and no retries or breaker: one honest attempt.
  const caller = new KmsCaller({ deadlineMs, retries: 0, breaker: false }, new Telemetry());
  const target = { slot: slot.name, provider: provider.id, index: DOCTOR_INDEX };
  const kek = Kek.generate();
  try {
    let wrapped: WrappedKek;
    let started = performance.now();
    try {
      wrapped = await caller.run(target, (signal) => provider.wrap(kek, { ...context, signal }));
    } catch (err) {
      const error = asTyped(err, slot);
      checks.push({
        name: 'wrap',
        ok: false,
        summary: error.detail,
        advice: advise(error, slot, 'wrap'),
        error,
      });
      return report(provider.id);
    }
    checks.push({
      name: 'wrap',
      ok: true,
      summary: `a throwaway KEK was wrapped (key ${wrapped.keyId}${wrapped.region ? `, ${wrapped.region}` : ''})`,
      ms: performance.now() - started,
    });
    // A break-glass slot (recipient) never unwraps on the request path: anyone with its public
    // key could have made the wrap. Its private key is offline, so there is nothing to try here.
    if (provider.unwrapOffline !== undefined) {
      checks.push({
        name: 'unwrap',
        ok: true,
        summary: 'not tried: this slot unwraps only offline, with its private key (kms-envelope recover)',
      });
      return report(provider.id);
    }
    started = performance.now();
    try {
      const unwrapped = await caller.run(target, async (signal) => {
        const result = await provider.unwrap(wrapped, { ...context, signal });
        // Answered after the deadline: the check has already failed; do not leave the key about.
        if (signal.aborted) result.zero();
        return result;
      });
      const same = unwrapped.equals(kek);
      unwrapped.zero();
      if (!same)
        throw new UnwrapFailedError('the unwrapped KEK differs from the one wrapped', { slot: slot.name });
    } catch (err) {
      const error = asTyped(err, slot);
      checks.push({
        name: 'unwrap',
        ok: false,
        summary: error.detail,
        advice: advise(error, slot, 'unwrap'),
        error,
      });
      return report(provider.id);
    }
    checks.push({
      name: 'unwrap',
      ok: true,
      summary: 'it unwrapped to the same KEK',
      ms: performance.now() - started,
    });
    return report(provider.id);
  } finally {
    kek.zero();
  }
}
