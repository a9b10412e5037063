#!/usr/bin/env node
// `npm audit` for CI: fails when a high or critical advisory affects any installed package (dev tools included),
// unless the advisory is listed, with a reason and an expiry date, in .github/audit-exceptions.json:
//   [{ "id": "GHSA-xxxx-xxxx-xxxx", "reason": "only reachable from the bench tool, never shipped", "until": "2026-12-31" }]
// An expired exception counts as not listed. Needs the registry's audit endpoint (a network that allows POST).
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';

const root = resolve(import.meta.dirname, '../..');
const exceptionsFile = resolve(root, '.github/audit-exceptions.json');
const today = new Date().toISOString().slice(0, 10);
const exceptions = new Map(
  (existsSync(exceptionsFile) ? JSON.parse(readFileSync(exceptionsFile, 'utf8')) : [])
    .filter((e) => typeof e.until === 'string' && e.until >= today)
    .map((e) => [e.id, e.reason]),
);

let out;
try {
  out = execFileSync('npm', ['audit', '--json'], { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 64 * 1024 * 1024 });
} catch (e) {
  out = e.stdout ?? ''; // npm audit exits 1 when it finds anything
}
const report = JSON.parse(out || '{}');
if (report.vulnerabilities === undefined) {
  console.error(`audit: npm audit gave no report (${report.message ?? report.error?.summary ?? 'no output'}); the audit endpoint must be reachable`);
  process.exit(2);
}
const ghsa = (url) => /GHSA-[\w-]+/.exec(url ?? '')?.[0] ?? url;
const blocking = [];
for (const [name, v] of Object.entries(report.vulnerabilities)) {
  // `via` holds advisories (objects) or names of vulnerable dependencies (strings, reported under their own name)
  for (const a of v.via.filter((x) => typeof x === 'object')) {
    if (a.severity !== 'high' && a.severity !== 'critical') continue;
    const id = ghsa(a.url);
    if (exceptions.has(id)) console.log(`audit: ${name}: ${id} (${a.severity}) excepted: ${exceptions.get(id)}`);
    else blocking.push(`${name} ${a.range}: ${id} (${a.severity}) ${a.title}`);
  }
}
const counts = report.metadata?.vulnerabilities ?? {};
console.log(`audit: ${Object.entries(counts).map(([k, n]) => `${n} ${k}`).join(', ')}`);
if (blocking.length > 0) {
  for (const b of blocking) console.log(`audit: BLOCKING ${b}`);
  console.log('audit: update the dependency (npm update / a newer version), or list the advisory in .github/audit-exceptions.json with a reason and an expiry');
  process.exit(1);
}
