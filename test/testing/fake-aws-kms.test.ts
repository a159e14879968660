// The fake KMS driven by the plain @aws-sdk/client-kms, checked against what AWS documents.
import {
  CancelKeyDeletionCommand,
  CreateAliasCommand,
  CreateKeyCommand,
  DecryptCommand,
  DescribeKeyCommand,
  DisabledException,
  DisableKeyCommand,
  EnableKeyCommand,
  EncryptCommand,
  GenerateDataKeyCommand,
  GenerateDataKeyWithoutPlaintextCommand,
  IncorrectKeyException,
  InvalidCiphertextException,
  KMSClient,
  KMSInvalidStateException,
  KMSServiceException,
  ListAliasesCommand,
  ListKeysCommand,
  NotFoundException,
  ReEncryptCommand,
  ScheduleKeyDeletionCommand,
} from '@aws-sdk/client-kms';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type FakeAws, startFakeAws } from '../../src/testing/fake-aws.js';

let aws: FakeAws;
let kms: KMSClient;

beforeAll(async () => {
  aws = await startFakeAws();
  kms = new KMSClient(aws.clientConfig());
});

afterAll(async () => {
  kms.destroy();
  await aws.close();
});

const plaintext = Buffer.from('0123456789abcdef0123456789abcdef');
const context = { index: 'orders', slot: 'a' };

/** The SDK error a call rejects with (fails the test when it resolves). */
async function rejection(promise: Promise<unknown>): Promise<KMSServiceException> {
  const error = await promise.then(
    () => expect.fail('expected the call to fail'),
    (caught: unknown) => caught,
  );
  expect(error).toBeInstanceOf(KMSServiceException);
  return error as KMSServiceException;
}

async function encrypt(keyId: string, encryptionContext: Record<string, string> = context) {
  const out = await kms.send(
    new EncryptCommand({ KeyId: keyId, Plaintext: plaintext, EncryptionContext: encryptionContext }),
  );
  return out.CiphertextBlob!;
}

describe('Encrypt / Decrypt', () => {
  it('round-trips through key id, key ARN, alias and alias ARN; answers carry the key ARN', async () => {
    const key = aws.createKey({ alias: 'alias/round-trip' });
    expect(key.arn).toBe(`arn:aws:kms:us-east-1:111122223333:key/${key.keyId}`);
    for (const ref of [
      key.keyId,
      key.arn,
      'alias/round-trip',
      'arn:aws:kms:us-east-1:111122223333:alias/round-trip',
    ]) {
      const encrypted = await kms.send(
        new EncryptCommand({ KeyId: ref, Plaintext: plaintext, EncryptionContext: context }),
      );
      expect(encrypted.KeyId).toBe(key.arn);
      expect(encrypted.EncryptionAlgorithm).toBe('SYMMETRIC_DEFAULT');
      expect(Buffer.from(encrypted.CiphertextBlob!).includes(plaintext)).toBe(false);
      // The blob names its key: Decrypt needs no KeyId, and accepts every form of the right one.
      for (const keyId of [undefined, ref]) {
        const decrypted = await kms.send(
          new DecryptCommand({
            CiphertextBlob: encrypted.CiphertextBlob,
            EncryptionContext: context,
            KeyId: keyId,
          }),
        );
        expect(decrypted.KeyId).toBe(key.arn);
        expect(Buffer.from(decrypted.Plaintext!)).toEqual(plaintext);
      }
    }
  });

  it('encrypts the same plaintext differently each time (random IV)', async () => {
    const { keyId } = aws.createKey();
    const [first, second] = [await encrypt(keyId), await encrypt(keyId)];
    expect(Buffer.from(first)).not.toEqual(Buffer.from(second));
  });

  it('enforces the encryption context: missing or different fails, reordered is the same context', async () => {
    const { keyId } = aws.createKey();
    const blob = await encrypt(keyId, { a: '1', b: '2' });
    const reordered = await kms.send(
      new DecryptCommand({ CiphertextBlob: blob, EncryptionContext: { b: '2', a: '1' } }),
    );
    expect(Buffer.from(reordered.Plaintext!)).toEqual(plaintext);
    const wrongContexts: (Record<string, string> | undefined)[] = [
      undefined,
      {},
      { a: '1' },
      { a: '1', b: '3' },
      { a: '1', b: '2', c: '3' },
      { a: '2', b: '1' },
    ];
    for (const wrong of wrongContexts) {
      const error = await rejection(
        kms.send(new DecryptCommand({ CiphertextBlob: blob, EncryptionContext: wrong })),
      );
      expect(error).toBeInstanceOf(InvalidCiphertextException);
      expect(error.$metadata.httpStatusCode).toBe(400);
    }
    // No context at encryption: none (or an empty map) at decryption.
    const bare = (await kms.send(new EncryptCommand({ KeyId: keyId, Plaintext: plaintext }))).CiphertextBlob;
    const decrypted = await kms.send(new DecryptCommand({ CiphertextBlob: bare, EncryptionContext: {} }));
    expect(Buffer.from(decrypted.Plaintext!)).toEqual(plaintext);
    expect(
      await rejection(kms.send(new DecryptCommand({ CiphertextBlob: bare, EncryptionContext: context }))),
    ).toBeInstanceOf(InvalidCiphertextException);
  });

  it('Decrypt with the KeyId of another key is IncorrectKeyException', async () => {
    const { keyId } = aws.createKey();
    const other = aws.createKey({ alias: 'alias/other-key' });
    const blob = await encrypt(keyId);
    for (const ref of [other.keyId, other.arn, 'alias/other-key']) {
      const error = await rejection(
        kms.send(new DecryptCommand({ CiphertextBlob: blob, EncryptionContext: context, KeyId: ref })),
      );
      expect(error).toBeInstanceOf(IncorrectKeyException);
    }
  });

  it('a tampered, truncated or foreign blob is InvalidCiphertextException', async () => {
    const { keyId } = aws.createKey();
    const blob = Buffer.from(await encrypt(keyId));
    for (let position = 0; position < blob.length; position += 7) {
      const tampered = Buffer.from(blob);
      tampered[position] = tampered[position]! ^ 0x01;
      const error = await rejection(
        kms.send(new DecryptCommand({ CiphertextBlob: tampered, EncryptionContext: context })),
      );
      expect(error).toBeInstanceOf(InvalidCiphertextException);
    }
    for (const broken of [
      blob.subarray(0, 40),
      blob.subarray(0, blob.length - 1),
      Buffer.from('not a blob'),
    ]) {
      const error = await rejection(
        kms.send(new DecryptCommand({ CiphertextBlob: broken, EncryptionContext: context })),
      );
      expect(error).toBeInstanceOf(InvalidCiphertextException);
    }
    // A blob of another fake (another account's key material) does not open here.
    const elsewhere = await startFakeAws();
    try {
      const foreign = new KMSClient(elsewhere.clientConfig());
      const out = await foreign.send(
        new EncryptCommand({
          KeyId: elsewhere.createKey().keyId,
          Plaintext: plaintext,
          EncryptionContext: context,
        }),
      );
      foreign.destroy();
      const error = await rejection(
        kms.send(new DecryptCommand({ CiphertextBlob: out.CiphertextBlob, EncryptionContext: context })),
      );
      expect(error).toBeInstanceOf(InvalidCiphertextException);
    } finally {
      await elsewhere.close();
    }
  });

  it('unknown keys, aliases and ARNs of another account or region are NotFoundException', async () => {
    const { keyId } = aws.createKey();
    for (const ref of [
      '00000000-0000-0000-0000-000000000000',
      'alias/missing',
      'not-a-key-id',
      `arn:aws:kms:eu-west-1:111122223333:key/${keyId}`,
      `arn:aws:kms:us-east-1:999999999999:key/${keyId}`,
      'arn:aws:kms:us-east-1:111122223333:key/alias/round-trip',
    ]) {
      const error = await rejection(kms.send(new EncryptCommand({ KeyId: ref, Plaintext: plaintext })));
      expect(error).toBeInstanceOf(NotFoundException);
      expect(error.$metadata.httpStatusCode).toBe(400);
    }
  });

  it('validates like KMS: no KeyId, empty or oversized plaintext', async () => {
    const { keyId } = aws.createKey();
    for (const input of [{ Plaintext: plaintext }, { KeyId: keyId, Plaintext: Buffer.alloc(4097) }]) {
      const error = await rejection(
        kms.send(new EncryptCommand(input as { KeyId: string; Plaintext: Uint8Array })),
      );
      expect(error.name).toBe('ValidationException');
    }
    const max = await kms.send(new EncryptCommand({ KeyId: keyId, Plaintext: Buffer.alloc(4096, 1) }));
    expect(max.CiphertextBlob!.length).toBeGreaterThan(4096);
  });
});

describe('key states', () => {
  it('a disabled key refuses Encrypt, Decrypt and GenerateDataKey with DisabledException, until enabled', async () => {
    const { keyId, arn } = aws.createKey();
    const blob = await encrypt(keyId);
    await kms.send(new DisableKeyCommand({ KeyId: keyId }));
    const described = await kms.send(new DescribeKeyCommand({ KeyId: keyId }));
    expect(described.KeyMetadata).toMatchObject({ KeyState: 'Disabled', Enabled: false, Arn: arn });
    for (const call of [
      kms.send(new EncryptCommand({ KeyId: keyId, Plaintext: plaintext })),
      kms.send(new DecryptCommand({ CiphertextBlob: blob, EncryptionContext: context })),
      kms.send(new GenerateDataKeyCommand({ KeyId: keyId, KeySpec: 'AES_256' })),
    ]) {
      const error = await rejection(call);
      expect(error).toBeInstanceOf(DisabledException);
      expect(error.message).toContain(arn);
      expect(error.$metadata.httpStatusCode).toBe(400);
    }
    await kms.send(new EnableKeyCommand({ KeyId: keyId }));
    const decrypted = await kms.send(
      new DecryptCommand({ CiphertextBlob: blob, EncryptionContext: context }),
    );
    expect(Buffer.from(decrypted.Plaintext!)).toEqual(plaintext);
  });

  it('the handle sets states too (by alias)', async () => {
    const { keyId } = aws.createKey({ alias: 'state-by-alias' }); // `alias/` is added
    aws.setKeyState('alias/state-by-alias', 'Disabled');
    expect(await rejection(encrypt(keyId))).toBeInstanceOf(DisabledException);
    aws.setKeyState('alias/state-by-alias', 'PendingDeletion');
    expect(await rejection(encrypt(keyId))).toBeInstanceOf(KMSInvalidStateException);
    aws.setKeyState(keyId, 'Enabled');
    await expect(encrypt(keyId)).resolves.toBeDefined();
    expect(() => aws.setKeyState('alias/none-such', 'Disabled')).toThrow(/not found/);
  });

  it('a key pending deletion is KMSInvalidStateException; cancelling leaves it disabled', async () => {
    const { keyId, arn } = aws.createKey();
    const blob = await encrypt(keyId);
    const scheduled = await kms.send(
      new ScheduleKeyDeletionCommand({ KeyId: keyId, PendingWindowInDays: 7 }),
    );
    expect(scheduled).toMatchObject({ KeyId: arn, KeyState: 'PendingDeletion', PendingWindowInDays: 7 });
    expect(scheduled.DeletionDate!.getTime()).toBeGreaterThan(Date.now() + 6 * 86_400_000);
    const described = await kms.send(new DescribeKeyCommand({ KeyId: arn }));
    expect(described.KeyMetadata).toMatchObject({ KeyState: 'PendingDeletion', Enabled: false });
    expect(described.KeyMetadata!.DeletionDate).toBeInstanceOf(Date);
    for (const call of [
      kms.send(new DecryptCommand({ CiphertextBlob: blob, EncryptionContext: context })),
      kms.send(new EncryptCommand({ KeyId: keyId, Plaintext: plaintext })),
      kms.send(new EnableKeyCommand({ KeyId: keyId })),
    ]) {
      expect(await rejection(call)).toBeInstanceOf(KMSInvalidStateException);
    }
    const cancelled = await kms.send(new CancelKeyDeletionCommand({ KeyId: keyId }));
    expect(cancelled.KeyId).toBe(arn);
    const after = await kms.send(new DescribeKeyCommand({ KeyId: keyId }));
    expect(after.KeyMetadata).toMatchObject({ KeyState: 'Disabled' });
    expect(after.KeyMetadata!.DeletionDate).toBeUndefined();
    expect(await rejection(kms.send(new CancelKeyDeletionCommand({ KeyId: keyId })))).toBeInstanceOf(
      KMSInvalidStateException,
    );
    expect(
      (await rejection(kms.send(new ScheduleKeyDeletionCommand({ KeyId: keyId, PendingWindowInDays: 3 }))))
        .name,
    ).toBe('ValidationException');
  });
});

describe('ReEncrypt, GenerateDataKey, DescribeKey, CreateKey/CreateAlias, listings', () => {
  it('ReEncrypt moves a blob to another key and context without showing the plaintext', async () => {
    const source = aws.createKey();
    const destination = aws.createKey({ alias: 'alias/re-encrypt-to' });
    const blob = await encrypt(source.keyId);
    const moved = await kms.send(
      new ReEncryptCommand({
        CiphertextBlob: blob,
        SourceEncryptionContext: context,
        DestinationKeyId: 'alias/re-encrypt-to',
        DestinationEncryptionContext: { index: 'orders', slot: 'b' },
      }),
    );
    expect(moved).toMatchObject({ SourceKeyId: source.arn, KeyId: destination.arn });
    expect(moved).not.toHaveProperty('Plaintext');
    const decrypted = await kms.send(
      new DecryptCommand({
        CiphertextBlob: moved.CiphertextBlob,
        EncryptionContext: { index: 'orders', slot: 'b' },
      }),
    );
    expect(decrypted.KeyId).toBe(destination.arn);
    expect(Buffer.from(decrypted.Plaintext!)).toEqual(plaintext);
    // The old context does not open the new blob; the source context must be right; SourceKeyId is checked.
    expect(
      await rejection(
        kms.send(new DecryptCommand({ CiphertextBlob: moved.CiphertextBlob, EncryptionContext: context })),
      ),
    ).toBeInstanceOf(InvalidCiphertextException);
    expect(
      await rejection(
        kms.send(
          new ReEncryptCommand({
            CiphertextBlob: blob,
            SourceEncryptionContext: {},
            DestinationKeyId: destination.keyId,
          }),
        ),
      ),
    ).toBeInstanceOf(InvalidCiphertextException);
    expect(
      await rejection(
        kms.send(
          new ReEncryptCommand({
            CiphertextBlob: blob,
            SourceEncryptionContext: context,
            SourceKeyId: destination.keyId,
            DestinationKeyId: destination.keyId,
          }),
        ),
      ),
    ).toBeInstanceOf(IncorrectKeyException);
    aws.setKeyState(destination.keyId, 'Disabled');
    expect(
      await rejection(
        kms.send(
          new ReEncryptCommand({
            CiphertextBlob: blob,
            SourceEncryptionContext: context,
            DestinationKeyId: destination.keyId,
          }),
        ),
      ),
    ).toBeInstanceOf(DisabledException);
  });

  it('GenerateDataKey gives a plaintext key and its blob under the context', async () => {
    const { keyId, arn } = aws.createKey();
    const dataKey = await kms.send(
      new GenerateDataKeyCommand({ KeyId: keyId, KeySpec: 'AES_256', EncryptionContext: context }),
    );
    expect(dataKey.KeyId).toBe(arn);
    expect(dataKey.Plaintext).toHaveLength(32);
    const decrypted = await kms.send(
      new DecryptCommand({ CiphertextBlob: dataKey.CiphertextBlob, EncryptionContext: context }),
    );
    expect(Buffer.from(decrypted.Plaintext!)).toEqual(Buffer.from(dataKey.Plaintext!));
    const blobOnly = await kms.send(
      new GenerateDataKeyWithoutPlaintextCommand({
        KeyId: keyId,
        KeySpec: 'AES_256',
        EncryptionContext: context,
      }),
    );
    expect(blobOnly).not.toHaveProperty('Plaintext');
    const opened = await kms.send(
      new DecryptCommand({ CiphertextBlob: blobOnly.CiphertextBlob, EncryptionContext: context }),
    );
    expect(opened.Plaintext).toHaveLength(32);
    const short = await kms.send(new GenerateDataKeyCommand({ KeyId: keyId, NumberOfBytes: 16 }));
    expect(short.Plaintext).toHaveLength(16);
    for (const input of [
      { KeyId: keyId },
      { KeyId: keyId, KeySpec: 'AES_256' as const, NumberOfBytes: 32 },
    ]) {
      expect((await rejection(kms.send(new GenerateDataKeyCommand(input)))).name).toBe('ValidationException');
    }
  });

  it('CreateKey and CreateAlias over the wire; DescribeKey gives the ARN; listings page', async () => {
    const created = await kms.send(new CreateKeyCommand({ Description: 'made by the SDK' }));
    const metadata = created.KeyMetadata!;
    expect(metadata).toMatchObject({
      AWSAccountId: '111122223333',
      KeyState: 'Enabled',
      Enabled: true,
      Description: 'made by the SDK',
      KeyUsage: 'ENCRYPT_DECRYPT',
      KeySpec: 'SYMMETRIC_DEFAULT',
      Arn: `arn:aws:kms:us-east-1:111122223333:key/${metadata.KeyId}`,
    });
    expect(metadata.CreationDate).toBeInstanceOf(Date);
    await kms.send(new CreateAliasCommand({ AliasName: 'alias/by-sdk', TargetKeyId: metadata.KeyId }));
    const described = await kms.send(new DescribeKeyCommand({ KeyId: 'alias/by-sdk' }));
    expect(described.KeyMetadata!.Arn).toBe(metadata.Arn);
    expect(
      (
        await rejection(
          kms.send(new CreateAliasCommand({ AliasName: 'alias/by-sdk', TargetKeyId: metadata.KeyId })),
        )
      ).name,
    ).toBe('AlreadyExistsException');
    expect(
      (
        await rejection(
          kms.send(new CreateAliasCommand({ AliasName: 'alias/aws/kms', TargetKeyId: metadata.KeyId })),
        )
      ).name,
    ).toBe('InvalidAliasNameException');
    expect((await rejection(kms.send(new CreateKeyCommand({ KeySpec: 'RSA_2048' })))).name).toBe(
      'ValidationException',
    );

    const aliases = await kms.send(new ListAliasesCommand({ KeyId: metadata.KeyId }));
    expect(aliases.Aliases).toEqual([
      {
        AliasName: 'alias/by-sdk',
        AliasArn: 'arn:aws:kms:us-east-1:111122223333:alias/by-sdk',
        TargetKeyId: metadata.KeyId,
      },
    ]);
    const seen: string[] = [];
    let marker: string | undefined;
    do {
      const page = await kms.send(new ListKeysCommand({ Limit: 2, Marker: marker }));
      expect(page.Keys!.length).toBeLessThanOrEqual(2);
      seen.push(...page.Keys!.map((key) => key.KeyId!));
      marker = page.Truncated ? page.NextMarker : undefined;
    } while (marker !== undefined);
    expect(seen).toContain(metadata.KeyId);
    expect(new Set(seen).size).toBe(seen.length);
  });
});

describe('access lists', () => {
  it('restrictKey admits only the listed access key ids (AccessDeniedException names the caller)', async () => {
    const { keyId, arn } = aws.createKey();
    const blob = await encrypt(keyId);
    const intruder = new KMSClient(
      aws.clientConfig({ accessKeyId: 'AKIAINTRUDER00000001', secretAccessKey: 'x' }),
    );
    try {
      aws.restrictKey(keyId, ['AKIAINTRUDER00000002']);
      for (const client of [kms, intruder]) {
        const error = await rejection(
          client.send(new DecryptCommand({ CiphertextBlob: blob, EncryptionContext: context })),
        );
        expect(error.name).toBe('AccessDeniedException');
        expect(error.message).toContain(`kms:Decrypt on resource: ${arn}`);
        expect(error.$metadata.httpStatusCode).toBe(400);
      }
      expect((await rejection(intruder.send(new DescribeKeyCommand({ KeyId: keyId })))).message).toContain(
        'user/AKIAINTRUDER00000001',
      );
      aws.restrictKey(keyId, ['AKIAINTRUDER00000001']);
      await expect(
        intruder.send(new DecryptCommand({ CiphertextBlob: blob, EncryptionContext: context })),
      ).resolves.toBeDefined();
      expect(
        (await rejection(kms.send(new DecryptCommand({ CiphertextBlob: blob, EncryptionContext: context }))))
          .name,
      ).toBe('AccessDeniedException');
      aws.restrictKey(keyId, undefined);
      await expect(
        kms.send(new DecryptCommand({ CiphertextBlob: blob, EncryptionContext: context })),
      ).resolves.toBeDefined();
    } finally {
      intruder.destroy();
    }
  });
});

describe('scope', () => {
  it('region and account options name every ARN, and ARNs of the default scope are foreign there', async () => {
    const other = await startFakeAws({ region: 'eu-central-1', accountId: '444455556666' });
    const client = new KMSClient(other.clientConfig());
    try {
      expect(other.region).toBe('eu-central-1');
      expect(other.accountId).toBe('444455556666');
      const { keyId, arn } = other.createKey();
      expect(arn).toBe(`arn:aws:kms:eu-central-1:444455556666:key/${keyId}`);
      const out = await client.send(new EncryptCommand({ KeyId: arn, Plaintext: plaintext }));
      expect(out.KeyId).toBe(arn);
      const foreign = `arn:aws:kms:us-east-1:111122223333:key/${keyId}`;
      expect(
        await rejection(client.send(new EncryptCommand({ KeyId: foreign, Plaintext: plaintext }))),
      ).toBeInstanceOf(NotFoundException);
    } finally {
      client.destroy();
      await other.close();
    }
    await expect(startFakeAws({ accountId: '12' })).rejects.toThrow(/12 digits/);
  });
});
