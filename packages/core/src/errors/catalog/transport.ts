import type { Catalog } from '../info.js';

/** Error codes of the WebSocket transport (@flare/transport). Add a code here with its meaning and action, then run `npm run errors:doc`. */
export const TRANSPORT_CODES = {
} as const satisfies Catalog;
