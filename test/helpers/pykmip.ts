import type { KmipClientOptions } from '../../src/kmip/client.js';
import { type PyKmipHandle, pyKmipAvailable } from '../../src/testing/pykmip.js';
import { serviceAvailable } from './services.js';

/** PyKMIP can run here, or skip/fail as {@link serviceAvailable} says. */
export const hasPyKmip = () =>
  serviceAvailable(
    'PyKMIP',
    pyKmipAvailable(),
    'apt-get install python3-pykmip openssl (Debian; the server runs under /usr/bin/python3)',
  );

/** Options of a `KmipClient` of the harness's own client identity, with `over` applied. */
export function pyKmipClientOptions(
  server: PyKmipHandle,
  over: Partial<KmipClientOptions> = {},
): KmipClientOptions {
  return {
    host: server.host,
    port: server.port,
    ca: server.ca,
    cert: server.clientCert,
    key: Buffer.from(server.clientKey),
    ...over,
  };
}
