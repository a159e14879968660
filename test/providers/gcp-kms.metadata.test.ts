/**
 * No metadata server: a `gcp-kms` slot with an endpoint and `insecure`, and a client built from
 * the fake's `clientOptions()`, never ask the GCE metadata server for anything. Checked in a child
 * process whose metadata server (`GCE_METADATA_HOST`) is a local recorder and where
 * `METADATA_SERVER_DETECTION` is unset; a bare client in the same process is the control that
 * shows the recorder would have seen a request.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { expect, it } from 'vitest';

const repo = join(import.meta.dirname, '..', '..');
const resolve = createRequire(join(repo, 'package.json')).resolve;

const script = `
import { createServer } from 'node:http';
import * as grpc from '${resolve('@grpc/grpc-js')}';
import { KeyManagementServiceClient } from '${resolve('@google-cloud/kms')}';
import { KmsRegistry } from '${join(repo, 'src/providers/registry.ts')}';
import { Kek } from '${join(repo, 'src/keys/kek.ts')}';
import { parseIndexName, parseSlotName } from '${join(repo, 'src/names.ts')}';
import { startFakeGcpKms } from '${join(repo, 'src/testing/index.ts')}';

const hits = [];
const metadata = createServer((req, res) => {
  hits.push(req.url);
  res.writeHead(404, { 'Metadata-Flavor': 'Google' });
  res.end();
});
await new Promise((done) => metadata.listen(0, '127.0.0.1', done));
process.env.GCE_METADATA_HOST = '127.0.0.1:' + metadata.address().port;

const KEY = 'projects/p/locations/l/keyRings/r/cryptoKeys/k';
const fake = await startFakeGcpKms({ cryptoKeys: [KEY] });
const registry = new KmsRegistry({
  slots: { s: { provider: 'gcp-kms', keyId: KEY, endpoint: fake.endpoint, options: { insecure: true } } },
});
const provider = await registry.provider('s');
const ctx = { index: parseIndexName('i'), slot: parseSlotName('s'), encryptionContext: {} };
const kek = Kek.generate();
const roundTrip = (await provider.unwrap(await provider.wrap(kek, ctx), ctx)).equals(kek);
const fromSlot = hits.length;

const sdk = new KeyManagementServiceClient(fake.clientOptions());
await sdk.encrypt({ name: KEY, plaintext: Buffer.from('x') });
const fromFakeOptions = hits.length - fromSlot;

const bare = new KeyManagementServiceClient({ apiEndpoint: '127.0.0.1', port: fake.port, sslCreds: grpc.credentials.createInsecure() });
await bare.encrypt({ name: KEY, plaintext: Buffer.from('x') }, { retry: null, timeout: 5000 }).catch(() => {});
const control = hits.length - fromSlot - fromFakeOptions;

console.log(JSON.stringify({ roundTrip, fromSlot, fromFakeOptions, control }));
await Promise.all([sdk.close(), bare.close(), registry.close(), fake.close()]);
metadata.close();
`;

it('slots with endpoint + insecure and the fake’s client options never contact the metadata server', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ke-gcp-metadata-'));
  const file = join(dir, 'probe.mts');
  writeFileSync(file, script);
  const env: NodeJS.ProcessEnv = { ...process.env, HOME: dir };
  delete env.METADATA_SERVER_DETECTION;
  delete env.GOOGLE_APPLICATION_CREDENTIALS;
  delete env.GCE_METADATA_IP;
  const tsx = pathToFileURL(join(repo, 'node_modules/tsx/dist/loader.mjs')).href;
  const run = spawnSync(process.execPath, ['--import', tsx, file], {
    cwd: dir,
    env,
    encoding: 'utf8',
    timeout: 30_000,
  });
  expect(run.stderr).toBe('');
  expect(JSON.parse(run.stdout)).toEqual({
    roundTrip: true,
    fromSlot: 0,
    fromFakeOptions: 0,
    control: expect.any(Number),
  });
  expect(JSON.parse(run.stdout).control).toBeGreaterThan(0);
});
