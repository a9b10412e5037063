import type { Catalog } from '../info.js';

/** Error codes of differential-privacy filters and budgets (@flare/filters-dp). Add a code here with its meaning and action, then run `npm run errors:doc`. */
export const DP_CODES = {
} as const satisfies Catalog;
