import type { Catalog } from '../info.js';

/** Error codes of the TensorFlow.js learner (@flare/tfjs). Add a code here with its meaning and action, then run `npm run errors:doc`. */
export const ML_CODES = {
} as const satisfies Catalog;
