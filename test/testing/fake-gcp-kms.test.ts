/**
 * The fake Cloud KMS checked against what the service documents, driven by the plain SDK client
 * (`KeyManagementServiceClient` from `@google-cloud/kms`), not by our provider.
 */
import { KeyManagementServiceClient } from '@google-cloud/kms';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { crc32c } from '../../src/envelope/checksum.js';
import { type FakeGcpKms, startFakeGcpKms } from '../../src/testing/index.js';

const KEY = 'projects/fake-project/locations/global/keyRings/ring/cryptoKeys/a';
const OTHER = 'projects/fake-project/locations/global/keyRings/ring/cryptoKeys/b';
const NO_RETRY = { retry: null, timeout: 5000 };

// gRPC status codes.
const INVALID_ARGUMENT = 3;
const DEADLINE_EXCEEDED = 4;
const NOT_FOUND = 5;
const RESOURCE_EXHAUSTED = 8;
const FAILED_PRECONDITION = 9;
const UNIMPLEMENTED = 12;
const UNAVAILABLE = 14;

const crc = (bytes: Uint8Array) => ({ value: crc32c(bytes) });
const codeOf = (promise: Promise<unknown>) =>
  promise.then(
    () => 'resolved',
    (err: { code?: number }) => err.code,
  );

describe('fake Cloud KMS, driven by the plain SDK client', () => {
  let fake: FakeGcpKms;
  let client: KeyManagementServiceClient;

  beforeAll(async () => {
    fake = await startFakeGcpKms({ cryptoKeys: [KEY, OTHER] });
    client = new KeyManagementServiceClient(fake.clientOptions());
  });
  afterAll(async () => {
    await client.close();
    await fake.close();
  });

  it('Encrypt with a CryptoKey uses its primary version; the checksums come back verified and right', async () => {
    const plaintext = Buffer.from('a 32-byte key would go here.....');
    const aad = Buffer.from('binding');
    const [response] = await client.encrypt({
      name: KEY,
      plaintext,
      additionalAuthenticatedData: aad,
      plaintextCrc32c: crc(plaintext),
      additionalAuthenticatedDataCrc32c: crc(aad),
    });
    expect(response.name).toBe(`${KEY}/cryptoKeyVersions/1`);
    expect(response.verifiedPlaintextCrc32c).toBe(true);
    expect(response.verifiedAdditionalAuthenticatedDataCrc32c).toBe(true);
    const ciphertext = Buffer.from(response.ciphertext as Uint8Array);
    expect(ciphertext.includes(plaintext)).toBe(false);
    // Int64Value fields arrive as strings over gRPC.
    expect(response.ciphertextCrc32c?.value).toBe(String(crc32c(ciphertext)));
    expect(response.protectionLevel).toBe('SOFTWARE');

    const [decrypted] = await client.decrypt({ name: KEY, ciphertext, additionalAuthenticatedData: aad });
    expect(Buffer.from(decrypted.plaintext as Uint8Array).equals(plaintext)).toBe(true);
    expect(decrypted.plaintextCrc32c?.value).toBe(String(crc32c(plaintext)));
    expect(decrypted.usedPrimary).toBe(true);
  });

  it('without request checksums the verified flags are false', async () => {
    const [response] = await client.encrypt({ name: KEY, plaintext: Buffer.from('x') });
    expect(response.verifiedPlaintextCrc32c).toBe(false);
    expect(response.verifiedAdditionalAuthenticatedDataCrc32c).toBe(false);
  });

  it('a request checksum that does not match its field is INVALID_ARGUMENT', async () => {
    const plaintext = Buffer.from('secret');
    const [good] = await client.encrypt({ name: KEY, plaintext });
    const ciphertext = good.ciphertext as Uint8Array;
    const wrong = { value: (crc32c(plaintext) + 1) >>> 0 };
    expect(await codeOf(client.encrypt({ name: KEY, plaintext, plaintextCrc32c: wrong }, NO_RETRY))).toBe(
      INVALID_ARGUMENT,
    );
    expect(
      await codeOf(
        client.encrypt(
          {
            name: KEY,
            plaintext,
            additionalAuthenticatedData: Buffer.from('a'),
            additionalAuthenticatedDataCrc32c: wrong,
          },
          NO_RETRY,
        ),
      ),
    ).toBe(INVALID_ARGUMENT);
    expect(await codeOf(client.decrypt({ name: KEY, ciphertext, ciphertextCrc32c: wrong }, NO_RETRY))).toBe(
      INVALID_ARGUMENT,
    );
    // A zero checksum is a checksum too (Int64Value present with value 0).
    expect(
      await codeOf(client.encrypt({ name: KEY, plaintext, plaintextCrc32c: { value: 0 } }, NO_RETRY)),
    ).toBe(INVALID_ARGUMENT);
  });

  it('Decrypt with another AAD, another CryptoKey or tampered ciphertext is INVALID_ARGUMENT', async () => {
    const [good] = await client.encrypt({
      name: KEY,
      plaintext: Buffer.from('secret'),
      additionalAuthenticatedData: Buffer.from('index=a'),
    });
    const ciphertext = Buffer.from(good.ciphertext as Uint8Array);
    const aad = Buffer.from('index=a');
    expect(
      await codeOf(
        client.decrypt(
          { name: KEY, ciphertext, additionalAuthenticatedData: Buffer.from('index=b') },
          NO_RETRY,
        ),
      ),
    ).toBe(INVALID_ARGUMENT);
    expect(await codeOf(client.decrypt({ name: KEY, ciphertext }, NO_RETRY))).toBe(INVALID_ARGUMENT);
    expect(
      await codeOf(client.decrypt({ name: OTHER, ciphertext, additionalAuthenticatedData: aad }, NO_RETRY)),
    ).toBe(INVALID_ARGUMENT);
    for (const at of [0, 3, 10, ciphertext.length - 1]) {
      const tampered = Buffer.from(ciphertext);
      tampered[at]! ^= 0x01;
      expect(
        await codeOf(
          client.decrypt({ name: KEY, ciphertext: tampered, additionalAuthenticatedData: aad }, NO_RETRY),
        ),
        `byte ${at}`,
      ).toBe(INVALID_ARGUMENT);
    }
    expect(
      await codeOf(
        client.decrypt(
          { name: KEY, ciphertext: Buffer.alloc(3), additionalAuthenticatedData: aad },
          NO_RETRY,
        ),
      ),
    ).toBe(INVALID_ARGUMENT);
  });

  it('Decrypt takes a CryptoKey, not a version; unknown keys are NOT_FOUND', async () => {
    const [good] = await client.encrypt({ name: KEY, plaintext: Buffer.from('s') });
    expect(
      await codeOf(
        client.decrypt({ name: `${KEY}/cryptoKeyVersions/1`, ciphertext: good.ciphertext }, NO_RETRY),
      ),
    ).toBe(INVALID_ARGUMENT);
    const missing = 'projects/fake-project/locations/global/keyRings/ring/cryptoKeys/missing';
    expect(await codeOf(client.encrypt({ name: missing, plaintext: Buffer.from('s') }, NO_RETRY))).toBe(
      NOT_FOUND,
    );
    expect(await codeOf(client.decrypt({ name: missing, ciphertext: good.ciphertext }, NO_RETRY))).toBe(
      NOT_FOUND,
    );
    expect(await codeOf(client.getCryptoKey({ name: missing }, NO_RETRY))).toBe(NOT_FOUND);
  });

  it('an empty or oversized plaintext is INVALID_ARGUMENT', async () => {
    expect(await codeOf(client.encrypt({ name: KEY, plaintext: Buffer.alloc(0) }, NO_RETRY))).toBe(
      INVALID_ARGUMENT,
    );
    expect(
      await codeOf(client.encrypt({ name: KEY, plaintext: Buffer.alloc(64 * 1024 + 1) }, NO_RETRY)),
    ).toBe(INVALID_ARGUMENT);
  });

  it('rotation: a new primary for Encrypt; older ciphertexts still decrypt (usedPrimary false)', async () => {
    const key = 'projects/fake-project/locations/global/keyRings/ring/cryptoKeys/rotating';
    fake.createCryptoKey(key);
    const [v1] = await client.encrypt({ name: key, plaintext: Buffer.from('one') });
    const second = fake.rotate(key);
    expect(second).toBe(`${key}/cryptoKeyVersions/2`);
    const [cryptoKey] = await client.getCryptoKey({ name: key });
    expect(cryptoKey.primary?.name).toBe(second);
    expect(cryptoKey.purpose).toBe('ENCRYPT_DECRYPT');
    const [v2] = await client.encrypt({ name: key, plaintext: Buffer.from('two') });
    expect(v2.name).toBe(second);
    const [old] = await client.decrypt({ name: key, ciphertext: v1.ciphertext });
    expect(Buffer.from(old.plaintext as Uint8Array).toString()).toBe('one');
    expect(old.usedPrimary).toBe(false);
    // Encrypt may name a version explicitly.
    const [explicit] = await client.encrypt({
      name: `${key}/cryptoKeyVersions/1`,
      plaintext: Buffer.from('x'),
    });
    expect(explicit.name).toBe(`${key}/cryptoKeyVersions/1`);
    // CreateCryptoKeyVersion adds a version without making it primary.
    const [third] = await client.createCryptoKeyVersion({ parent: key, cryptoKeyVersion: {} });
    expect(third.name).toBe(`${key}/cryptoKeyVersions/3`);
    expect((await client.getCryptoKey({ name: key }))[0].primary?.name).toBe(second);
  });

  it('a version that is not ENABLED is FAILED_PRECONDITION for Encrypt and Decrypt; its state is reported', async () => {
    const key = 'projects/fake-project/locations/global/keyRings/ring/cryptoKeys/states';
    fake.createCryptoKey(key);
    const [good] = await client.encrypt({ name: key, plaintext: Buffer.from('s') });
    const version = `${key}/cryptoKeyVersions/1`;
    for (const state of ['DISABLED', 'DESTROYED'] as const) {
      fake.setVersionState(version, state);
      expect((await client.getCryptoKeyVersion({ name: version }))[0].state).toBe(state);
      expect(await codeOf(client.encrypt({ name: key, plaintext: Buffer.from('s') }, NO_RETRY))).toBe(
        FAILED_PRECONDITION,
      );
      expect(await codeOf(client.decrypt({ name: key, ciphertext: good.ciphertext }, NO_RETRY))).toBe(
        FAILED_PRECONDITION,
      );
    }
    fake.setVersionState(key, 'ENABLED');
    await expect(client.decrypt({ name: key, ciphertext: good.ciphertext })).resolves.toBeDefined();
  });

  it("with the SDK's default settings UNAVAILABLE is retried (why the provider turns that off)", async () => {
    const before = fake.calls().length;
    fake.failNext(2, 'UNAVAILABLE');
    await expect(client.encrypt({ name: KEY, plaintext: Buffer.from('s') })).resolves.toBeDefined();
    expect(fake.calls().length - before).toBe(3);
    fake.failNext(1, 'UNAVAILABLE');
    expect(await codeOf(client.encrypt({ name: KEY, plaintext: Buffer.from('s') }, NO_RETRY))).toBe(
      UNAVAILABLE,
    );
    fake.failNext(1, 'RESOURCE_EXHAUSTED');
    expect(await codeOf(client.encrypt({ name: KEY, plaintext: Buffer.from('s') }, NO_RETRY))).toBe(
      RESOURCE_EXHAUSTED,
    );
    expect(fake.calls().at(-1)?.status).toBe('RESOURCE_EXHAUSTED');
  });

  it('corruptNext sends a wrong response checksum once', async () => {
    fake.corruptNext(1);
    const [bad] = await client.encrypt({ name: KEY, plaintext: Buffer.from('s') });
    expect(Number(bad.ciphertextCrc32c?.value)).not.toBe(crc32c(bad.ciphertext as Uint8Array));
    const [good] = await client.encrypt({ name: KEY, plaintext: Buffer.from('s') });
    expect(Number(good.ciphertextCrc32c?.value)).toBe(crc32c(good.ciphertext as Uint8Array));
  });

  it('a delay past the call timeout is DEADLINE_EXCEEDED and the fake sees the call cancelled', async () => {
    fake.delay(2000);
    expect(
      await codeOf(client.encrypt({ name: KEY, plaintext: Buffer.from('s') }, { retry: null, timeout: 100 })),
    ).toBe(DEADLINE_EXCEEDED);
    fake.delay(0);
    await expect.poll(() => fake.calls().at(-1)?.status).toBe('CANCELLED');
  });

  it('methods it does not implement answer UNIMPLEMENTED', async () => {
    expect(
      await codeOf(
        client.getKeyRing({ name: 'projects/fake-project/locations/global/keyRings/ring' }, NO_RETRY),
      ),
    ).toBe(UNIMPLEMENTED);
  });

  it('rejects malformed and duplicate key names, unknown keys in its controls', () => {
    expect(() => fake.createCryptoKey('projects/p/keyRings/r/cryptoKeys/k')).toThrow(/not a CryptoKey name/);
    expect(() => fake.createCryptoKey(KEY)).toThrow(/already exists/);
    expect(() => fake.rotate(`${KEY}-nope`)).toThrow();
    expect(() => fake.setVersionState(`${KEY}/cryptoKeyVersions/99`, 'DISABLED')).toThrow();
  });
});

it('after close() the port no longer answers', async () => {
  const fake = await startFakeGcpKms({ cryptoKeys: [KEY] });
  const client = new KeyManagementServiceClient(fake.clientOptions());
  await client.encrypt({ name: KEY, plaintext: Buffer.from('s') });
  await fake.close();
  await fake.close(); // idempotent
  const fresh = new KeyManagementServiceClient(fake.clientOptions());
  expect(
    await codeOf(fresh.encrypt({ name: KEY, plaintext: Buffer.from('s') }, { retry: null, timeout: 2000 })),
  ).toBe(UNAVAILABLE);
  await client.close();
  await fresh.close();
});
