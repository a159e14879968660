import { randomBytes } from 'node:crypto';
import { expect, it } from 'vitest';
import { findSecret } from './find-secret.js';

it('finds key bytes in nested byte arrays, non-enumerable properties and encoded strings; nothing else', () => {
  const key = randomBytes(32);
  const cause = { request: { body: { plaintext: Buffer.concat([randomBytes(5), key, randomBytes(3)]) } } };
  expect(findSecret(new Error('x', { cause }), key)).toBe('$.cause.request.body.plaintext');
  const hidden = {};
  Object.defineProperty(hidden, 'secret', { value: new Uint8Array(key), enumerable: false });
  expect(findSecret({ a: [hidden] }, key)).toBe('$.a.0.secret');
  for (const enc of ['hex', 'base64', 'base64url'] as const) {
    expect(findSecret({ body: `{"Plaintext":"${key.toString(enc)}"}` }, key)).toBe('$.body');
  }
  expect(findSecret(new Map([['k', { v: key.toString('hex').toUpperCase() }]]), key)).toBe('$.get(…).v');
  const cyclic: Record<string, unknown> = { other: randomBytes(32) };
  cyclic.self = cyclic;
  expect(findSecret(cyclic, key)).toBeUndefined();
  expect(findSecret(new Error('nothing here', { cause: { data: randomBytes(64) } }), key)).toBeUndefined();
});
