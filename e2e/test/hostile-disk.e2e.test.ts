// A local attacker who rolls a participant's audit log back (issue #14.13), with real `flare server` and `flare
// client` processes: at login the site sends its latest signed audit checkpoint (its anchor) to the server, which
// records it in its own log and answers with its own. A copy of the site's log cut before that anchor verifies on
// its own; `flare audit verify --anchors <the server's log>` refuses it.
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseProject, provision } from '@flare/pki';
import { testProjectYaml } from '@flare/pki/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { flare, freePort, readAudit, startFlare, stopAll, stopProcess, tempDir, until } from './support.js';

let root: string;
const kits = new Map<string, string>();

beforeAll(async () => {
  root = await tempDir('flare-hostile-disk-e2e-');
  const port = await freePort();
  const yaml = testProjectYaml({ name: 'hostile_disk', org: 'org_a', port });
  const r = await provision(parseProject(yaml), { workspace: root });
  for (const k of r.kits) kits.set(k.name, k.dir);
});

afterAll(stopAll);

describe('a rolled-back audit log is caught by its peers\' anchors (real processes)', () => {
  it("the server records the site's anchor at login; a copy of the site's log cut before it fails `flare audit verify --anchors`", async () => {
    const srvWs = join(root, 'server-ws');
    const siteWs = join(root, 'site-1-ws');
    await mkdir(siteWs, { recursive: true });
    await writeFile(join(siteWs, 'site.json'), JSON.stringify({ components: { allow: [], byoc: false } }));
    const serverArgs = ['server', '--kit', kits.get('localhost')!, '--workspace', srvWs];
    let server = await startFlare(serverArgs, { ready: /listening on port/ });
    const site = await startFlare(['client', '--kit', kits.get('site-1')!, '--workspace', siteWs]);
    const srvLog = join(srvWs, 'audit.jsonl');
    const siteLog = join(siteWs, 'audit.jsonl');
    const anchorsOfSite = async (): Promise<number[]> => (await readAudit(srvLog)).filter((l) => l.action === 'audit_anchor' && l.data?.['peer'] === 'site-1').map((l) => (l.data!['anchor'] as { seq: number }).seq);
    const [first] = await until(async () => ((await anchorsOfSite()).length >= 1 ? anchorsOfSite() : undefined), 120_000, "the site's anchor in the server's log");
    await until(async () => (await readAudit(siteLog)).find((l) => l.action === 'audit_anchor' && l.data?.['peer'] === 'localhost'), 120_000, "the server's anchor in the site's log");
    // The server restarts: the site logs in again and sends a newer anchor.
    await stopProcess(server);
    server = await startFlare(serverArgs, { ready: /listening on port/ });
    await until(async () => ((await anchorsOfSite()).length >= 2 ? true : undefined), 120_000, "the site's second anchor");
    await stopProcess(site);
    await stopProcess(server);

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
