import type { Catalog } from '../info.js';

/** Error codes of homomorphic encryption (@flare/filters-he). Add a code here with its meaning and action, then run `npm run errors:doc`. */
export const HE_CODES = {
} as const satisfies Catalog;
