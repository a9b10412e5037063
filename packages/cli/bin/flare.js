#!/usr/bin/env node
// The `flare` command. This file is committed (not built) so that `npm ci` can link `flare` before the first
// build (npm links a bin only when its target exists at install time); it runs the built CLI, dist/bin.js.
import { existsSync } from 'node:fs';

const cli = new URL('../dist/bin.js', import.meta.url);
if (!existsSync(cli)) {
  process.stderr.write(
    'flare: E_CLI_NOT_BUILT: the CLI is not built (packages/cli/dist/bin.js is missing). ' +
      'In a clone of the repository run `npm run build` first; an installed package always has it.\n',
  );
  process.exit(1);
}
await import(cli.href);
