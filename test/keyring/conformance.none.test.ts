/** The keyring's whole life with provider `none`, over every store (./conformance.ts). */
import { runKeyringConformance } from './conformance.js';
import { keyringProviders } from './providers.js';

runKeyringConformance('none', keyringProviders.none!);
