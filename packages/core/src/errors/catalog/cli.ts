import type { Catalog } from '../info.js';

/** Error codes of the flare command (@flare/cli). Add a code here with its meaning and action, then run `npm run errors:doc`. */
export const CLI_CODES = {
  E_CLI_NOT_BUILT: {
    meaning: 'The flare command was run from a clone of the repository before its first build: packages/cli/dist is missing.',
    action: 'Run `npm run build` at the root of the clone, then the command again (an installed @flare/cli always has it).',
  },
  E_CLI_NOT_FOUND: {
    meaning: "A startup kit's start.sh or fl_admin.sh could not find the flare command: not in FLARE_CLI, not on PATH, not where the kit was provisioned, not installed for npx.",
    action: 'Install it (npm install -g @flare/cli; from a FLARE-TS checkout: npm ci && npm run build && npm link -w @flare/cli), or set FLARE_CLI to the command that runs it, e.g. "node /path/to/packages/cli/dist/bin.js".',
  },
} as const satisfies Catalog;
