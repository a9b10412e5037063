// Shared vitest settings for every package: one JSON report per project under reports/vitest, which
// .ci/run sums into its closing "N passed, N failed" line (CI here does not read vitest's own summary), and the
// skipped tests with their reasons beside it (<project>.skips.json).
import { basename, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';
import { SkipReporter } from './tools/scripts/skip-reporter.mjs';

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
      // Generous on purpose: the suite must pass on a busy 2-core machine (a test that takes 15 s alone took more
      // than 30 s beside other work). A test that hangs still fails, after 2 minutes.
      testTimeout: 120_000,
      hookTimeout: 120_000,
      reporters: [
        'default',
        ['json', { outputFile: resolve(root, 'reports/vitest', `${name}.json`) }],
        new SkipReporter(resolve(root, 'reports/vitest', `${name}.skips.json`), root),
      ],
      ...overrides,
    },
  });
}
