import type { Catalog } from '../info.js';

/** Error codes of the server, client and admin engines (@flare/runtime). Add a code here with its meaning and action, then run `npm run errors:doc`. */
export const RUNTIME_CODES = {
} as const satisfies Catalog;
