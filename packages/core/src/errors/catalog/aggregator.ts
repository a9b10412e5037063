import type { Catalog } from '../info.js';

/** Error codes of aggregation (@flare/aggregator). Add a code here with its meaning and action, then run `npm run errors:doc`. */
export const AGGREGATOR_CODES = {
} as const satisfies Catalog;
