import type { Catalog } from '../info.js';

/** Error codes of models and tensors. Add a code here with its meaning and action, then run `npm run errors:doc`. */
export const MODEL_CODES = {
  E_MODEL_MISMATCH: {
    meaning: 'Two models (or tensors) do not have the same names, shapes or dtypes where an operation needs them to.',
    action: 'Check that both come from the same model architecture and round; the message names the first differing tensor.',
  },
  E_MODEL_DTYPE: {
    meaning: 'An operation was asked of a tensor dtype it does not support (for example arithmetic on booleans).',
    action: 'Convert the tensor to a float dtype first, or exclude it from the operation.',
  },
  E_MODEL_NAME_PATTERN: {
    meaning: 'A tensor-name pattern (exclude-vars, HE tensor selection) uses syntax outside the safe, linear-time subset: a backreference, lookaround, a quantifier on an assertion or a quantifier, or it is too long or too large.',
    action: 'Rewrite the pattern with the supported syntax (literals, classes, groups, alternation, anchors, quantifiers; see compileNamePattern in @flare/core), or list the tensor names explicitly.',
  },
} as const satisfies Catalog;
