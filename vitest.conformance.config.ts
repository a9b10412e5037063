// The conformance suite: tests that read real third-party data from ../shared/vectors (or $FLARE_VECTORS).
// They live in packages/*/conformance and never run in `npm test`.
import { resolve } from 'node:path';
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    watch: false,
    include: ['packages/*/conformance/**/*.test.ts'],
    environment: 'node',
    testTimeout: 120_000,
    hookTimeout: 120_000,
    reporters: ['default', ['json', { outputFile: resolve('reports/vitest/conformance.json') }]],
  },
});
