/** The keyring's whole life with provider `local`, over every store (./conformance.ts). */
import { runKeyringConformance } from './conformance.js';
import { keyringProviders } from './providers.js';

runKeyringConformance('local', keyringProviders.local!);
