// What the e2e tests share: the built `flare` binary, a runner for it, temporary folders removed afterwards,
// participants started as processes (stopped after the file at the latest), bounded waits, and readers of the
// server's job records and the participants' audit logs.
import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { encodeModel } from '@flare/core';
import { testProjectYaml, type TestProjectOptions } from '@flare/pki/testing';
import { denseNetwork, readWeights } from '@flare/tfjs';
import { afterAll, expect, type TestContext } from 'vitest';

/** The built CLI (nx builds every package before the e2e target runs). */
export const FLARE_BIN = resolve(import.meta.dirname, '../../packages/cli/dist/bin.js');

/** The outcome of a finished process. */
export interface Finished {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs `flare <args>` (with `env` added to the environment) to completion, bounded by `timeoutMs`; returns its exit code and output. */
export function flare(args: readonly string[], timeoutMs = 60_000, env?: Readonly<Record<string, string>>): Promise<Finished> {
  return new Promise((done) => {
    execFile(process.execPath, [FLARE_BIN, ...args], { timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024, ...(env === undefined ? {} : { env: { ...process.env, ...env } }) }, (error, stdout, stderr) => {
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
 * optionally the project admin `admin@nvidia.com`, all in org `nvidia` (@flare/pki/testing's builder with these
 * defaults; call `testProjectYaml` directly for other shapes).
 */
export function loopbackProject(name: string, o: Omit<TestProjectOptions, 'name'> & { readonly admin?: boolean } = {}): string {
  const { admin, ...rest } = o;
  return testProjectYaml({ server: 'server1', hostNames: ['localhost', '127.0.0.1'], ...(admin === true ? { admins: [['admin@nvidia.com', 'nvidia', 'project_admin']] } : {}), ...rest, name });
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

/** A process a test started ({@link startCommand}): the child, its exit code once it exits, and the end of its output (for failure messages). */
export interface Started {
  readonly child: ChildProcess;
  readonly exited: Promise<number | null>;
  /** The last 64 KiB of its stdout. */
  stdout(): string;
  /** The last 64 KiB of its stderr. */
  stderr(): string;
}

/** How {@link startCommand} starts a process and when it counts as ready. */
export interface StartOptions {
  /** Resolve once a stdout line matches (rejects if the process exits first or `readyMs` passes); without it, at once. */
  readonly ready?: RegExp;
  /** Bound on waiting for `ready`; generous, for a busy 2-core machine. Default 120 s. */
  readonly readyMs?: number;
  /** Extra environment variables. */
  readonly env?: Readonly<Record<string, string>>;
  /** Names the process in messages and in the FLARE_E2E_VERBOSE mirror; default: its first arguments. */
  readonly label?: string;
}

const running = new Set<ChildProcess>();

/**
 * Starts `command` (the program, then its arguments). Its stdout is always read (a full pipe would stall it); the
 * end of stdout and stderr is kept for failure messages, stderr mirrored with FLARE_E2E_VERBOSE set. Every process
 * started here is stopped by {@link stopAll}, after the test file's last test at the latest.
 */
export function startCommand(command: readonly string[], o: StartOptions = {}): Promise<Started> {
  const child = spawn(command[0]!, command.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], ...(o.env === undefined ? {} : { env: { ...process.env, ...o.env } }) });
  running.add(child);
  const label = o.label ?? command.slice(1, 4).join(' ');
  let err = '';
  let out = '';
  child.stderr!.on('data', (d: Buffer) => {
    err = (err + d.toString()).slice(-65_536);
    if (process.env['FLARE_E2E_VERBOSE'] !== undefined) process.stderr.write(`[${label}] ${d.toString()}`);
  });
  child.stdout!.on('data', (d: Buffer) => (out = (out + d.toString()).slice(-65_536)));
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  void exited.then(() => running.delete(child));
  const started: Started = { child, exited, stdout: () => out, stderr: () => err };
  const ready = o.ready;
  if (ready === undefined) return Promise.resolve(started);
  const ms = o.readyMs ?? 120_000;
  return new Promise((done, fail) => {
    const timer = setTimeout(() => fail(new Error(`${label}: no ${ready.source} within ${ms / 1000} s: ${err}`)), ms);
    void exited.then((code) => {
      clearTimeout(timer);
      fail(new Error(`${label}: exited ${code}: ${err}`));
    });
    createInterface({ input: child.stdout! }).on('line', (l) => {
      if (ready.test(l)) {
        clearTimeout(timer);
        done(started);
      }
    });
  });
}

/** Starts `node <argv>` (a script, then its arguments); see {@link startCommand}. */
export function startNode(argv: readonly string[], o: StartOptions = {}): Promise<Started> {
  return startCommand([process.execPath, ...argv], { label: argv.slice(1, 4).join(' '), ...o });
}

/** Starts `flare <args>` from the built CLI; see {@link startCommand}. */
export function startFlare(args: readonly string[], o: StartOptions = {}): Promise<Started> {
  return startNode([FLARE_BIN, ...args], o);
}

/** Sends `signal` (default SIGTERM), then SIGKILL after `graceMs`; resolves with the exit code (null after a signal). */
export async function stopProcess(p: Started | ChildProcess, signal: NodeJS.Signals = 'SIGTERM', graceMs = 10_000): Promise<number | null> {
  const child = 'child' in p ? p.child : p;
  if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  child.kill(signal);
  const t = setTimeout(() => child.kill('SIGKILL'), graceMs);
  const code = await exited;
  clearTimeout(t);
  return code;
}

/** Stops every process started with {@link startCommand} (or startNode, startFlare) that still runs. */
export async function stopAll(): Promise<void> {
  await Promise.all([...running].map((c) => stopProcess(c)));
}
afterAll(stopAll);

/**
 * Calls `check` every `everyMs` (default 200 ms) until it returns a value other than undefined (a throw counts as
 * not yet); fails after `ms` naming `what`.
 */
export async function until<T>(check: () => Promise<T | undefined> | T | undefined, ms: number, what: string, everyMs = 200): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await (async () => check())().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out after ${ms / 1000} s waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** The fields of a server's jobs/<id>/record.json the tests read. */
export interface JobRecord {
  readonly status: string;
  readonly rounds_done: number;
  readonly sites: string[];
  readonly refused: { [site: string]: string };
  readonly history: Array<{ round: number; contributors: string[]; metrics: { [k: string]: number }; site_validation?: { [site: string]: { [k: string]: number } } }>;
  readonly error?: { code: string; message: string };
}

/** The server's record of job `id` in its workspace `serverWs`. */
export async function readJobRecord(serverWs: string, id: string): Promise<JobRecord> {
  return JSON.parse(await readFile(join(serverWs, 'jobs', id, 'record.json'), 'utf8')) as JobRecord;
}

/** Waits (at most `ms`) until the server's record says job `id` ended (neither SUBMITTED nor RUNNING). */
export function jobEnded(serverWs: string, id: string, ms: number, everyMs?: number): Promise<JobRecord> {
  return until(async () => {
    const r = await readJobRecord(serverWs, id);
    return r.status === 'RUNNING' || r.status === 'SUBMITTED' ? undefined : r;
  }, ms, `job ${id} to end`, everyMs);
}

/** One line of an audit.jsonl, with the fields the tests read. */
export interface AuditLine {
  readonly action: string;
  readonly user?: string;
  readonly job?: string;
  readonly msg?: string;
  readonly data?: { [k: string]: unknown };
}

/** The lines of the audit log `file`, parsed. */
export async function readAudit(file: string): Promise<AuditLine[]> {
  return (await readFile(file, 'utf8'))
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as AuditLine);
}

/** The audit log of a participant's workspace (`<ws>/audit.jsonl`). */
export const auditOf = (ws: string): Promise<AuditLine[]> => readAudit(join(ws, 'audit.jsonl'));

/**
 * Writes the job folder `dir`: meta.json from `definition` and, as model.safetensors, the initial weights of the
 * tfjs-spam learner's logistic regression over `features` inputs. Returns `dir`.
 */
export async function writeSpamJob(dir: string, definition: object, features: number): Promise<string> {
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'meta.json'), JSON.stringify(definition));
  await writeFile(join(dir, 'model.safetensors'), encodeModel(readWeights(denseNetwork(features, [{ name: 'out', units: 1, activation: 'sigmoid' }]))));
  return dir;
}

/** Submits the job folder `dir` with `flare admin --kit <adminKit> submit` (a process); returns the job id. */
export async function submitJob(adminKit: string, dir: string, timeoutMs = 120_000): Promise<string> {
  const r = await flare(['admin', '--kit', adminKit, 'submit', dir], timeoutMs);
  expect(r.code, r.stderr).toBe(0);
  return r.stdout.trim();
}
