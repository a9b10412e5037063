import type { Catalog } from '../info.js';

/** Error codes of the tamper-evident audit log (@flare/audit). Add a code here with its meaning and action, then run `npm run errors:doc`. */
export const AUDIT_CODES = {
} as const satisfies Catalog;
