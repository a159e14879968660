/**
 * The break-glass `recipient` provider. The provider conformance suite (conformance.ts) does not
 * run here: it unwraps through the client on the request path, which a recipient slot refuses by
 * design. What it checks (round trip, wrong key, tampering, re-binding to another index, slot,
 * version or creation id) is checked below through `unwrapOffline`, the only way a recipient
 * wrap opens.
 */
import {
  createHash,
  createPrivateKey,
  createPublicKey,
  diffieHellman,
  hkdfSync,
  randomBytes,
} from 'node:crypto';
import { mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ml_kem768 } from '@noble/post-quantum/ml-kem.js';
import { describe, expect, it } from 'vitest';
import {
  createRecipientProvider,
  createRecipientProviderForSlot,
  generateRecipientKeyPair,
  parseRecipientPrivateKey,
  parseRecipientPublicKey,
  RECIPIENT_KINDS,
  RECIPIENT_WRAPPED_LENGTH,
  type RecipientKind,
  type RecipientProvider,
  recipientPublicKeyOf,
  unwrapWithRecipientKey,
  wrapForRecipientWithEphemerals,
  writeRecipientKeyFile,
} from '../../providers/recipient.js';
import { KmsEnvelopeClient } from '../../src/client.js';
import { openAes256Gcm } from '../../src/crypto/aes-gcm.js';
import { bindingAadOf } from '../../src/crypto/binding.js';
import { wrapBindingOf } from '../../src/envelope/wraps.js';
import {
  AllWrapsFailedError,
  ConfigError,
  InvalidArgumentError,
  KeyNotFoundError,
  KmsEnvelopeError,
  SlotNotAllowedError,
  UnwrapFailedError,
} from '../../src/errors.js';
import { Kek } from '../../src/keys/kek.js';
import { parseIndexName, parseSlotName } from '../../src/names.js';
import type { WrapContext, WrappedKek } from '../../src/providers/provider.js';
import { KmsRegistry } from '../../src/providers/registry.js';
import { parseKmsSlot } from '../../src/providers/slot.js';
import { StorageConfig } from '../../src/storage/config.js';

const VECTORS = join(import.meta.dirname, '../vectors/recipient');

const ctx = (over: Partial<WrapContext> = {}): WrapContext => ({
  index: parseIndexName('orders'),
  slot: parseSlotName('break-glass'),
  encryptionContext: { tenant: 't1' },
  version: 3,
  creationId: Uint8Array.from({ length: 16 }, (_, i) => i),
  ...over,
});

interface Fixture {
  readonly kind: RecipientKind;
  readonly publicKey: string;
  readonly privateKey: Buffer;
  readonly fingerprint: string;
  readonly provider: RecipientProvider;
}

const fixtures = new Map<RecipientKind, Promise<Fixture>>();
function fixture(kind: RecipientKind): Promise<Fixture> {
  let made = fixtures.get(kind);
  if (made === undefined) {
    made = (async () => {
      const pair = await generateRecipientKeyPair(kind);
      return { kind, ...pair, provider: await createRecipientProvider({ publicKey: pair.publicKey }) };
    })();
    fixtures.set(kind, made);
  }
  return made;
}

const regions = (kind: RecipientKind) => {
  const eph = [2, 34] as const;
  const ct = kind === 'x25519' ? undefined : ([34, 34 + 1088] as const);
  const end = RECIPIENT_WRAPPED_LENGTH[kind];
  return {
    version: [0, 1],
    kind: [1, 2],
    'ephemeral public key': eph,
    ...(ct ? { 'ML-KEM ciphertext': ct } : {}),
    nonce: [end - 60, end - 48],
    'sealed KEK': [end - 48, end - 16],
    tag: [end - 16, end],
  } as Record<string, readonly [number, number]>;
};

function flipped(wrapped: WrappedKek, at: number): WrappedKek {
  const bytes = new Uint8Array(wrapped.wrappedKek);
  bytes[at]! ^= 0x01;
  return { ...wrapped, wrappedKek: bytes };
}

/** Every encoding of the private key's secret bytes that an error message could leak. */
function secretSpellings(privateKeyFile: Buffer): string[] {
  const text = privateKeyFile.toString('latin1').split('\n')[2]!;
  const body = Buffer.from(text, 'base64');
  const secret = body.subarray(2);
  const out = [text, text.slice(4, 24)];
  for (const part of [secret.subarray(0, 32), secret.subarray(32)]) {
    if (part.length === 0) continue;
    out.push(part.toString('hex'), part.toString('base64'), part.toString('base64url'));
    out.push(part.subarray(0, 8).toString('hex'));
  }
  return out;
}

function expectNoSecret(err: unknown, privateKeyFile: Buffer): void {
  const all = [String(err), (err as Error).message, (err as Error).stack ?? '', JSON.stringify(err)];
  for (let cause = (err as Error).cause; cause !== undefined; cause = (cause as Error).cause) {
    all.push(String(cause));
  }
  for (const spelled of secretSpellings(privateKeyFile)) {
    for (const text of all) expect(text.toLowerCase()).not.toContain(spelled.toLowerCase());
  }
}

async function caught(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (err) {
    return err;
  }
  throw new Error('expected a rejection');
}

describe.each(RECIPIENT_KINDS)('recipient %s', (kind) => {
  it('wraps to the public key and opens offline with the private key', async () => {
    const f = await fixture(kind);
    const kek = Kek.generate();
    const wrapped = await f.provider.wrap(kek, ctx());
    expect(wrapped.wrappedKek).toHaveLength(RECIPIENT_WRAPPED_LENGTH[kind]);
    expect(wrapped.keyId).toBe(f.fingerprint);
    expect(wrapped.keyId).toMatch(new RegExp(`^recipient:${kind}:[0-9a-f]{16}$`));
    expect(wrapped.region).toBe('');
    const opened = await f.provider.unwrapOffline(wrapped, ctx(), f.privateKey);
    expect(opened.equals(kek)).toBe(true);
    // Two wraps of the same KEK differ (fresh ephemeral key, encapsulation and nonce).
    const again = await f.provider.wrap(kek, ctx());
    expect(Buffer.from(again.wrappedKek).equals(Buffer.from(wrapped.wrappedKek))).toBe(false);
    // The caller's key file bytes are left as they were (the caller wipes them).
    expect(await recipientPublicKeyOf(f.privateKey)).toBe(f.publicKey);
  });

  it('unwrap() always refuses, without reading its arguments', async () => {
    const f = await fixture(kind);
    const wrapped = await f.provider.wrap(Kek.generate(), ctx());
    const reads: string[] = [];
    const spy = <T extends object>(target: T, name: string): T =>
      new Proxy(target, {
        get(t, key, receiver) {
          reads.push(`${name}.${String(key)}`);
          return Reflect.get(t, key, receiver);
        },
      });
    const err = await caught(f.provider.unwrap(spy(wrapped, 'wrapped'), spy(ctx(), 'context')));
    expect(err).toBeInstanceOf(SlotNotAllowedError);
    expect(err).toBeInstanceOf(UnwrapFailedError);
    expect((err as Error).message).toMatch(/kms-envelope recover/);
    expect((err as Error).message).toMatch(/forge/);
    expect(reads).toEqual([]);
    // Even a perfectly valid wrap, and even with nothing at all.
    await expect(f.provider.unwrap(undefined as never, undefined as never)).rejects.toThrow(
      SlotNotAllowedError,
    );
    expect(f.provider.publicKeyWrap).toBe(true);
    expect('rewrap' in f.provider).toBe(false);
  });

  it('refuses another recipient’s private key before any cryptography, by fingerprint', async () => {
    const f = await fixture(kind);
    const other = await generateRecipientKeyPair(kind);
    const wrapped = await f.provider.wrap(Kek.generate(), ctx());
    const err = await caught(f.provider.unwrapOffline(wrapped, ctx(), other.privateKey));
    expect(err).toBeInstanceOf(KeyNotFoundError);
    expect((err as Error).message).toContain(f.fingerprint);
    expect((err as Error).message).toContain(other.fingerprint);
    expectNoSecret(err, other.privateKey);
    // The other kind's key (same wrap) is refused the same way.
    const otherKind = await fixture(kind === 'x25519' ? 'x25519-mlkem768' : 'x25519');
    await expect(f.provider.unwrapOffline(wrapped, ctx(), otherKind.privateKey)).rejects.toThrow(
      KeyNotFoundError,
    );
    // A key_id relabelled to the other key's fingerprint: the key matches, the bytes do not.
    const relabelled = { ...wrapped, keyId: other.fingerprint };
    await expect(f.provider.unwrapOffline(relabelled, ctx(), other.privateKey)).rejects.toThrow(
      UnwrapFailedError,
    );
    // A key_id that names no recipient at all.
    await expect(
      f.provider.unwrapOffline({ ...wrapped, keyId: 'arn:aws:kms:eu-west-1:1:key/x' }, ctx(), f.privateKey),
    ).rejects.toThrow(/does not name a recipient key/);
  });

  it('a flipped byte anywhere in the wrap fails: every region', async () => {
    const f = await fixture(kind);
    const wrapped = await f.provider.wrap(Kek.generate(), ctx());
    for (const [name, [start, end]] of Object.entries(regions(kind))) {
      for (const at of [start, Math.floor((start + end - 1) / 2), end - 1]) {
        const err = await caught(f.provider.unwrapOffline(flipped(wrapped, at), ctx(), f.privateKey));
        expect(err, `${name} byte ${at}`).toBeInstanceOf(UnwrapFailedError);
        expect(err).not.toBeInstanceOf(KeyNotFoundError);
        expectNoSecret(err, f.privateKey);
      }
    }
  });

  it('truncated, extended or empty wraps fail', async () => {
    const f = await fixture(kind);
    const wrapped = await f.provider.wrap(Kek.generate(), ctx());
    const bytes = wrapped.wrappedKek;
    for (const cut of [0, 1, 2, 34, bytes.length - 16, bytes.length - 1]) {
      await expect(
        f.provider.unwrapOffline({ ...wrapped, wrappedKek: bytes.subarray(0, cut) }, ctx(), f.privateKey),
      ).rejects.toThrow(/not in the recipient/);
    }
    // A low-order ephemeral point (all zeros) is refused, not agreed with.
    const lowOrder = Buffer.from(bytes);
    lowOrder.fill(0, 2, 34);
    await expect(
      f.provider.unwrapOffline({ ...wrapped, wrappedKek: lowOrder }, ctx(), f.privateKey),
    ).rejects.toThrow(UnwrapFailedError);
    const longer = Buffer.concat([bytes, Buffer.of(0)]);
    await expect(
      f.provider.unwrapOffline({ ...wrapped, wrappedKek: longer }, ctx(), f.privateKey),
    ).rejects.toThrow(UnwrapFailedError);
  });

  it('is bound to the index, slot, context, version and creation id', async () => {
    const f = await fixture(kind);
    const kek = Kek.generate();
    const wrapped = await f.provider.wrap(kek, ctx());
    const others: Record<string, WrapContext> = {
      'another index': ctx({ index: parseIndexName('payments') }),
      'another slot': ctx({ slot: parseSlotName('recovery-2') }),
      'another context': ctx({ encryptionContext: { tenant: 't2' } }),
      'another version': ctx({ version: 4 }),
      'another creation id': ctx({ creationId: new Uint8Array(16).fill(9) }),
      'no creation id (schema 1)': ctx({ creationId: undefined, version: undefined }),
    };
    for (const [name, other] of Object.entries(others)) {
      const err = await caught(f.provider.unwrapOffline(wrapped, other, f.privateKey));
      expect(err, name).toBeInstanceOf(UnwrapFailedError);
    }
    expect((await f.provider.unwrapOffline(wrapped, ctx(), f.privateKey)).equals(kek)).toBe(true);
  });

  it('writes the key file 0600 and never overwrites one', async () => {
    const f = await fixture(kind);
    const dir = mkdtempSync(join(tmpdir(), 'kms-recipient-'));
    const path = join(dir, 'break-glass.key');
    await writeRecipientKeyFile(path, f.privateKey);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(readFileSync(path).equals(f.privateKey)).toBe(true);
    const other = await generateRecipientKeyPair(kind);
    const err = await caught(writeRecipientKeyFile(path, other.privateKey));
    expect(err).toBeInstanceOf(InvalidArgumentError);
    expect((err as Error).message).toMatch(/already exists/);
    expect(readFileSync(path).equals(f.privateKey)).toBe(true);
    expectNoSecret(err, other.privateKey);
    // Anything that is not a key file is not written at all.
    await expect(writeRecipientKeyFile(join(dir, 'junk.key'), Buffer.from('hello'))).rejects.toThrow(
      ConfigError,
    );
    expect(() => statSync(join(dir, 'junk.key'))).toThrow();
  });
});

describe('recipient x25519-mlkem768: the hybrid', () => {
  it('needs both shared secrets: the X25519 secret alone (an ML-KEM secret replaced) does not open it', async () => {
    const f = await fixture('x25519-mlkem768');
    const kek = Kek.generate();
    const wrapped = await f.provider.wrap(kek, ctx());
    const parts = independentSecrets(f.privateKey, wrapped.wrappedKek);
    // Positive control: the documented derivation, computed here independently, opens the wrap.
    const good = openWith(f.publicKey, wrapped.wrappedKek, parts.sharedX25519, parts.sharedMlKem);
    expect(good !== undefined && Kek.fromBytesAndWipe(good).equals(kek)).toBe(true);
    // Someone who broke X25519 (say, with a quantum computer) has sharedX25519 but not the ML-KEM secret.
    for (const guess of [new Uint8Array(32), randomBytes(32), parts.sharedX25519]) {
      expect(openWith(f.publicKey, wrapped.wrappedKek, parts.sharedX25519, guess)).toBeUndefined();
    }
    // ... nor without it at all, as if it were an x25519 wrap.
    expect(openWith(f.publicKey, wrapped.wrappedKek, parts.sharedX25519, undefined)).toBeUndefined();
    // And the ML-KEM secret alone does not open it either.
    expect(openWith(f.publicKey, wrapped.wrappedKek, randomBytes(32), parts.sharedMlKem)).toBeUndefined();
  });

  it('a hybrid wrap stripped down to the x25519 format (downgrade) is refused', async () => {
    const f = await fixture('x25519-mlkem768');
    const wrapped = await f.provider.wrap(Kek.generate(), ctx());
    const bytes = Buffer.from(wrapped.wrappedKek);
    const stripped = Buffer.concat([Buffer.of(1, 1), bytes.subarray(2, 34), bytes.subarray(34 + 1088)]);
    await expect(
      f.provider.unwrapOffline({ ...wrapped, wrappedKek: stripped }, ctx(), f.privateKey),
    ).rejects.toThrow(UnwrapFailedError);
    const relabelled = Buffer.from(bytes);
    relabelled[1] = 1;
    await expect(
      f.provider.unwrapOffline({ ...wrapped, wrappedKek: relabelled }, ctx(), f.privateKey),
    ).rejects.toThrow(/not in the recipient x25519-mlkem768 format/);
  });
});

/** The two shared secrets of a hybrid wrap, recomputed from the key file without the provider. */
function independentSecrets(privateKeyFile: Buffer, wrapped: Uint8Array) {
  const body = Buffer.from(privateKeyFile.toString('latin1').split('\n')[2]!, 'base64');
  const x25519 = createPrivateKey({
    key: Buffer.concat([Buffer.from('302e020100300506032b656e04220420', 'hex'), body.subarray(2, 34)]),
    format: 'der',
    type: 'pkcs8',
  });
  const ephemeral = createPublicKey({
    key: Buffer.concat([Buffer.from('302a300506032b656e032100', 'hex'), wrapped.subarray(2, 34)]),
    format: 'der',
    type: 'spki',
  });
  const sharedX25519 = diffieHellman({ privateKey: x25519, publicKey: ephemeral });
  const { secretKey } = ml_kem768.keygen(body.subarray(34));
  const sharedMlKem = ml_kem768.decapsulate(wrapped.subarray(34, 34 + 1088), secretKey);
  return { sharedX25519, sharedMlKem };
}

/** docs/providers/recipient.md's derivation, written out on its own, then the GCM open. */
function deriveIndependently(
  publicKeyText: string,
  wrapped: Uint8Array,
  sharedX25519: Uint8Array,
  sharedMlKem: Uint8Array | undefined,
): Buffer {
  const [prefix, b64] = publicKeyText.split(':');
  const kind = prefix!.slice('kmsr1-'.length);
  const recipient = Buffer.from(b64!, 'base64url');
  const hybrid = kind === 'x25519-mlkem768';
  const transcript = createHash('sha256')
    .update(wrapped.subarray(2, 34))
    .update(hybrid ? wrapped.subarray(34, 34 + 1088) : Buffer.alloc(0))
    .update(recipient)
    .digest();
  const info = Buffer.concat([Buffer.from(`kms-envelope/recipient/v1/${kind}`), transcript]);
  const ikm = Buffer.concat([sharedX25519, sharedMlKem ?? Buffer.alloc(0)]);
  return Buffer.from(hkdfSync('sha256', ikm, Buffer.alloc(0), info, 32));
}

function openWith(
  publicKeyText: string,
  wrapped: Uint8Array,
  sharedX25519: Uint8Array,
  sharedMlKem: Uint8Array | undefined,
  context: WrapContext = ctx(),
): Buffer | undefined {
  const key = deriveIndependently(publicKeyText, wrapped, sharedX25519, sharedMlKem);
  return openAes256Gcm(key, wrapped.subarray(wrapped.length - 60), bindingAadOf('recipient', context));
}

describe('recipient keys', () => {
  it('public keys parse strictly: prefix, kind, alphabet, canonical form, length, ML-KEM modulus', async () => {
    const x = await fixture('x25519');
    const h = await fixture('x25519-mlkem768');
    expect(parseRecipientPublicKey(x.publicKey).fingerprint).toBe(x.fingerprint);
    expect(parseRecipientPublicKey(h.publicKey).mlKem).toHaveLength(1184);
    const body = (text: string) => text.slice(text.indexOf(':') + 1);
    const bad = [
      '',
      `x25519:${body(x.publicKey)}`,
      `kmsr2-x25519:${body(x.publicKey)}`,
      `kmsr1-x448:${body(x.publicKey)}`,
      `kmsr1-x25519-mlkem768:${body(x.publicKey)}`, // a kind with the other kind's length
      `kmsr1-x25519:${body(h.publicKey)}`,
      `kmsr1-x25519:${body(x.publicKey).slice(0, -2)}`, // truncated
      `kmsr1-x25519:${body(x.publicKey)}AA`, // too long
      `kmsr1-x25519:${Buffer.from(body(x.publicKey), 'base64url').toString('base64')}=`, // padded / std alphabet
      ` ${x.publicKey}`,
      `${x.publicKey}\n`,
    ];
    for (const text of bad)
      expect(() => parseRecipientPublicKey(text), text.slice(0, 40)).toThrow(ConfigError);
    // A non-canonical last character (unused low bits set) is refused, not silently normalised.
    const b = body(x.publicKey);
    const last = b.at(-1)!;
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    const sibling = alphabet[alphabet.indexOf(last) ^ 1]!;
    expect(() => parseRecipientPublicKey(`kmsr1-x25519:${b.slice(0, -1)}${sibling}`)).toThrow(/canonical/);
    // An ML-KEM key with a coefficient >= q fails the FIPS 203 modulus check.
    const raw = Buffer.from(body(h.publicKey), 'base64url');
    raw[32] = 0xff;
    raw[33] = raw[33]! | 0x0f;
    expect(() => parseRecipientPublicKey(`kmsr1-x25519-mlkem768:${raw.toString('base64url')}`)).toThrow(
      /modulus/,
    );
    // A low-order X25519 point parses (it is 32 bytes) but no provider is made of it.
    await expect(
      createRecipientProvider({ publicKey: `kmsr1-x25519:${Buffer.alloc(32).toString('base64url')}` }),
    ).rejects.toThrow(/low-order/);
  });

  it('private key files parse strictly and name no secret in any error', async () => {
    for (const kind of RECIPIENT_KINDS) {
      const f = await fixture(kind);
      const text = f.privateKey.toString('latin1');
      const lines = text.split('\n');
      const key = await parseRecipientPrivateKey(f.privateKey);
      expect(key.kind).toBe(kind);
      expect(key.publicKey.text).toBe(f.publicKey);
      expect(String(key)).not.toContain(lines[2]!.slice(4, 24));
      expect(JSON.stringify({ key })).toContain('[redacted]');
      key.zero();
      expect(key.isZeroed).toBe(true);
      const crlf = Buffer.from(text.replaceAll('\n', '\r\n'));
      expect((await parseRecipientPrivateKey(crlf)).publicKey.text).toBe(f.publicKey);
      const b64 = lines[2]!;
      const damaged = [...b64];
      damaged[10] = damaged[10] === 'A' ? 'B' : 'A';
      const variants: Record<string, string> = {
        empty: '',
        'no armor': `${b64}\n`,
        'another label': text.replace('RECIPIENT PRIVATE KEY-----\n', 'PRIVATE KEY-----\n'),
        'no fingerprint line': [lines[0], lines[2], lines[3], ''].join('\n'),
        'a damaged key (fingerprint mismatch)': [lines[0], lines[1], damaged.join(''), lines[3], ''].join(
          '\n',
        ),
        'a wrong fingerprint': text.replace(/[0-9a-f]{16}\n/, '0000000000000000\n'),
        'truncated key line': [lines[0], lines[1], b64.slice(0, -4), lines[3], ''].join('\n'),
        'url-safe alphabet': [
          lines[0],
          lines[1],
          b64.replaceAll('+', '-').replaceAll('/', '_'),
          lines[3],
          '',
        ].join('\n'),
        'text before the armor': `note\n${text}`,
        'a kind byte of the other kind': [
          lines[0],
          lines[1],
          rebody(b64, 1, kind === 'x25519' ? 2 : 1),
          lines[3],
          '',
        ].join('\n'),
        'format version 2': [lines[0], lines[1], rebody(b64, 0, 2), lines[3], ''].join('\n'),
      };
      for (const [name, variant] of Object.entries(variants)) {
        if (name === 'url-safe alphabet' && !/[+/]/.test(b64)) continue;
        const err = await caught(parseRecipientPrivateKey(Buffer.from(variant, 'latin1')));
        expect(err, `${kind}: ${name}`).toBeInstanceOf(ConfigError);
        expectNoSecret(err, f.privateKey);
      }
    }
  });

  it('a recipient slot: options.publicKey, an optional key_id pin, nothing else; loads through the registry', async () => {
    const f = await fixture('x25519-mlkem768');
    const slot = (input: object) => parseKmsSlot('break-glass', { provider: 'recipient', ...input });
    const provider = await createRecipientProviderForSlot(slot({ options: { publicKey: f.publicKey } }));
    expect(provider.publicKey.fingerprint).toBe(f.fingerprint);
    await createRecipientProviderForSlot(slot({ keyId: f.fingerprint, options: { publicKey: f.publicKey } }));
    const refused: Record<string, object> = {
      'no public key': {},
      'a wrong pin': {
        keyId: 'recipient:x25519-mlkem768:0000000000000000',
        options: { publicKey: f.publicKey },
      },
      'a master key': { masterKey: 'file:/etc/kms-envelope/x', options: { publicKey: f.publicKey } },
      'a region': { region: 'eu-west-1', options: { publicKey: f.publicKey } },
      'an unknown option': { options: { publicKey: f.publicKey, privateKey: 'file:/x' } },
      'a malformed key': { options: { publicKey: 'kmsr1-x25519:AAAA' } },
    };
    for (const [name, input] of Object.entries(refused)) {
      await expect(createRecipientProviderForSlot(slot(input)), name).rejects.toThrow(ConfigError);
    }
    const registry = new KmsRegistry({
      slots: { 'break-glass': { provider: 'recipient', options: { publicKey: f.publicKey } } },
    });
    const viaRegistry = await registry.provider('break-glass');
    expect(viaRegistry.id).toBe('recipient');
    expect(viaRegistry.publicKeyWrap).toBe(true);
    await expect(viaRegistry.unwrap(await viaRegistry.wrap(Kek.generate(), ctx()), ctx())).rejects.toThrow(
      SlotNotAllowedError,
    );
    await registry.close();
  });

  it('through the client: a recipient wrap is refused on the request path even with allowPublicKeyWrap, and opens offline', async () => {
    const f = await fixture('x25519-mlkem768');
    const store = StorageConfig.memory();
    const breakGlass = {
      provider: 'recipient',
      allowPublicKeyWrap: true,
      options: { publicKey: f.publicKey },
    };
    const dev = { provider: 'local', masterKey: `literal:${randomBytes(32).toString('base64url')}` };
    const client = new KmsEnvelopeClient({
      store,
      kms: { slots: { dev, 'break-glass': breakGlass }, secrets: { allowLiteral: true } },
    });
    // Never the primary (nothing online could unwrap it).
    await expect(client.createIndex('solo', { slot: 'break-glass' })).rejects.toThrow(InvalidArgumentError);
    const kek = await client.createIndex('orders', {
      slots: ['dev', 'break-glass'],
      encryptionContext: { tenant: 't1' },
    });
    const blob = await client.getEnvelope('orders');
    const wrap = blob.wraps![0]!;
    expect(wrap.provider).toBe('recipient');
    expect(wrap.keyId).toBe(f.fingerprint);
    // A reader whose only slot is the recipient: refused before any unwrap, with the reason.
    const reader = new KmsEnvelopeClient({ store, kms: { slots: { 'break-glass': breakGlass } } });
    const err = (await caught(reader.unwrap('orders'))) as AllWrapsFailedError;
    expect(err).toBeInstanceOf(AllWrapsFailedError);
    expect(err.failures.find((x) => x.slot === 'break-glass')?.error).toBeInstanceOf(SlotNotAllowedError);
    // What `recover` does: the wrap's own binding (share 2 of 2), the offline private key.
    const opened = await f.provider.unwrapOffline(
      wrap,
      wrapBindingOf(parseIndexName('orders'), parseSlotName('break-glass'), blob, 2, 2),
      f.privateKey,
    );
    expect(opened.equals(kek)).toBe(true);
    await reader.close();
    await client.close();
  });

  it('errors are typed and never carry key bytes', async () => {
    const f = await fixture('x25519');
    const wrapped = await f.provider.wrap(Kek.generate(), ctx());
    const errors = [
      await caught(f.provider.unwrapOffline(flipped(wrapped, 50), ctx(), f.privateKey)),
      await caught(f.provider.unwrapOffline(wrapped, ctx({ index: parseIndexName('x') }), f.privateKey)),
      await caught(
        f.provider.unwrapOffline(wrapped, ctx(), Buffer.from(f.privateKey.toString().slice(0, -10))),
      ),
    ];
    for (const err of errors) {
      expect(err).toBeInstanceOf(KmsEnvelopeError);
      expectNoSecret(err, f.privateKey);
    }
  });
});

function rebody(b64: string, at: number, value: number): string {
  const body = Buffer.from(b64, 'base64');
  body[at] = value;
  return body.toString('base64');
}

// --- golden vectors -----------------------------------------------------------------------------

interface Vector {
  readonly description: string;
  readonly kind: RecipientKind;
  readonly recipient: {
    readonly x25519Private: string;
    readonly mlKemSeed?: string;
    readonly privateKeyFile: string;
    readonly publicKey: string;
    readonly fingerprint: string;
  };
  readonly context: {
    readonly index: string;
    readonly slot: string;
    readonly encryptionContext: Record<string, string>;
    readonly version: number;
    readonly creationId: string;
  };
  readonly ephemerals: {
    readonly x25519Private: string;
    readonly mlKemMessage?: string;
    readonly nonce: string;
  };
  readonly kek: string;
  readonly intermediate: {
    readonly ephemeralPublic: string;
    readonly sharedX25519: string;
    readonly sharedMlKem?: string;
    readonly info: string;
    readonly wrapKey: string;
    readonly aad: string;
  };
  readonly keyId: string;
  readonly wrappedKek: string;
}

const hex = (value: string) => Buffer.from(value, 'hex');
const vectorContext = (v: Vector): WrapContext => ({
  index: parseIndexName(v.context.index),
  slot: parseSlotName(v.context.slot),
  encryptionContext: v.context.encryptionContext,
  version: v.context.version,
  creationId: hex(v.context.creationId),
});

describe('recipient golden vectors (test/vectors/recipient)', () => {
  it.each(RECIPIENT_KINDS)(
    '%s: the key file decodes, the wrap is reproduced byte for byte and opens',
    async (kind) => {
      const v = JSON.parse(readFileSync(join(VECTORS, `${kind}.json`), 'utf8')) as Vector;
      expect(v.kind).toBe(kind);
      const file = Buffer.from(v.recipient.privateKeyFile, 'utf8');
      // The file is the documented armor around version ‖ kind ‖ X25519 private ‖ [ML-KEM seed].
      const body = Buffer.from(v.recipient.privateKeyFile.split('\n')[2]!, 'base64');
      expect(body.subarray(0, 2)).toEqual(Buffer.of(1, kind === 'x25519' ? 1 : 2));
      expect(body.subarray(2, 34).toString('hex')).toBe(v.recipient.x25519Private);
      expect(body.subarray(34).toString('hex')).toBe(v.recipient.mlKemSeed ?? '');
      const key = await parseRecipientPrivateKey(file);
      expect(key.publicKey.text).toBe(v.recipient.publicKey);
      expect(key.publicKey.fingerprint).toBe(v.recipient.fingerprint);
      const context = vectorContext(v);
      expect(bindingAadOf('recipient', context).toString('hex')).toBe(v.intermediate.aad);
      const wrapped = { wrappedKek: hex(v.wrappedKek), keyId: v.keyId, region: '' };
      const kek = await unwrapWithRecipientKey(wrapped, context, key);
      expect(kek.expose().toString('hex')).toBe(v.kek);
      key.zero();
      const again = await wrapForRecipientWithEphemerals(
        Kek.fromBytes(hex(v.kek)),
        context,
        parseRecipientPublicKey(v.recipient.publicKey),
        {
          x25519Private: hex(v.ephemerals.x25519Private),
          nonce: hex(v.ephemerals.nonce),
          ...(v.ephemerals.mlKemMessage ? { mlKemMessage: hex(v.ephemerals.mlKemMessage) } : {}),
        },
      );
      expect(Buffer.from(again.wrappedKek).toString('hex')).toBe(v.wrappedKek);
      expect(again.keyId).toBe(v.keyId);
      // The intermediate values, recomputed here without the provider, match the file.
      const w = hex(v.wrappedKek);
      expect(w.subarray(2, 34).toString('hex')).toBe(v.intermediate.ephemeralPublic);
      const key2 = deriveIndependently(
        v.recipient.publicKey,
        w,
        hex(v.intermediate.sharedX25519),
        v.intermediate.sharedMlKem ? hex(v.intermediate.sharedMlKem) : undefined,
      );
      expect(key2.toString('hex')).toBe(v.intermediate.wrapKey);
      if (kind === 'x25519-mlkem768') {
        const secrets = independentSecrets(file, w);
        expect(secrets.sharedX25519.toString('hex')).toBe(v.intermediate.sharedX25519);
        expect(Buffer.from(secrets.sharedMlKem).toString('hex')).toBe(v.intermediate.sharedMlKem);
      }
      // The vector's binding matters: another version does not open it.
      await expect(
        unwrapWithRecipientKey(
          wrapped,
          { ...context, version: v.context.version + 1 },
          await parseRecipientPrivateKey(file),
        ),
      ).rejects.toThrow(UnwrapFailedError);
    },
  );
});

/**
 * The vector files are what this generator makes from fixed inputs (SHA-256 of fixed labels, so
 * reproducible): it writes them to a temporary folder and compares, or, with
 * `KMS_ENVELOPE_WRITE_VECTORS=1 npx vitest run test/providers/recipient.test.ts`, rewrites the
 * committed ones. The tests above check the files without this code.
 */
it('the recipient golden vectors are exactly what their generator makes from the fixed inputs', async () => {
  const write = process.env.KMS_ENVELOPE_WRITE_VECTORS === '1';
  const out = write ? VECTORS : mkdtempSync(join(tmpdir(), 'recipient-vectors-'));
  const fixed = (label: string, length: number) =>
    Buffer.concat(
      [0, 1].map((i) => createHash('sha256').update(`kms-envelope recipient vector ${label} ${i}`).digest()),
    ).subarray(0, length);
  for (const kind of RECIPIENT_KINDS) {
    const hybrid = kind === 'x25519-mlkem768';
    const x25519Private = fixed(`${kind} recipient x25519`, 32);
    const mlKemSeed = hybrid ? fixed(`${kind} recipient ml-kem seed`, 64) : undefined;
    const body = Buffer.concat([Buffer.of(1, hybrid ? 2 : 1), x25519Private, mlKemSeed ?? Buffer.alloc(0)]);
    // The Fingerprint line needs the public key: parse once with a placeholder to learn it.
    const x25519Public = createPublicKey(
      createPrivateKey({
        key: Buffer.concat([Buffer.from('302e020100300506032b656e04220420', 'hex'), x25519Private]),
        format: 'der',
        type: 'pkcs8',
      }),
    )
      .export({ format: 'der', type: 'spki' })
      .subarray(12);
    const mlKemPublic = mlKemSeed ? Buffer.from(ml_kem768.keygen(mlKemSeed).publicKey) : undefined;
    const publicKey = `kmsr1-${kind}:${Buffer.concat([x25519Public, mlKemPublic ?? Buffer.alloc(0)]).toString('base64url')}`;
    const fingerprint = parseRecipientPublicKey(publicKey).fingerprint;
    const privateKeyFile = `-----BEGIN KMS-ENVELOPE RECIPIENT PRIVATE KEY-----\nFingerprint: ${fingerprint}\n${body.toString('base64')}\n-----END KMS-ENVELOPE RECIPIENT PRIVATE KEY-----\n`;
    const context = {
      index: 'orders',
      slot: 'break-glass',
      encryptionContext: { tenant: 't1' },
      version: 1,
      creationId: fixed(`${kind} creation id`, 16).toString('hex'),
    };
    const ephemerals = {
      x25519Private: fixed(`${kind} ephemeral x25519`, 32),
      nonce: fixed(`${kind} nonce`, 12),
      ...(hybrid ? { mlKemMessage: fixed(`${kind} ml-kem message`, 32) } : {}),
    };
    const kek = fixed(`${kind} kek`, 32);
    const wrapCtx = {
      index: parseIndexName(context.index),
      slot: parseSlotName(context.slot),
      encryptionContext: context.encryptionContext,
      version: context.version,
      creationId: hex(context.creationId),
    };
    const wrapped = await wrapForRecipientWithEphemerals(
      Kek.fromBytes(kek),
      wrapCtx,
      parseRecipientPublicKey(publicKey),
      ephemerals,
    );
    const w = Buffer.from(wrapped.wrappedKek);
    const ephemeralKey = createPrivateKey({
      key: Buffer.concat([Buffer.from('302e020100300506032b656e04220420', 'hex'), ephemerals.x25519Private]),
      format: 'der',
      type: 'pkcs8',
    });
    const sharedX25519 = diffieHellman({
      privateKey: ephemeralKey,
      publicKey: createPublicKey({
        key: Buffer.concat([Buffer.from('302a300506032b656e032100', 'hex'), x25519Public]),
        format: 'der',
        type: 'spki',
      }),
    });
    const sharedMlKem = mlKemSeed
      ? Buffer.from(ml_kem768.decapsulate(w.subarray(34, 34 + 1088), ml_kem768.keygen(mlKemSeed).secretKey))
      : undefined;
    const transcript = createHash('sha256')
      .update(w.subarray(2, 34))
      .update(hybrid ? w.subarray(34, 34 + 1088) : Buffer.alloc(0))
      .update(x25519Public)
      .update(mlKemPublic ?? Buffer.alloc(0))
      .digest();
    const info = Buffer.concat([Buffer.from(`kms-envelope/recipient/v1/${kind}`), transcript]);
    const vector: Vector = {
      description: `recipient ${kind}: a KEK wrapped to a fixed recipient with fixed ephemerals (inputs are SHA-256 of fixed labels); see docs/providers/recipient.md for the derivation`,
      kind,
      recipient: {
        x25519Private: x25519Private.toString('hex'),
        ...(mlKemSeed ? { mlKemSeed: mlKemSeed.toString('hex') } : {}),
        privateKeyFile,
        publicKey,
        fingerprint,
      },
      context,
      ephemerals: {
        x25519Private: ephemerals.x25519Private.toString('hex'),
        ...(ephemerals.mlKemMessage ? { mlKemMessage: ephemerals.mlKemMessage.toString('hex') } : {}),
        nonce: ephemerals.nonce.toString('hex'),
      },
      kek: kek.toString('hex'),
      intermediate: {
        ephemeralPublic: w.subarray(2, 34).toString('hex'),
        sharedX25519: sharedX25519.toString('hex'),
        ...(sharedMlKem ? { sharedMlKem: sharedMlKem.toString('hex') } : {}),
        info: info.toString('hex'),
        wrapKey: deriveIndependently(publicKey, w, sharedX25519, sharedMlKem).toString('hex'),
        aad: bindingAadOf('recipient', wrapCtx).toString('hex'),
      },
      keyId: wrapped.keyId,
      wrappedKek: w.toString('hex'),
    };
    writeFileSync(join(out, `${kind}.json`), `${JSON.stringify(vector, null, 2)}\n`);
    expect(readFileSync(join(out, `${kind}.json`), 'utf8')).toBe(
      readFileSync(join(VECTORS, `${kind}.json`), 'utf8'),
    );
  }
});
