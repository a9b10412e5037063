import type { Catalog } from '../info.js';

/** Error codes of login, sessions and per-message authentication (@flare/auth). Add a code here with its meaning and action, then run `npm run errors:doc`. */
export const AUTH_CODES = {
} as const satisfies Catalog;
