#!/usr/bin/env node
// The system tools the tests use, and the setup that installs the missing ones when it can (root with apt-get),
// as `npm test` and .ci/run do first. A test whose tool is still missing skips itself with the reason
// (`ctx.skip(reason)`); tools/scripts/test-summary.mjs lists those skips, and CI (which installs everything) fails
// on any.
//
//   node tools/scripts/system-tools.mjs            # report what is present and what is missing
//   node tools/scripts/system-tools.mjs --install  # install what is missing when root with apt-get, then report
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { pathToFileURL } from 'node:url';

// Debian's interpreter: apt's python3-* modules land there even when PATH finds another Python (pyenv).
const pythons = ['python3', '/usr/bin/python3'];

/** Runs a probe command quietly (bounded); true when it exits 0. */
function ok(cmd, args) {
  const r = spawnSync(cmd, args, { stdio: 'ignore', timeout: 120_000 });
  return r.status === 0;
}
const pythonImports = (module) => () => pythons.some((py) => ok(py, ['-c', `import ${module}`]));

/**
 * Each tool: its Debian package, a probe that is true when it is usable, and who uses it.
 * @type {ReadonlyArray<{ apt: string, present: () => boolean, usedBy: string }>}
 */
export const SYSTEM_TOOLS = [
  { apt: 'openssl', present: () => ok('openssl', ['version']), usedBy: 'pki and transport unit tests, e2e TLS interop (openssl s_client)' },
  {
    apt: 'nginx',
    present: () => ['nginx', '/usr/sbin/nginx'].some((p) => (p.includes('/') ? existsSync(p) : ok(p, ['-v']))),
    usedBy: 'e2e transport-proxy (a TLS-terminating reverse proxy)',
  },
  { apt: 'python3', present: () => pythons.some((py) => ok(py, ['--version'])), usedBy: 'external (Python) learner tests' },
  { apt: 'python3-numpy', present: pythonImports('numpy'), usedBy: 'Python learner tests' },
  { apt: 'python3-pytest', present: pythonImports('pytest'), usedBy: 'the Python client flare_ts tests' },
  { apt: 'python3-torch', present: pythonImports('torch'), usedBy: 'the PyTorch learner example' },
  { apt: 'python3-sklearn', present: pythonImports('sklearn'), usedBy: 'the scikit-learn learner example' },
];

/** The Debian packages of the tools that are missing now. */
export function missingTools() {
  return SYSTEM_TOOLS.filter((t) => !t.present()).map((t) => t.apt);
}

/**
 * Installs `packages` with apt-get when this process is root and apt-get exists (waits up to 5 minutes for another
 * apt to release its lock). Returns why it did not, or undefined when apt-get succeeded.
 */
export function aptInstall(packages) {
  if (packages.length === 0) return undefined;
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) return 'not root';
  if (!ok('apt-get', ['--version'])) return 'no apt-get';
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const lock = ['-o', 'DPkg::Lock::Timeout=300'];
  const opts = { env, stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8', timeout: 30 * 60_000 };
  const update = spawnSync('apt-get', [...lock, 'update', '-qq'], opts);
  if (update.status !== 0) return `apt-get update failed: ${(update.stderr ?? '').trim().split('\n').pop() ?? update.error?.message}`;
  const install = spawnSync('apt-get', [...lock, 'install', '-y', '-qq', '--no-install-recommends', ...packages], opts);
  if (install.status !== 0) return `apt-get install failed: ${(install.stderr ?? '').trim().split('\n').pop() ?? install.error?.message}`;
  return undefined;
}

function main(argv) {
  const before = missingTools();
  if (argv.includes('--install') && before.length > 0) {
    process.stdout.write(`system tools: installing ${before.join(' ')} (apt-get)\n`);
    const why = aptInstall(before);
    if (why !== undefined) process.stdout.write(`system tools: could not install (${why})\n`);
  }
  const missing = argv.includes('--install') && before.length > 0 ? missingTools() : before;
  if (missing.length === 0) {
    process.stdout.write(`system tools: all present (${SYSTEM_TOOLS.map((t) => t.apt).join(', ')})\n`);
    return;
  }
  for (const t of SYSTEM_TOOLS.filter((x) => missing.includes(x.apt))) {
    process.stdout.write(`system tools: ${t.apt} missing; tests that need it are skipped with the reason (${t.usedBy})\n`);
  }
  process.stdout.write(`system tools: as root, \`apt-get install -y ${missing.join(' ')}\` (or run npm test as root) installs them\n`);
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) main(process.argv.slice(2));
