// What the e2e tests share: the built `flare` binary, a runner for it, and temporary folders removed afterwards.
import { execFile, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, type TestContext } from 'vitest';

/** The built CLI (nx builds every package before the e2e target runs). */
export const FLARE_BIN = resolve(import.meta.dirname, '../../packages/cli/dist/bin.js');

/** The outcome of a finished process. */
export interface Finished {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs `flare <args>` to completion (bounded by `timeoutMs`) and returns its exit code and output. */
export function flare(args: readonly string[], timeoutMs = 60_000): Promise<Finished> {
  return new Promise((done) => {
    execFile(process.execPath, [FLARE_BIN, ...args], { timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 }, (error, stdout, stderr) => {
      done({ code: error === null ? 0 : typeof error.code === 'number' ? error.code : 1, stdout, stderr });
    });
  });
}

/** A new temporary folder, removed after the test file's last test. */
export async function tempDir(prefix: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  created.push(dir);
  return dir;
}
const created: string[] = [];
afterAll(async () => {
  await Promise.all(created.splice(0).map((d) => rm(d, { recursive: true, force: true })));
});

/** A TCP port free on loopback right now. */
export function freePort(): Promise<number> {
  return new Promise((done, fail) => {
    const s = createServer();
    s.once('error', fail);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      s.close(() => (typeof a === 'object' && a !== null ? done(a.port) : fail(new Error('no port'))));
    });
  });
}

/**
 * A small FLARE project.yml for loopback tests: `server1` (SAN localhost, 127.0.0.1), the named client sites, and
 * optionally the project admin `admin@nvidia.com`, all in org `nvidia`.
 */
export function loopbackProject(name: string, o: { readonly sites?: readonly string[]; readonly admin?: boolean; readonly extra?: string } = {}): string {
  const sites = (o.sites ?? ['site-1']).map((s) => `  - name: ${s}\n    type: client\n    org: nvidia\n`).join('');
  const admin = o.admin === true ? '  - name: admin@nvidia.com\n    type: admin\n    org: nvidia\n    role: project_admin\n' : '';
  return `api_version: 3
name: ${name}
${o.extra ?? ''}participants:
  - name: server1
    type: server
    org: nvidia
    fed_learn_port: 8002
    host_names: [localhost, 127.0.0.1]
${sites}${admin}`;
}

/** System tools e2e tests use, each with its Debian package (tools/scripts/system-tools.mjs installs them). */
const TOOLS = {
  nginx: { apt: 'nginx', candidates: ['/usr/sbin/nginx', '/usr/bin/nginx', 'nginx'], probe: ['-v'] },
  openssl: { apt: 'openssl', candidates: ['openssl', '/usr/bin/openssl'], probe: ['version'] },
} as const;

/**
 * The command that runs a system tool here, or undefined when it is not installed (or named in
 * $FLARE_TEST_WITHOUT, comma-separated, to see the suite on a machine without it).
 */
export function systemTool(name: keyof typeof TOOLS): string | undefined {
  if ((process.env['FLARE_TEST_WITHOUT'] ?? '').split(',').includes(name)) return undefined;
  const t = TOOLS[name];
  return t.candidates.find((c) => (c.startsWith('/') ? existsSync(c) : spawnSync(c, t.probe, { stdio: 'ignore', timeout: 60_000 }).status === 0));
}

/**
 * The command of a system tool the running test needs; when it is missing the test is skipped (never failed) with
 * a reason saying how to install it, which the test summary lists (and CI, which has every tool, refuses).
 */
export function requireTool(ctx: TestContext, name: keyof typeof TOOLS): string {
  const found = systemTool(name);
  if (found !== undefined) return found;
  const apt = TOOLS[name].apt;
  return ctx.skip(`${name} is not installed: run \`npm test\` as root (its setup installs it) or \`apt-get install -y ${apt}\``);
}
