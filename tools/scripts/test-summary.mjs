#!/usr/bin/env node
// Prints the closing line CI reads, "N passed, N failed", summed over vitest JSON reports in a folder.
// A step that failed without a failing test (install, lint, typecheck, build) counts as one failure, so the
// line never reads "0 failed" for a red run.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

const [dir = 'reports/vitest', status = '0'] = process.argv.slice(2);
let passed = 0;
let failed = 0;
const files = existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith('.json')) : [];
for (const file of files.sort()) {
  const report = JSON.parse(readFileSync(join(dir, file), 'utf8'));
  passed += report.numPassedTests ?? 0;
  failed += report.numFailedTests ?? 0;
  // a test file that failed to load has no failed tests but a failed suite
  for (const suite of report.testResults ?? []) {
    if (suite.status === 'failed' && (suite.assertionResults ?? []).every((a) => a.status !== 'failed')) {
      failed += 1;
      console.log(`failed to run: ${suite.name}: ${(suite.message ?? '').split('\n')[0]}`);
    }
  }
}
if (status !== '0' && failed === 0) {
  failed = 1;
  console.log('a step outside the test runs failed (install, lint, typecheck or build): see the log above');
}
console.log(`${passed} passed, ${failed} failed`);
