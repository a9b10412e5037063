import type { Catalog } from '../info.js';

/** Error codes of attestation evidence verification (@flare/cc-attest). Add a code here with its meaning and action, then run `npm run errors:doc`. */
export const ATTEST_CODES = {
} as const satisfies Catalog;
