import type { Catalog } from '../info.js';

/** Error codes of site policies: authorization, privacy, resources, components, authenticators (@flare/policy). Add a code here with its meaning and action, then run `npm run errors:doc`. */
export const POLICY_CODES = {
} as const satisfies Catalog;
