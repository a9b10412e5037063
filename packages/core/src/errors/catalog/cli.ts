import type { Catalog } from '../info.js';

/** Error codes of the flare command (@flare/cli). Add a code here with its meaning and action, then run `npm run errors:doc`. */
export const CLI_CODES = {
  E_CLI_NOT_BUILT: {
    meaning: 'The flare command was run from a clone of the repository before its first build: packages/cli/dist is missing.',
    action: 'Run `npm run build` at the root of the clone, then the command again (an installed @flare/cli always has it).',
  },
} as const satisfies Catalog;
