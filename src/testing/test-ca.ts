/**
 * A throw-away certificate authority and a server certificate for 127.0.0.1 / localhost, made at
 * test time, so that fake servers speak real HTTPS and clients verify them against `caPem`
 * instead of turning verification off.
 *
 * Keys come from `node:crypto`; the certificates are built and signed with `node-forge` (an
 * optional peer dependency: `npm install -D node-forge`). Nothing here is fit for production:
 * the keys live in memory, in PEM strings, for the life of the process.
 *
 * @module
 */
import { generateKeyPair, randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import { importOptional } from '../providers/support.js';

/** A test CA and one server certificate it issued, all PEM. */
export interface TestTls {
  /** The CA certificate: what clients trust (`tlsOptions.ca`, `NODE_EXTRA_CA_CERTS`). */
  readonly caPem: string;
  /** The server certificate (subjectAltName: the hosts asked for). */
  readonly certPem: string;
  /** The server certificate's private key (PKCS#8). */
  readonly keyPem: string;
}

/** Options of {@link makeTestTls}. */
export interface TestTlsOptions {
  /** Host names and IP addresses the server certificate is valid for (default 127.0.0.1, ::1, localhost). */
  readonly hosts?: readonly string[];
  /** Validity in days from now (default 2). */
  readonly days?: number;
}

const DEFAULT_HOSTS = ['127.0.0.1', '::1', 'localhost'] as const;

const generateKeyPairAsync = promisify(generateKeyPair);

async function rsaKeyPair(): Promise<{ privatePem: string; publicPem: string }> {
  const { privateKey, publicKey } = await generateKeyPairAsync('rsa', {
    modulusLength: 2048,
    publicKeyEncoding: { type: 'spki', format: 'pem' },
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
  });
  return { privatePem: privateKey, publicPem: publicKey };
}

// A positive serial number of 16 random bytes (the top bit cleared keeps the DER INTEGER positive).
function serialNumber(): string {
  const bytes = randomBytes(16);
  bytes[0]! &= 0x7f;
  return bytes.toString('hex');
}

const isIp = (host: string) => /^[0-9.]+$/.test(host) || host.includes(':');

/**
 * Makes a new CA and a server certificate signed by it.
 * @throws MissingDependencyError when `node-forge` is not installed.
 */
export async function makeTestTls(options: TestTlsOptions = {}): Promise<TestTls> {
  const forgeModule = await importOptional(
    'node-forge',
    'the test CA of kms-envelope/testing',
    () => import('node-forge'),
  );
  const forge = forgeModule.default;
  const pki = forge.pki;
  const hosts = options.hosts ?? DEFAULT_HOSTS;
  const days = options.days ?? 2;
  const [caKeys, serverKeys] = await Promise.all([rsaKeyPair(), rsaKeyPair()]);
  const caPrivate = pki.privateKeyFromPem(caKeys.privatePem);
  // Backdated a little, so that a clock a few seconds off does not matter.
  const notBefore = new Date(Date.now() - 10 * 60_000);
  const notAfter = new Date(Date.now() + days * 86_400_000);

  const caName = [
    { name: 'commonName', value: 'kms-envelope test CA' },
    { name: 'organizationName', value: 'kms-envelope testing' },
  ];
  const ca = pki.createCertificate();
  ca.publicKey = pki.publicKeyFromPem(caKeys.publicPem);
  ca.serialNumber = serialNumber();
  ca.validity.notBefore = notBefore;
  ca.validity.notAfter = notAfter;
  ca.setSubject(caName);
  ca.setIssuer(caName);
  ca.setExtensions([
    { name: 'basicConstraints', cA: true, pathLenConstraint: 0, critical: true },
    { name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true },
    { name: 'subjectKeyIdentifier' },
  ]);
  ca.sign(caPrivate, forge.md.sha256.create());

  const server = pki.createCertificate();
  server.publicKey = pki.publicKeyFromPem(serverKeys.publicPem);
  server.serialNumber = serialNumber();
  server.validity.notBefore = notBefore;
  server.validity.notAfter = notAfter;
  server.setSubject([{ name: 'commonName', value: hosts[0] ?? 'localhost' }]);
  server.setIssuer(caName);
  server.setExtensions([
    { name: 'basicConstraints', cA: false, critical: true },
    { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
    { name: 'extKeyUsage', serverAuth: true },
    {
      name: 'subjectAltName',
      // forge's altName types: 2 = DNS name, 7 = IP address.
      altNames: hosts.map((host) => (isIp(host) ? { type: 7, ip: host } : { type: 2, value: host })),
    },
    { name: 'authorityKeyIdentifier', keyIdentifier: ca.generateSubjectKeyIdentifier().getBytes() },
  ]);
  server.sign(caPrivate, forge.md.sha256.create());

  return {
    caPem: pki.certificateToPem(ca),
    certPem: pki.certificateToPem(server),
    keyPem: serverKeys.privatePem,
  };
}

let shared: Promise<TestTls> | undefined;

/**
 * One CA and server certificate for 127.0.0.1 / ::1 / localhost per process, made on first use
 * (signing with node-forge takes a few hundred milliseconds; fakes started again and again in a
 * test run share them).
 */
export function sharedTestTls(): Promise<TestTls> {
  if (shared === undefined) {
    shared = makeTestTls();
    shared.catch(() => {
      shared = undefined;
    });
  }
  return shared;
}
