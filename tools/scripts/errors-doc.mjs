#!/usr/bin/env node
// Regenerates docs/errors.md from @flare/core's error catalogs (builds core first).
import { execSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../../', import.meta.url));
execSync('npx tsc -b packages/core/tsconfig.lib.json', { cwd: root, stdio: 'inherit' });
const { ERROR_AREAS } = await import(`${root}packages/core/dist/index.js`);
const { renderErrorsDoc } = await import(`${root}packages/core/dist/errors/doc.js`);
writeFileSync(`${root}docs/errors.md`, renderErrorsDoc(ERROR_AREAS));
console.log('wrote docs/errors.md');
