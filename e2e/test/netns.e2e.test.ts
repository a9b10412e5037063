// Participants on separate hosts (issue #18 item 2): the server, two chained relays and three sites each in
// their own Linux network namespace with its own address on a bridge, kit host names resolved through each
// namespace's hosts file. A whole job runs through the relays; a link taken down mid-round partitions a relay and
// the site behind it, and heals: the job completes, no acknowledged round is lost, and every audit log verifies.
import { spawn } from 'node:child_process';
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseProject, provision } from '@flare/pki';
import { selectBackend } from '@flare/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createNetnsLab, netnsUnavailable, requireNetns, type NetnsLab } from '../support/netns.js';
import { auditOf, FLARE_BIN as BIN, jobEnded, startCommand, stopAll, until, writeSpamJob, type Started } from './support.js';

const FEATURES = 64;
const NODES = [
  { name: 'server', hostnames: ['flserver'] },
  { name: 'relay-a', hostnames: ['relay-a.lan'] },
  { name: 'relay-b', hostnames: ['relay-b.lan'] },
  { name: 'site-1', hostnames: ['site-1.lan'] },
  { name: 'site-2', hostnames: ['site-2.lan'] },
  { name: 'site-3', hostnames: ['site-3.lan'] },
] as const;

// site-1 -> relay-a -> server; site-2 -> relay-b -> relay-a -> server; site-3 -> server.
const PROJECT = `api_version: 3
name: netns_e2e
participants:
  - name: flserver
    type: server
    org: org_a
    fed_learn_port: 8002
  - name: relay-a
    type: relay
    org: org_a
    listening_host: relay-a.lan
  - name: relay-b
    type: relay
    org: org_b
    listening_host: relay-b.lan
    parent: relay-a
    connect_to: { host: relay-a.lan, port: 8102 }
  - name: site-1
    type: client
    org: org_1
    parent: relay-a
    connect_to: { host: relay-a.lan, port: 8102 }
  - name: site-2
    type: client
    org: org_2
    parent: relay-b
    connect_to: { host: relay-b.lan, port: 8103 }
  - name: site-3
    type: client
    org: org_3
  - name: admin@a.org
    type: admin
    org: org_a
    role: project_admin
`;

const skipReason = netnsUnavailable();
let lab: NetnsLab | undefined;
let root: string;
const kits = new Map<string, string>();

/** Runs `flare <args>` inside a node's namespace; resolves once a stdout line matches `ready` (bounded). */
function start(node: string, args: string[], ready?: RegExp): Promise<Started> {
  return startCommand([...lab!.node(node).exec, process.execPath, BIN, ...args], { label: node, ...(ready === undefined ? {} : { ready }) });
}

/** `flare <args>` to completion inside a node's namespace. */
function run(node: string, args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(lab!.node(node).exec[0]!, [...lab!.node(node).exec.slice(1), process.execPath, BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve) => {
    const t = setTimeout(() => child.kill('SIGKILL'), 120_000);
    child.once('exit', (code) => {
      clearTimeout(t);
      resolve({ code, stdout, stderr });
    });
  });
}

const ws = (who: string): string => join(root, `${who}-ws`);

beforeAll(async () => {
  if (skipReason !== undefined) return;
  root = await mkdtemp(join(tmpdir(), 'flare-netns-'));
  // Processes in the namespaces run as root too; the temp dir must be theirs to write.
  await chmod(root, 0o755);
  const r = await provision(parseProject(PROJECT), { workspace: root });
  for (const k of r.kits) kits.set(k.name, k.dir);
  for (const [i, s] of ['site-1', 'site-2', 'site-3'].entries()) {
    await mkdir(ws(s), { recursive: true });
    await writeFile(join(ws(s), 'site.json'), JSON.stringify({ data: { site: i, sites: 3, features: FEATURES }, components: { allow: ['tfjs-spam'], byoc: false } }));
    await writeFile(join(kits.get(s)!, 'local', 'components.json'), JSON.stringify({ format_version: '1.0', allow: ['tfjs-spam'], byoc: false }));
  }
  await selectBackend({ prefer: 'cpu' });
  lab = createNetnsLab(NODES);
});

afterAll(async () => {
  await stopAll();
  lab?.destroy();
  if (root !== undefined) await rm(root, { recursive: true, force: true });
});

describe('participants on separate hosts (network namespaces)', () => {
  it('a job through two chained relays survives a partition of a relay mid-round; no round lost; audit logs verify', async (ctx) => {
    requireNetns(ctx);
    await start('server', ['server', '--kit', kits.get('flserver')!, '--workspace', ws('server'), '--host', '0.0.0.0'], /listening on port/);
    await start('relay-a', ['relay', '--kit', kits.get('relay-a')!, '--port', '8102', '--host', '0.0.0.0', '--workspace', ws('relay-a')], /listening on port/);
    await start('relay-b', ['relay', '--kit', kits.get('relay-b')!, '--port', '8103', '--host', '0.0.0.0', '--workspace', ws('relay-b')], /listening on port/);
    for (const s of ['site-1', 'site-2', 'site-3']) await start(s, ['client', '--kit', kits.get(s)!, '--workspace', ws(s)]);
    await until(async () => {
      const names = (await auditOf(ws('server'))).filter((e) => e.action === 'client_registered').map((e) => e.user);
      return ['site-1', 'site-2', 'site-3'].every((s) => names.includes(s)) ? true : undefined;
    }, 120_000, 'the three sites to register');

    const dir = await writeSpamJob(join(root, 'job'), {
      name: 'netns',
      rounds: 3,
      min_clients: 3,
      round_timeout_s: 240,
      deploy: ['site-1', 'site-2', 'site-3'],
      learner: { name: 'tfjs-spam', args: { features: FEATURES, hidden: 0, epochs: 1, batch_size: 32, optimizer: 'adam', learning_rate: 0.01 } },
    }, FEATURES);
    const submitted = await run('server', ['admin', '--kit', kits.get('admin@a.org')!, 'submit', dir]);
    expect(submitted.code, submitted.stderr).toBe(0);
    const id = submitted.stdout.trim();

    // Round 1 goes out; relay-b (and site-2 behind it) is cut off from the bridge until the other two sites'
    // round-1 updates are in: site-2's own update waits in its TCP stream across the partition.
    await until(async () => ((await auditOf(ws('server'))).some((e) => e.action === 'task_sent' && e.data?.['round'] === 1 && e.data?.['site'] === 'site-2') ? true : undefined), 240_000, 'round 1 to be sent');
    lab!.link('relay-b', 'down');
    try {
      await until(async () => {
        const got = (await auditOf(ws('server'))).filter((e) => e.action === 'result_accepted' && e.data?.['round'] === 1).map((e) => e.data?.['site']);
        return got.includes('site-1') && got.includes('site-3') ? true : undefined;
      }, 240_000, 'round-1 updates of site-1 and site-3 during the partition');
      const during = (await auditOf(ws('server'))).filter((e) => e.action === 'round_completed' && e.data?.['round'] === 1);
      expect(during).toEqual([]); // min_clients 3: the round waits for site-2
    } finally {
      lab!.link('relay-b', 'up');
    }

    const rec = await jobEnded(ws('server'), id, 300_000);
    expect(rec.status).toBe('FINISHED');
    expect(rec.rounds_done).toBe(3);
    expect(rec.history.map((h) => h.round)).toEqual([0, 1, 2]);
    for (const h of rec.history) expect([...h.contributors].sort()).toEqual(['site-1', 'site-2', 'site-3']);

    // Every participant's audit log is whole, and the server's and sites' checkpoints are signed by their keys.
    await stopAll();
    const certs: Record<string, string> = { server: join(kits.get('flserver')!, 'startup', 'server.crt') };
    for (const s of ['site-1', 'site-2', 'site-3']) certs[s] = join(kits.get(s)!, 'startup', 'client.crt');
    for (const [who, cert] of Object.entries(certs)) {
      const v = await run('server', ['audit', 'verify', join(ws(who), 'audit.jsonl'), '--cert', cert]);
      expect(v.code, `${who}: ${v.stdout}${v.stderr}`).toBe(0);
    }
  });
});
