import { createRequire } from 'node:module';
import fc from 'fast-check';
import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  createGcpKmsProvider,
  createGcpKmsProviderForSlot,
  type GcpKmsClient,
  sdkLoggingEnablesKms,
} from '../../providers/gcp-kms.js';
import { ConfigError } from '../../src/errors.js';
import { parseKmsSlot } from '../../src/providers/slot.js';

const KEY = 'projects/p1/locations/us-east1/keyRings/ring/cryptoKeys/kek';

/** The logging library that the installed @google-cloud/kms uses, found the way the SDK finds it. */
interface LoggingUtils {
  getNodeBackend(): { setFilters(): void; isEnabled(namespace: string): boolean };
  setBackend(backend: unknown): void;
  log(namespace: string): unknown;
}
const require = createRequire(import.meta.url);
const loggingUtils = createRequire(createRequire(require.resolve('@google-cloud/kms')).resolve('google-gax'))(
  'google-logging-utils',
) as LoggingUtils;

/** What the library itself decides for `value`: would `log('kms')` print? */
function libraryLogsKms(value: string | undefined): boolean {
  if (value === undefined || value === '') return false;
  const saved = process.env.GOOGLE_SDK_NODE_LOGGING;
  process.env.GOOGLE_SDK_NODE_LOGGING = value;
  try {
    const backend = loggingUtils.getNodeBackend();
    backend.setFilters();
    return backend.isEnabled('kms');
  } finally {
    if (saved === undefined) delete process.env.GOOGLE_SDK_NODE_LOGGING;
    else process.env.GOOGLE_SDK_NODE_LOGGING = saved;
  }
}

const fakeClient = (): GcpKmsClient => ({
  encrypt: async () => [{}],
  decrypt: async () => [{}],
});
const slot = () =>
  parseKmsSlot('prod', { provider: 'gcp-kms', keyId: KEY, options: { client: fakeClient() } });

afterEach(() => {
  vi.unstubAllEnvs();
  loggingUtils.setBackend(undefined);
});

const REFUSED = [
  'kms',
  'KMS',
  'Kms',
  'k*',
  'K*',
  '*',
  '*s',
  'k*s',
  '**',
  'all',
  'foo,kms',
  'foo,KMS',
  'kms,pubsub',
  'pubsub,*',
  'pubsub,k*,storage',
  // The library would not match these, but a more lenient backend or version might.
  ' kms',
  'pubsub, kms',
  'ALL',
  'pubsub,all',
  'kms:*',
];
const ALLOWED = ['', 'pubsub', 'storage,pubsub', 'kmsx', 'k', 'km', 'km?', '-kms', 'k.s', 'pubsub:*'];

describe('GOOGLE_SDK_NODE_LOGGING: the gcp-kms provider refuses every value that lets the SDK log kms', () => {
  it.each(REFUSED)('refuses %j', async (value) => {
    vi.stubEnv('GOOGLE_SDK_NODE_LOGGING', value);
    expect(sdkLoggingEnablesKms(value)).toBe(true);
    expect(() => createGcpKmsProvider({ keyName: KEY, client: fakeClient() })).toThrow(ConfigError);
    expect(() => createGcpKmsProvider({ keyName: KEY, client: fakeClient() })).toThrow(
      /GOOGLE_SDK_NODE_LOGGING/,
    );
    await expect(createGcpKmsProviderForSlot(slot())).rejects.toThrow(ConfigError);
  });

  it.each(ALLOWED)('allows %j', async (value) => {
    vi.stubEnv('GOOGLE_SDK_NODE_LOGGING', value);
    expect(sdkLoggingEnablesKms(value)).toBe(false);
    expect(libraryLogsKms(value)).toBe(false);
    expect(() => createGcpKmsProvider({ keyName: KEY, client: fakeClient() })).not.toThrow();
    await expect(createGcpKmsProviderForSlot(slot())).resolves.toBeDefined();
  });

  it('allows it unset', () => {
    delete process.env.GOOGLE_SDK_NODE_LOGGING;
    expect(sdkLoggingEnablesKms(undefined)).toBe(false);
    expect(() => createGcpKmsProvider({ keyName: KEY, client: fakeClient() })).not.toThrow();
  });

  it('every value of the table that the installed logging library would log kms for is refused', () => {
    for (const value of [...REFUSED, ...ALLOWED]) {
      if (libraryLogsKms(value)) expect(sdkLoggingEnablesKms(value), value).toBe(true);
    }
    expect(libraryLogsKms('KMS')).toBe(true); // the library matches case-insensitively
    expect(libraryLogsKms('k*')).toBe(true); // and with wildcards
  });

  it('never lets through a value the installed logging library would log kms for (property)', () => {
    const value = fc
      .array(
        fc.constantFrom('k', 'K', 'm', 'M', 's', 'S', '*', ',', ' ', 'a', 'l', 'L', ':', '-', '.', '?', '|'),
        {
          maxLength: 10,
        },
      )
      .map((chars) => chars.join(''));
    fc.assert(
      fc.property(value, (v) => {
        if (libraryLogsKms(v)) expect(sdkLoggingEnablesKms(v), JSON.stringify(v)).toBe(true);
      }),
      { numRuns: 3000 },
    );
  });

  it('refuses a client whose kms logger is live because code set a logging backend (no variable set)', async () => {
    delete process.env.GOOGLE_SDK_NODE_LOGGING;
    loggingUtils.setBackend(loggingUtils.getNodeBackend());
    const logged = { ...fakeClient(), _log: loggingUtils.log('kms') };
    expect(() => createGcpKmsProvider({ keyName: KEY, client: logged })).toThrow(ConfigError);
    loggingUtils.setBackend(undefined);
    // Without a backend and without the variable, the SDK's logger is the library's no-op.
    const quiet = { ...fakeClient(), _log: loggingUtils.log('kms') };
    expect(() => createGcpKmsProvider({ keyName: KEY, client: quiet })).not.toThrow();
  });
});
