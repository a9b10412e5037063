// Shared vitest settings for every package: one JSON report per project under reports/vitest, which
// .ci/run sums into its closing "N passed, N failed" line (CI here does not read vitest's own summary).
import { basename, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

const root = dirname(fileURLToPath(import.meta.url));

/** @param {string} configUrl import.meta.url of the package's vitest.config.mjs */
export function preset(configUrl, overrides = {}) {
  const dir = dirname(fileURLToPath(configUrl));
  const name = basename(dir);
  return defineConfig({
    test: {
      watch: false,
      include: ['test/**/*.test.ts'],
      environment: 'node',
      testTimeout: 30_000,
      hookTimeout: 30_000,
      reporters: ['default', ['json', { outputFile: resolve(root, 'reports/vitest', `${name}.json`) }]],
      ...overrides,
    },
  });
}
