import type { Catalog } from '../info.js';

/** Error codes of provisioning, certificates, startup kits and revocation (@flare/pki). Add a code here with its meaning and action, then run `npm run errors:doc`. */
export const PKI_CODES = {
} as const satisfies Catalog;
