// e2e tests: real processes and sockets against the built packages (nx builds every dependency first).
// Named so that @nx/vitest does not infer a unit-test target for this folder.
import { resolve } from 'node:path';
import { defineConfig } from 'vitest/config';
import { SkipReporter } from '../tools/scripts/skip-reporter.mjs';

export default defineConfig({
  test: {
    watch: false,
    include: ['test/**/*.e2e.test.ts'],
    environment: 'node',
    testTimeout: 900_000,
    hookTimeout: 600_000,
    fileParallelism: false,
    reporters: [
      'default',
      ['json', { outputFile: resolve(import.meta.dirname, '../reports/vitest/e2e.json') }],
      new SkipReporter(resolve(import.meta.dirname, '../reports/vitest/e2e.skips.json'), resolve(import.meta.dirname, '..')),
    ],
  },
});
