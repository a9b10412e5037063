import type { Catalog } from '../info.js';

/** Error codes of the flare command (@flare/cli). Add a code here with its meaning and action, then run `npm run errors:doc`. */
export const CLI_CODES = {
} as const satisfies Catalog;
