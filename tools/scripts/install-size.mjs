#!/usr/bin/env node
// How much a user installs: packs every package, installs the named ones into empty projects as a user would
// (the @flare tarballs they need, everything else from the registry; npm runs no install scripts) and prints,
// for each, the packages installed and their size. Needs the packages built (`npm run build`).
//
//   node tools/scripts/install-size.mjs                              # @flare/runtime and @flare/cli
//   node tools/scripts/install-size.mjs @flare/core @flare/pki --json
//
// Packages: every folder with a package.json under node_modules (nested copies too). MiB: the files' apparent
// sizes summed (not disk blocks), so the figure is the same on every file system.
import { execFileSync } from 'node:child_process';
import { lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const root = resolve(import.meta.dirname, '../..');
const args = process.argv.slice(2);
const json = args.includes('--json');
const wanted = args.filter((a) => !a.startsWith('--'));
const targets = wanted.length > 0 ? wanted : ['@flare/runtime', '@flare/cli'];

/** Every workspace package: name -> { dir, manifest }. */
const workspace = new Map();
for (const d of readdirSync(join(root, 'packages'))) {
  const manifest = JSON.parse(readFileSync(join(root, 'packages', d, 'package.json'), 'utf8'));
  if (manifest.private !== true) workspace.set(manifest.name, { dir: join(root, 'packages', d), manifest });
}

/** The workspace packages `name` needs at install time (itself, its dependencies and required peers, recursively). */
function closure(name, seen = new Set()) {
  if (seen.has(name) || !workspace.has(name)) return seen;
  seen.add(name);
  const m = workspace.get(name).manifest;
  const optional = m.peerDependenciesMeta ?? {};
  const peers = Object.keys(m.peerDependencies ?? {}).filter((p) => optional[p]?.optional !== true);
  for (const dep of [...Object.keys(m.dependencies ?? {}), ...peers]) closure(dep, seen);
  return seen;
}

/** Installed packages and apparent bytes under a node_modules folder. */
function measure(dir) {
  let packages = 0;
  let bytes = 0;
  const walk = (d) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isSymbolicLink()) continue;
      if (e.isDirectory()) walk(p);
      else if (e.isFile()) {
        bytes += lstatSync(p).size;
        if (e.name === 'package.json' && /node_modules\/(@[^/]+\/)?[^/@][^/]*$/.test(d)) packages += 1;
      }
    }
  };
  walk(dir);
  return { packages, mib: bytes / 2 ** 20 };
}

const work = mkdtempSync(join(tmpdir(), 'flare-install-size-'));
try {
  const tarballs = new Map();
  const needed = new Set(targets.flatMap((t) => [...closure(t)]));
  for (const t of targets) if (!workspace.has(t)) throw new Error(`${t} is not a publishable package of this workspace`);
  for (const name of needed) {
    const out = execFileSync('npm', ['pack', '--json', '--pack-destination', work], { cwd: workspace.get(name).dir, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    tarballs.set(name, join(work, JSON.parse(out)[0].filename));
  }
  const rows = [];
  for (const t of targets) {
    const app = join(work, `app-${t.replace(/[@/]/g, '_')}`);
    mkdirSync(app);
    writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'app', private: true, type: 'module' }));
    const mine = [...closure(t)].map((n) => tarballs.get(n));
    execFileSync('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', ...mine], { cwd: app, stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, npm_config_update_notifier: 'false' } });
    const m = measure(join(app, 'node_modules'));
    rows.push({ package: t, packages: m.packages, mib: Math.round(m.mib * 10) / 10 });
  }
  if (json) process.stdout.write(`${JSON.stringify({ node: process.version, rows })}\n`);
  else for (const r of rows) process.stdout.write(`${r.package.padEnd(18)} ${String(r.packages).padStart(4)} packages  ${r.mib.toFixed(1).padStart(7)} MiB\n`);
} finally {
  rmSync(work, { recursive: true, force: true });
}
