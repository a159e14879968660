/** The keyring's whole life with provider `aws`, over every store (./conformance.ts). */
import { runKeyringConformance } from './conformance.js';
import { keyringProviders } from './providers.js';

runKeyringConformance('aws', keyringProviders.aws!);
