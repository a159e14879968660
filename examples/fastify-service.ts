/**
 * A service layer: a small Fastify HTTP service that keeps records with a sensitive field
 * encrypted in the DEK wire format (`$A256GCM$<dek-id>$e30=$…`) under each index's keyring, whose
 * KEK the `KmsEnvelopeClient` unwraps (a `local` slot whose master key comes from `env:`, and
 * envelopes on disk). Each request finds the index's keyring, which unwraps its KEK through the
 * client once (the KMS call, with the client's deadline and retries) and keeps its DEKs, so the
 * record requests themselves make no KMS call (printed below). The example starts the service on a free port, calls it with
 * `fetch`, prints what it saw, and closes it. Run: `npx tsx examples/fastify-service.ts`.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Fastify from 'fastify';
import {
  IndexKeyring,
  isEncryptedValue,
  KmsEnvelopeClient,
  StorageConfig,
  UnknownKeyError,
} from 'kms-envelope';

// In production the deployment sets the master key (base64 or hex of 32 bytes); `env:` reads it
// once and removes it from the environment, so child processes never see it.
process.env.SERVICE_MASTER_KEY ??= randomBytes(32).toString('base64');
const dataDir = mkdtempSync(join(tmpdir(), 'kms-envelope-service-'));

const client = new KmsEnvelopeClient({
  store: StorageConfig.disk(dataDir),
  kms: { slots: { main: { provider: 'local', masterKey: 'env:SERVICE_MASTER_KEY' } } },
});

/**
 * One keyring per index for the life of the process: it caches the DEKs it unwrapped, for at
 * most the client's cache TTL, and drops them when the client reports the index changed.
 */
const keyrings = new Map<string, Promise<IndexKeyring>>();
function keyringFor(index: string): Promise<IndexKeyring> {
  let keyring = keyrings.get(index);
  if (keyring === undefined) {
    // EnvelopeNotFoundError (a 404 below) for an index that was never created.
    keyring = client.getEnvelope(index).then(() => new IndexKeyring(client, index));
    keyrings.set(index, keyring);
    keyring.catch(() => keyrings.delete(index)); // a failure is not kept: the next request retries
  }
  return keyring;
}

/** What the service stores per record: the email only as a wire token. A stand-in for a database. */
const table = new Map<string, { name: string; email: string }>();

const app = Fastify();

app.post<{ Params: { index: string } }>('/indexes/:index', async (request, reply) => {
  const keyring = await IndexKeyring.createIndex(client, request.params.index, { slot: 'main' });
  await keyring.createDek(); // the first DEK becomes the active one
  keyrings.set(request.params.index, Promise.resolve(keyring));
  return reply.code(201).send({ index: keyring.index });
});

app.put<{ Params: { index: string; id: string }; Body: { name: string; email: string } }>(
  '/indexes/:index/records/:id',
  async (request, reply) => {
    const keyring = await keyringFor(request.params.index);
    const email = await keyring.encryptValue(request.body.email);
    table.set(`${request.params.index}/${request.params.id}`, { name: request.body.name, email });
    return reply.code(204).send();
  },
);

app.get<{ Params: { index: string; id: string } }>('/indexes/:index/records/:id', async (request, reply) => {
  const row = table.get(`${request.params.index}/${request.params.id}`);
  if (row === undefined) return reply.code(404).send({ error: 'no such record' });
  const keyring = await keyringFor(request.params.index);
  return { name: row.name, email: await keyring.decryptValue(row.email) };
});

// Typed errors become status codes by their stable `code`; their messages never hold key bytes.
app.setErrorHandler((err, _request, reply) => {
  const code = (err as { code?: unknown }).code;
  if (err instanceof UnknownKeyError) return reply.code(409).send({ error: code });
  if (code === 'KMS_ENVELOPE_NOT_FOUND') return reply.code(404).send({ error: code });
  if (code === 'KMS_ENVELOPE_EXISTS') return reply.code(409).send({ error: code });
  return reply.code(500).send({ error: typeof code === 'string' ? code : 'internal' });
});

try {
  const base = await app.listen({ port: 0, host: '127.0.0.1' });
  const call = (method: string, path: string, body?: unknown) =>
    fetch(`${base}${path}`, {
      method,
      ...(body === undefined
        ? {}
        : { headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) }),
    });

  const created = await call('POST', '/indexes/customers');
  const kmsCallsBefore = client.stats().slots.main?.kmsCalls ?? 0;
  for (const [id, email] of [
    ['1', 'alice@example.com'],
    ['2', 'bob@example.com'],
  ] as const) {
    await call('PUT', `/indexes/customers/records/${id}`, { name: `user ${id}`, email });
  }
  const read = (await (await call('GET', '/indexes/customers/records/1')).json()) as { email: string };
  const kmsCallsDuring = (client.stats().slots.main?.kmsCalls ?? 0) - kmsCallsBefore;
  const stored = table.get('customers/1')?.email ?? '';
  const unknown = await call('PUT', '/indexes/orders/records/1', { name: 'x', email: 'x@example.com' });
  const twice = await call('POST', '/indexes/customers');
  console.log(`POST /indexes/customers: ${created.status}`);
  console.log(`GET /indexes/customers/records/1: ${read.email}`);
  console.log(
    `stored as a wire token: ${isEncryptedValue(stored) && stored.startsWith('$A256GCM$') && !stored.includes('alice')}`,
  );
  console.log(`KMS calls for 3 requests: ${kmsCallsDuring}`);
  console.log(`unknown index: ${unknown.status}, index created twice: ${twice.status}`);
  console.log(`master key left in the environment: ${process.env.SERVICE_MASTER_KEY !== undefined}`);
} finally {
  await app.close();
  await client.close();
  rmSync(dataDir, { recursive: true, force: true });
}
