/** The keyring's whole life with provider `gcp-kms`, over every store (./conformance.ts). */
import { runKeyringConformance } from './conformance.js';
import { keyringProviders } from './providers.js';

runKeyringConformance('gcp-kms', keyringProviders['gcp-kms']!);
