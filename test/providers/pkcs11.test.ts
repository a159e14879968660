/**
 * `pkcs11` end to end against a real SoftHSM2 token (made per fixture in a temporary folder by
 * `startSoftHsm`): the conformance suite in both wrap modes, and what the issue asks of a PKCS#11
 * provider — a token reset mid-traffic, an event loop that keeps running while the token is slow,
 * a PIN that never appears in an error, typed errors from CKR codes.
 *
 * Faults, honestly: a disabled key has CKA_ENCRYPT/CKA_DECRYPT/CKA_WRAP/CKA_UNWRAP set false on
 * the token; "access denied" is a real PIN change plus a logout (the provider's re-login is
 * refused with CKR_PIN_INCORRECT), restored after that one call; "key not found" is a real
 * relabel of the key, restored after that one call; "down" moves the token's storage away and
 * closes every session. Only the delay, the busy answer (CKR_FUNCTION_FAILED) and a vague CKR
 * after a session closed under the call come from the provider's test seam in the worker, not
 * from the token: SoftHSM2 is never slow or busy, and that race is timing-bound.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  createPkcs11Provider,
  createPkcs11ProviderForSlot,
  mapPkcs11Failure,
  PKCS11_GCM_WRAPPED_LENGTH,
  PKCS11_WRAP_PAD_WRAPPED_LENGTH,
  type Pkcs11Mechanism,
  type Pkcs11TestSeam,
  parsePkcs11KeyRef,
  pkcs11KeyUri,
  plugin,
} from '../../providers/pkcs11.js';
import { KmsEnvelopeClient } from '../../src/client.js';
import { diagnoseSlot } from '../../src/doctor.js';
import {
  AccessDeniedError,
  ConfigError,
  DeadlineExceededError,
  KeyDisabledError,
  KeyNotFoundError,
  ProviderUnavailableError,
  UnwrapFailedError,
} from '../../src/errors.js';
import { Kek } from '../../src/keys/kek.js';
import { parseIndexName, parseSlotName } from '../../src/names.js';
import type { KmsProvider } from '../../src/providers/provider.js';
import { KmsRegistry } from '../../src/providers/registry.js';
import { parseKmsSlot } from '../../src/providers/slot.js';
import { StorageConfig } from '../../src/storage/config.js';
import { type SoftHsmHandle, softHsmAvailable, startSoftHsm } from '../../src/testing/softhsm.js';
import { serviceAvailable } from '../helpers/services.js';
import { type ProviderFixture, runProviderConformance } from './conformance.js';

const CKR_FUNCTION_FAILED = 0x6;

const hasSoftHsm = serviceAvailable(
  'SoftHSM2',
  softHsmAvailable(),
  'apt-get install softhsm2 (Debian: /usr/lib/softhsm/libsofthsm2.so and softhsm2-util), and pkcs11js',
);

/** The test seam's state: call count, delay, busy answers, actions to run after the next call. */
function seamState() {
  const state = { calls: 0, delayMs: 0, busy: 0, after: [] as (() => void)[] };
  const seam: Pkcs11TestSeam = {
    beforeCall: () => {
      state.calls++;
      const failWith = state.busy > 0 ? CKR_FUNCTION_FAILED : undefined;
      if (state.busy > 0) state.busy--;
      return {
        ...(state.delayMs > 0 ? { delayMs: state.delayMs } : {}),
        ...(failWith !== undefined ? { failWith } : {}),
      };
    },
    afterCall: () => {
      for (const action of state.after.splice(0)) action();
    },
  };
  return { state, seam };
}

/** A PIN file under the token's folder (mode 0600), and the secrets options that allow it. */
function pinFile(hsm: SoftHsmHandle): string {
  const path = join(hsm.dir, 'pin');
  writeFileSync(path, hsm.pin, { mode: 0o600 });
  return path;
}

function slotOf(
  hsm: SoftHsmHandle,
  key: string,
  pin: string,
  extra: Record<string, unknown> = {},
): { provider: string; keyId: string; options: Record<string, unknown> } {
  return {
    provider: 'pkcs11',
    keyId: key,
    options: { module: hsm.module, tokenLabel: hsm.tokenLabel, pin: `file:${pin}`, ...extra },
  };
}

async function makeFixture(mechanism: Pkcs11Mechanism): Promise<ProviderFixture> {
  const hsm = await startSoftHsm({ keys: ['kek-a', 'kek-other'] });
  const pin = pinFile(hsm);
  const { state, seam } = seamState();
  const secrets = { allowedFilePrefixes: [hsm.dir] };
  const providers = { pkcs11: plugin.create };
  const slot = (key: string) => slotOf(hsm, key, pin, { mechanism, testSeam: seam });
  return {
    kms: { slots: { a: slot('kek-a'), b: slot('kek-a') }, secrets, providers },
    wrongKeyKms: { slots: { a: slot('kek-other'), b: slot('kek-other') }, secrets, providers },
    cleanup: () => hsm.stop(),
    faults: {
      setKeyDisabled: (disabled) =>
        hsm.setKeyAttributes('kek-a', {
          encrypt: !disabled,
          decrypt: !disabled,
          wrap: !disabled,
          unwrap: !disabled,
        }),
      throttleNext: (count) => {
        state.busy = count;
      },
      delay: (ms) => {
        state.delayMs = ms;
      },
      calls: () => state.calls,
      stop: async () => hsm.breakToken(),
      denyNext: () => {
        const pinBefore = hsm.pin;
        hsm.setPin(`${pinBefore}7`);
        hsm.logout();
        state.after.push(() => hsm.setPin(pinBefore));
      },
      notFoundNext: () => {
        hsm.setKeyAttributes('kek-a', { label: 'kek-a-moved' });
        state.after.push(() => hsm.setKeyAttributes('kek-a-moved', { label: 'kek-a' }));
      },
    },
  };
}

if (hasSoftHsm) {
  runProviderConformance('pkcs11 (CKM_AES_GCM)', () => makeFixture('gcm'), { faults: true });
  runProviderConformance('pkcs11 (CKM_AES_KEY_WRAP_PAD + local AES-GCM)', () => makeFixture('wrap-pad'), {
    faults: true,
  });
}

const ctx = (
  index = 'idx-1',
  extra: { signal?: AbortSignal; encryptionContext?: Record<string, string> } = {},
) => ({
  index: parseIndexName(index),
  slot: parseSlotName('hsm'),
  encryptionContext: extra.encryptionContext ?? { tenant: 't1' },
  ...(extra.signal ? { signal: extra.signal } : {}),
});

describe.skipIf(!hasSoftHsm)('pkcs11 against SoftHSM2', () => {
  async function withHsm<T>(
    fn: (
      hsm: SoftHsmHandle,
      provider: (extra?: Record<string, unknown>, key?: string) => Promise<KmsProvider>,
    ) => Promise<T>,
    keys: Parameters<typeof startSoftHsm>[0] = { keys: ['kek-a', 'kek-other'] },
  ): Promise<T> {
    const hsm = await startSoftHsm(keys);
    const pin = pinFile(hsm);
    const made: KmsProvider[] = [];
    const provider = async (extra: Record<string, unknown> = {}, key = 'kek-a') => {
      const p = await createPkcs11ProviderForSlot(parseKmsSlot('hsm', slotOf(hsm, key, pin, extra)), {
        secrets: { allowedFilePrefixes: [hsm.dir] },
      });
      made.push(p);
      return p;
    };
    try {
      return await fn(hsm, provider);
    } finally {
      for (const p of made) await p.close?.();
      await hsm.stop();
    }
  }

  it('GCM and wrap-pad both round-trip, record the token and key, and reject a changed AAD', async () => {
    await withHsm(async (hsm, provider) => {
      for (const [mechanism, length, format] of [
        ['gcm', PKCS11_GCM_WRAPPED_LENGTH, 1],
        ['wrap-pad', PKCS11_WRAP_PAD_WRAPPED_LENGTH, 2],
      ] as const) {
        const p = await provider({ mechanism });
        const kek = Kek.generate();
        const wrapped = await p.wrap(kek, ctx());
        expect(wrapped.wrappedKek.length).toBe(length);
        expect(wrapped.wrappedKek[0]).toBe(format);
        expect(wrapped.keyId).toBe(`pkcs11:token=${hsm.tokenLabel};object=kek-a`);
        expect(wrapped.region).toBe('');
        expect((await p.unwrap(wrapped, ctx())).equals(kek)).toBe(true);
        // The binding is the AAD: another index or another context does not unwrap.
        await expect(p.unwrap(wrapped, ctx('idx-2'))).rejects.toThrow(UnwrapFailedError);
        await expect(
          p.unwrap(wrapped, ctx('idx-1', { encryptionContext: { tenant: 't2' } })),
        ).rejects.toThrow(UnwrapFailedError);
        // A slot of the other mode still unwraps it (the format byte says which).
        const other = await provider({ mechanism: mechanism === 'gcm' ? 'wrap-pad' : 'gcm' });
        expect((await other.unwrap(wrapped, ctx())).equals(kek)).toBe(true);
      }
      // `auto` picks GCM: SoftHSM2 has CKM_AES_GCM.
      const auto = await provider();
      expect((await auto.wrap(Kek.generate(), ctx())).wrappedKek[0]).toBe(1);
    });
  });

  it('a key by CKA_ID (id:<hex>) and a token by slot id', async () => {
    await withHsm(
      async (hsm, provider) => {
        const p = await provider({ tokenLabel: undefined, slotId: hsm.slotId }, 'id:c0ffee');
        const kek = Kek.generate();
        const wrapped = await p.wrap(kek, ctx());
        expect(wrapped.keyId).toBe(`pkcs11:token=${hsm.tokenLabel};id=%C0%FF%EE`);
        expect((await p.unwrap(wrapped, ctx())).equals(kek)).toBe(true);
        // An envelope naming another token is refused (by the worker, which knows the token's label).
        const moved = { ...wrapped, keyId: wrapped.keyId.replace(hsm.tokenLabel, 'another-token') };
        await expect(p.unwrap(moved, ctx())).rejects.toThrow(UnwrapFailedError);
      },
      { keys: [{ label: 'by-id', id: 'c0ffee' }] },
    );
  });

  it('a token reset mid-traffic (every session closed, the login gone) is recovered without a new provider', async () => {
    await withHsm(async (hsm, provider) => {
      const p = await provider({ sessions: 2 });
      const kek = Kek.generate();
      const wrapped = await p.wrap(kek, ctx());
      const traffic = async () => {
        for (let i = 0; i < 20; i++) {
          const got = await p.unwrap(wrapped, ctx());
          expect(got.equals(kek)).toBe(true);
          got.zero();
        }
      };
      const running = Promise.all([traffic(), traffic(), traffic()]);
      await new Promise((resolve) => setTimeout(resolve, 5));
      hsm.closeAllSessions();
      await new Promise((resolve) => setTimeout(resolve, 5));
      hsm.logout();
      await running;
      hsm.closeAllSessions();
      expect((await p.unwrap(wrapped, ctx())).equals(kek)).toBe(true);
    });
  });

  it('a vague CKR (GENERAL_ERROR, DEVICE_ERROR) on a session closed under the call is a lost session: a new one, up to two retries, never an unwrap failure', async () => {
    // SoftHSM2 answers CKR_GENERAL_ERROR (not SESSION_HANDLE_INVALID) to a call whose session
    // another thread's C_CloseAllSessions closed while it ran; the race itself is timing-bound,
    // so the seam closes the session and answers that code, and the worker decides as it would.
    await withHsm(async (_hsm, provider) => {
      let next: { failWith: number; sessionLosses?: number } | undefined;
      const seam: Pkcs11TestSeam = {
        beforeCall: () => {
          const fault = next;
          next = undefined;
          return fault;
        },
      };
      const p = await provider({ testSeam: seam, sessions: 1, mechanism: 'gcm' });
      const kek = Kek.generate();
      next = { failWith: 0x30 /* DEVICE_ERROR */, sessionLosses: 1 };
      const wrapped = await p.wrap(kek, ctx());
      next = { failWith: 0x05 /* GENERAL_ERROR */, sessionLosses: 1 };
      // Not an unwrap failure (which a multi-wrap client would count as tamper): the KEK.
      expect((await p.unwrap(wrapped, ctx())).equals(kek)).toBe(true);
      // Two losses in a row (a reset, then a logout during the retry) are recovered; a third is not.
      next = { failWith: 0x05, sessionLosses: 2 };
      expect((await p.unwrap(wrapped, ctx())).equals(kek)).toBe(true);
      next = { failWith: 0x05, sessionLosses: 3 };
      await expect(p.unwrap(wrapped, ctx())).rejects.toThrow(ProviderUnavailableError);
      expect((await p.unwrap(wrapped, ctx())).equals(kek)).toBe(true);
      // The mapping of that code on C_Decrypt is a bad tag (an injected code alone is never
      // retried); a real bad tag on a live session follows below.
      next = { failWith: 0x05 };
      await expect(p.unwrap(wrapped, ctx())).rejects.toThrow(UnwrapFailedError);
      next = { failWith: 0x30 };
      await expect(p.wrap(kek, ctx())).rejects.toThrow(ProviderUnavailableError);
      // A real bad tag (another index's AAD) on a live session is not retried into success either.
      await expect(p.unwrap(wrapped, ctx('idx-2'))).rejects.toThrow(UnwrapFailedError);
      expect((await p.unwrap(wrapped, ctx())).equals(kek)).toBe(true);
    });
  });

  it('a slow token call runs off the event loop: timers keep firing, and the deadline fails it closed', async () => {
    await withHsm(async (_hsm, provider) => {
      const { state, seam } = seamState();
      const p = await provider({ testSeam: seam, sessions: 1 });
      const kek = Kek.generate();
      const wrapped = await p.wrap(kek, ctx());
      state.delayMs = 1500;
      let ticks = 0;
      const timer = setInterval(() => ticks++, 10);
      const started = Date.now();
      const slow = p.unwrap(wrapped, ctx());
      // While the worker is blocked in its (seam-delayed) call, the event loop runs.
      while (Date.now() - started < 600) await new Promise((resolve) => setTimeout(resolve, 20));
      expect(ticks).toBeGreaterThan(5);
      expect((await slow).equals(kek)).toBe(true);
      clearInterval(timer);
      // With a deadline: DeadlineExceededError, and the pool is usable again once the token answers.
      state.delayMs = 3000;
      const err = await p
        .unwrap(wrapped, ctx('idx-1', { signal: AbortSignal.timeout(200) }))
        .catch((e: unknown) => e);
      expect(err).toBeInstanceOf(DeadlineExceededError);
      state.delayMs = 0;
      expect((await p.unwrap(wrapped, ctx())).equals(kek)).toBe(true);
    });
  });

  it('a slow call holds one session only: a call behind it on the other session answers first', async () => {
    await withHsm(async (_hsm, provider) => {
      const { state, seam } = seamState();
      const p = await provider({ testSeam: seam, sessions: 2 });
      const kek = Kek.generate();
      const wrapped = await p.wrap(kek, ctx());
      const order: string[] = [];
      state.delayMs = 2000;
      const slow = p.unwrap(wrapped, ctx()).then((k) => {
        order.push('slow');
        return k;
      });
      state.delayMs = 0;
      const fast = p.unwrap(wrapped, ctx()).then((k) => {
        order.push('fast');
        return k;
      });
      expect((await fast).equals(kek)).toBe(true);
      expect((await slow).equals(kek)).toBe(true);
      expect(order).toEqual(['fast', 'slow']);
    });
  });

  it('a wrong PIN is AccessDeniedError, and the PIN never appears in an error, a cause or a log', async () => {
    await withHsm(async (hsm, provider) => {
      const wrongPin = 'pin-5f3a9c-wrong';
      const wrongPinFile = join(hsm.dir, 'wrong-pin');
      writeFileSync(wrongPinFile, wrongPin, { mode: 0o600 });
      const logged: string[] = [];
      const spies = (['log', 'warn', 'error', 'info', 'debug'] as const).map((name) => {
        const original = console[name];
        console[name] = (...args: unknown[]) => {
          logged.push(args.map(String).join(' '));
        };
        return () => {
          console[name] = original;
        };
      });
      try {
        const p = await createPkcs11ProviderForSlot(
          parseKmsSlot('hsm', { ...slotOf(hsm, 'kek-a', wrongPinFile) }),
          { secrets: { allowedFilePrefixes: [hsm.dir] } },
        );
        const err = await p.wrap(Kek.generate(), ctx()).catch((e: unknown) => e);
        await p.close?.();
        expect(err).toBeInstanceOf(AccessDeniedError);
        expect((err as Error).message).toContain('0x000000a0');
        const good = await provider();
        const wrapped = await good.wrap(Kek.generate(), ctx());
        const bad = await p.unwrap(wrapped, ctx()).catch((e: unknown) => e);
        expect(bad).toBeInstanceOf(ProviderUnavailableError); // closed
        let text = '';
        for (let e: unknown = err; e instanceof Error; e = e.cause) {
          text += `${e.message} ${e.stack ?? ''} ${JSON.stringify(e)} ${String(e)}`;
        }
        for (const secret of [wrongPin, hsm.pin]) {
          expect(text).not.toContain(secret);
          expect(logged.join('\n')).not.toContain(secret);
        }
        expect(String(Object.values(p))).not.toContain(wrongPin);
      } finally {
        for (const restore of spies) restore();
      }
    });
  });

  it('typed errors: key not found, a key with usage off, an extractable key, a token that is absent', async () => {
    await withHsm(
      async (hsm, provider) => {
        await expect((await provider({}, 'no-such-key')).wrap(Kek.generate(), ctx())).rejects.toThrow(
          KeyNotFoundError,
        );
        await expect((await provider({}, 'no-encrypt')).wrap(Kek.generate(), ctx())).rejects.toThrow(
          KeyDisabledError,
        );
        await expect((await provider({}, 'exportable')).wrap(Kek.generate(), ctx())).rejects.toThrow(
          ConfigError,
        );
        const allowed = await provider({ allowExtractableKey: true }, 'exportable');
        expect((await allowed.wrap(Kek.generate(), ctx())).wrappedKek[0]).toBe(1);
        const absent = await provider({ tokenLabel: 'not-a-token' });
        const err = await absent.wrap(Kek.generate(), ctx()).catch((e: unknown) => e);
        expect(err).toBeInstanceOf(ProviderUnavailableError);
        expect((err as ProviderUnavailableError).retryable).toBe(true);
        // A key that loses its usage after a wrap: the unwrap is KeyDisabledError.
        const p = await provider();
        const wrapped = await p.wrap(Kek.generate(), ctx());
        hsm.setKeyAttributes('kek-a', { decrypt: false });
        await expect(p.unwrap(wrapped, ctx())).rejects.toThrow(KeyDisabledError);
        hsm.setKeyAttributes('kek-a', { decrypt: true });
        expect((await p.unwrap(wrapped, ctx())).length).toBe(32);
      },
      {
        keys: [
          'kek-a',
          { label: 'no-encrypt', encrypt: false },
          { label: 'exportable', extractable: true, sensitive: false },
        ],
      },
    );
  });

  it('the module cannot load: ConfigError; a bad slot: ConfigError naming the field', async () => {
    const pin = Uint8Array.from(Buffer.from('1234'));
    const p = await createPkcs11Provider({
      module: '/nonexistent/libpkcs11.so',
      tokenLabel: 't',
      key: 'k',
      pin,
    });
    await expect(p.wrap(Kek.generate(), ctx())).rejects.toThrow(ConfigError);
    await p.close?.();
    await expect(
      createPkcs11Provider({ module: 'relative.so', tokenLabel: 't', key: 'k', pin }),
    ).rejects.toThrow(/absolute path/);
    await expect(createPkcs11Provider({ module: '/m.so', key: 'k', pin })).rejects.toThrow(/tokenLabel/);
    await expect(
      createPkcs11Provider({ module: '/m.so', tokenLabel: 't', key: 'k', pin, mechanism: 'cbc' as never }),
    ).rejects.toThrow(/mechanism/);
    const env = { secrets: {} };
    await expect(
      createPkcs11ProviderForSlot(
        parseKmsSlot('s', { provider: 'pkcs11', keyId: 'k', options: { module: '/m.so', tokenLabel: 't' } }),
        env,
      ),
    ).rejects.toThrow(/options.pin/);
    await expect(
      createPkcs11ProviderForSlot(
        parseKmsSlot('s', {
          provider: 'pkcs11',
          keyId: 'k',
          options: { module: '/m.so', tokenLabel: 't', pin: 'env:X', pim: 1 },
        }),
        env,
      ),
    ).rejects.toThrow(/unknown pkcs11 slot option "pim"/);
    expect(() => parsePkcs11KeyRef('id:abc')).toThrow(ConfigError);
    expect(pkcs11KeyUri('my token;x', { label: 'a/b c' })).toBe(
      'pkcs11:token=my%20token%3Bx;object=a%2Fb%20c',
    );
  });

  it('CKR codes map to the typed errors', () => {
    const where = { slot: 'hsm' };
    const ckr = (code: number, fn: string, op: 'wrap' | 'unwrap' = 'unwrap') =>
      mapPkcs11Failure({ kind: 'ckr', ckr: code, fn, detail: '' }, op, where);
    expect(ckr(0xa0, 'C_Login')).toBeInstanceOf(AccessDeniedError);
    expect(ckr(0xa4, 'C_Login')).toBeInstanceOf(AccessDeniedError);
    expect(ckr(0x101, 'C_DecryptInit')).toBeInstanceOf(AccessDeniedError);
    expect(ckr(0x68, 'C_DecryptInit')).toBeInstanceOf(KeyDisabledError);
    expect(ckr(0x40, 'C_Decrypt')).toBeInstanceOf(UnwrapFailedError);
    expect(ckr(0x41, 'C_Decrypt')).toBeInstanceOf(UnwrapFailedError);
    expect(ckr(0x05, 'C_Decrypt')).toBeInstanceOf(UnwrapFailedError);
    expect(ckr(0x05, 'C_Login')).toBeInstanceOf(ProviderUnavailableError);
    for (const code of [0x30, 0x32, 0xe0, 0x06, 0xb3]) {
      const err = ckr(code, 'C_Decrypt');
      expect(err).toBeInstanceOf(ProviderUnavailableError);
      expect(err.retryable).toBe(true);
    }
    expect(ckr(0x70, 'C_EncryptInit', 'wrap')).toBeInstanceOf(ConfigError);
    expect(mapPkcs11Failure({ kind: 'not-found', detail: '' }, 'wrap', where)).toBeInstanceOf(
      KeyNotFoundError,
    );
  });

  it('doctor: ok on a good slot, AccessDenied advice naming the PIN on a wrong one', async () => {
    await withHsm(async (hsm) => {
      const pin = pinFile(hsm);
      const wrong = join(hsm.dir, 'wrong');
      writeFileSync(wrong, '0000', { mode: 0o600 });
      const registry = (file: string) => ({
        slots: { hsm: slotOf(hsm, 'kek-a', file) },
        secrets: { allowedFilePrefixes: [hsm.dir] },
        providers: { pkcs11: plugin.create },
      });
      // The wrong PIN first: PKCS#11 login is per process and token, so once a slot of this
      // process has logged in, a slot with a wrong PIN finds the token logged in (see the docs).
      const bad = await diagnoseSlot(new KmsRegistry(registry(wrong)), 'hsm');
      expect(bad.ok).toBe(false);
      const failed = bad.checks.find((c) => !c.ok);
      expect(failed?.error).toBeInstanceOf(AccessDeniedError);
      expect(failed?.advice).toContain('PIN');
      expect(JSON.stringify(bad)).not.toContain(hsm.pin);
      const good = await diagnoseSlot(new KmsRegistry(registry(pin)), 'hsm');
      expect(good.ok).toBe(true);
    });
  });

  it('through the client: create, unwrap, rotate on a pkcs11 slot', async () => {
    await withHsm(async (hsm) => {
      const pin = pinFile(hsm);
      const client = new KmsEnvelopeClient({
        store: StorageConfig.memory(),
        kms: {
          slots: { hsm: slotOf(hsm, 'kek-a', pin) },
          secrets: { allowedFilePrefixes: [hsm.dir] },
          providers: { pkcs11: plugin.create },
        },
      });
      const kek = await client.createIndex('orders', { slot: 'hsm' });
      expect((await client.unwrap('orders')).equals(kek)).toBe(true);
      await client.rotate('orders');
      expect((await client.unwrap('orders')).equals(kek)).toBe(true);
      expect((await client.getEnvelope('orders')).keyId).toBe(`pkcs11:token=${hsm.tokenLabel};object=kek-a`);
      await client.close();
    });
  });
});
