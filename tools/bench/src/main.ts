// `npm run bench [-- suite ...]`: runs the named suites (all when none is named) and prints their figures as
// ratios against baselines measured in the same run, with the absolute numbers and the machine.
import { readdirSync } from 'node:fs';
import { machine, printRows, type Suite } from './harness.js';

const dir = new URL('./suites/', import.meta.url);
const available = readdirSync(dir)
  .filter((f) => f.endsWith('.js'))
  .map((f) => f.slice(0, -3))
  .sort();
const wanted = process.argv.slice(2).filter((a) => !a.startsWith('-'));
const unknown = wanted.filter((w) => !available.includes(w));
if (unknown.length > 0) {
  console.error(`unknown suite(s): ${unknown.join(', ')}; available: ${available.join(', ') || '(none)'}`);
  process.exit(2);
}
console.log(`# FLARE-TS benchmarks\nmachine: ${machine()}\ndate: ${new Date().toISOString()}`);
for (const name of wanted.length > 0 ? wanted : available) {
  const { suite } = (await import(new URL(`${name}.js`, dir).href)) as { suite: Suite };
  console.log(`\n${suite.description}`);
  printRows(suite.name, await suite.run());
}
