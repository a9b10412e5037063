#!/usr/bin/env node
// Prints the closing line CI reads, "N passed, N failed", summed over vitest JSON reports in a folder, after the
// list of skipped tests with their reasons (from the *.skips.json files tools/scripts/skip-reporter.mjs writes).
// A step that failed without a failing test (install, lint, typecheck, build) counts as one failure, so the
// line never reads "0 failed" for a red run. With --no-skips (CI, which installs every system tool) each skipped
// test counts as a failure too.
//
//   node tools/scripts/test-summary.mjs [reports/vitest] [exit status of the run] [--no-skips]
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

const args = process.argv.slice(2);
const strict = args.includes('--no-skips');
const [dir = 'reports/vitest', status = '0'] = args.filter((a) => !a.startsWith('--'));
let passed = 0;
let failed = 0;
let skipped = 0;
const files = existsSync(dir) ? readdirSync(dir).sort() : [];
for (const file of files.filter((f) => f.endsWith('.json') && !f.endsWith('.skips.json'))) {
  const report = JSON.parse(readFileSync(join(dir, file), 'utf8'));
  passed += report.numPassedTests ?? 0;
  failed += report.numFailedTests ?? 0;
  skipped += (report.numPendingTests ?? 0) + (report.numTodoTests ?? 0);
  // a test file that failed to load has no failed tests but a failed suite
  for (const suite of report.testResults ?? []) {
    if (suite.status === 'failed' && (suite.assertionResults ?? []).every((a) => a.status !== 'failed')) {
      failed += 1;
      console.log(`failed to run: ${suite.name}: ${(suite.message ?? '').split('\n')[0]}`);
    }
  }
}
const reasons = files
  .filter((f) => f.endsWith('.skips.json'))
  .flatMap((f) => JSON.parse(readFileSync(join(dir, f), 'utf8')));
if (skipped > 0 || reasons.length > 0) {
  console.log(`${Math.max(skipped, reasons.length)} skipped:`);
  for (const s of reasons) console.log(`  skipped: ${s.file} > ${s.test}: ${s.reason}`);
  if (strict) {
    console.log('a skipped test fails this run: CI installs every system tool the tests use (tools/scripts/system-tools.mjs)');
    failed += Math.max(skipped, reasons.length);
  }
}
if (status !== '0' && failed === 0) {
  failed = 1;
  console.log('a step outside the test runs failed (install, lint, typecheck or build): see the log above');
}
console.log(`${passed} passed, ${failed} failed`);
if (strict) process.exitCode = failed > 0 ? 1 : 0;
