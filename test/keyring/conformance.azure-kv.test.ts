/** The keyring's whole life with provider `azure-kv`, over every store (./conformance.ts). */
import { runKeyringConformance } from './conformance.js';
import { keyringProviders } from './providers.js';

runKeyringConformance('azure-kv', keyringProviders['azure-kv']!);
