// A local attacker who rolls a participant's audit log back (issue #14.13), with real `flare server` and `flare
// client` processes: at login the site sends its latest signed audit checkpoint (its anchor) to the server, which
// records it in its own log and answers with its own. A copy of the site's log cut before that anchor verifies on
// its own; `flare audit verify --anchors <the server's log>` refuses it.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { parseProject, provision } from '@flare/pki';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FLARE_BIN, flare, freePort, tempDir } from './support.js';

let root: string;
const kits = new Map<string, string>();
const procs: ChildProcess[] = [];
type AuditLine = { action: string; user?: string; data?: { [k: string]: unknown } };
const lines = async (file: string): Promise<AuditLine[]> =>
  (await readFile(file, 'utf8'))
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as AuditLine);

function start(args: string[], ready?: RegExp): Promise<ChildProcess> {
  const child = spawn(process.execPath, [FLARE_BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  procs.push(child);
  let err = '';
  child.stderr!.on('data', (d: Buffer) => {
    err += d.toString();
  });
  if (ready === undefined) return Promise.resolve(child);
  return new Promise((done, fail) => {
    const timer = setTimeout(() => fail(new Error(`no ${ready.source} within 120 s: ${err}`)), 120_000);
    child.once('exit', (code) => fail(new Error(`exited ${code}: ${err}`)));
    createInterface({ input: child.stdout! }).on('line', (l) => {
      if (ready.test(l)) {
        clearTimeout(timer);
        done(child);
      }
    });
  });
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  const t = setTimeout(() => child.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(t);
}

async function until<T>(check: () => Promise<T | undefined>, what: string, ms = 120_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await check().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

beforeAll(async () => {
  root = await tempDir('flare-hostile-disk-e2e-');
  const port = await freePort();
  const yaml = `api_version: 3
name: hostile_disk
participants:
  - name: localhost
    type: server
    org: org_a
    fed_learn_port: ${port}
  - name: site-1
    type: client
    org: org_a
`;
  const r = await provision(parseProject(yaml), { workspace: root });
  for (const k of r.kits) kits.set(k.name, k.dir);
});

afterAll(async () => {
  await Promise.all(procs.splice(0).map((p) => stop(p)));
});

describe('a rolled-back audit log is caught by its peers\' anchors (real processes)', () => {
  it("the server records the site's anchor at login; a copy of the site's log cut before it fails `flare audit verify --anchors`", async () => {
    const srvWs = join(root, 'server-ws');
    const siteWs = join(root, 'site-1-ws');
    await mkdir(siteWs, { recursive: true });
    await writeFile(join(siteWs, 'site.json'), JSON.stringify({ components: { allow: [], byoc: false } }));
    const serverArgs = ['server', '--kit', kits.get('localhost')!, '--workspace', srvWs];
    let server = await start(serverArgs, /listening on port/);
    const site = await start(['client', '--kit', kits.get('site-1')!, '--workspace', siteWs]);
    const srvLog = join(srvWs, 'audit.jsonl');
    const siteLog = join(siteWs, 'audit.jsonl');
    const anchorsOfSite = async (): Promise<number[]> => (await lines(srvLog)).filter((l) => l.action === 'audit_anchor' && l.data?.['peer'] === 'site-1').map((l) => (l.data!['anchor'] as { seq: number }).seq);
    const [first] = await until(async () => ((await anchorsOfSite()).length >= 1 ? anchorsOfSite() : undefined), "the site's anchor in the server's log");
    await until(async () => (await lines(siteLog)).find((l) => l.action === 'audit_anchor' && l.data?.['peer'] === 'localhost'), "the server's anchor in the site's log");
    // The server restarts: the site logs in again and sends a newer anchor.
    await stop(server);
    server = await start(serverArgs, /listening on port/);
    await until(async () => ((await anchorsOfSite()).length >= 2 ? true : undefined), "the site's second anchor");
    await stop(site);
    await stop(server);

    const whole = await flare(['audit', 'verify', siteLog, '--anchors', srvLog]);
    expect(whole.code, whole.stdout + whole.stderr).toBe(0);
    expect(whole.stdout).toMatch(/anchors: [1-9]\d* of [1-9]\d* recorded checkpoints of site-1 found as recorded/);

    // The attacker's older copy: the site's log as it was at its first anchored checkpoint. It verifies on its own.
    const text = (await readFile(siteLog, 'utf8')).trim().split('\n');
    const at = text.findIndex((l) => {
      const r = JSON.parse(l) as { seq?: number; action?: string };
      return r.seq === first && r.action === 'audit_checkpoint';
    });
    expect(at).toBeGreaterThanOrEqual(0);
    const older = join(root, 'site-1-older.jsonl');
    await writeFile(older, text.slice(0, at + 1).join('\n') + '\n');
    const alone = await flare(['audit', 'verify', older]);
    expect(alone.code, alone.stdout + alone.stderr).toBe(0);
    const anchored = await flare(['audit', 'verify', older, '--anchors', srvLog]);
    expect(anchored.code).toBe(1);
    expect(anchored.stdout + anchored.stderr).toMatch(/E_AUDIT_TAMPERED/);
  });
});
