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
    // Two files at a time: much of an e2e test is waiting (a server kept down for 3 minutes, sites rejoining,
    // rounds of real processes), so two overlap well on 2 cores. Every file uses its own temp dirs and ports
    // (port 0 or freePort), and the one netns file its own namespace names.
    fileParallelism: true,
    maxWorkers: 2,
    reporters: [
      'default',
      ['json', { outputFile: resolve(import.meta.dirname, '../reports/vitest/e2e.json') }],
      new SkipReporter(resolve(import.meta.dirname, '../reports/vitest/e2e.skips.json'), resolve(import.meta.dirname, '..')),
    ],
  },
});
