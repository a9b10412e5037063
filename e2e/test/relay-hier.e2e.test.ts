// Hierarchical aggregation relays (issue #18 item 1) with real processes on loopback: `flare server`, two
// `flare relay` processes in aggregation mode (project.yml `mode: aggregate`) with two `flare client` sites each,
// and a hostile aggregating relay (a process on @flare/runtime's public API whose privacy scope inflates its
// update's step count) with one site. A whole job finishes; the server's audit log names the sites behind each
// relay's update; the hostile relay's claimed weight is capped and audited with E_RUNTIME_RELAY_WEIGHT.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { encodeModel } from '@flare/core';
import { parseProject, provision } from '@flare/pki';
import { denseNetwork, readWeights, selectBackend } from '@flare/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FLARE_BIN, flare, freePort, tempDir } from './support.js';

const FEATURES = 64;
const MAX_STEPS = 1000;
const E2E_DIR = resolve(import.meta.dirname, '..');
let root: string;
const kits = new Map<string, string>();
const procs: ChildProcess[] = [];
const ports = { server: 0, 'agg-a': 0, 'agg-b': 0, 'agg-h': 0 };

/** The hostile relay: the real aggregating relay, with a privacy-scope filter that claims 1e12 steps on its aggregate. */
const HOSTILE = `
import { join } from 'node:path';
import { META } from '@flare/core';
import { loadKit } from '@flare/pki';
import { loadSitePolicies } from '@flare/policy';
import { jobTrustFromKit, sitePolicyFromFiles, startAggregatingRelay } from '@flare/runtime';
import { z } from 'zod';
const [kitDir, port, upstream, ws] = process.argv.slice(1);
const kit = await loadKit(kitDir);
const inflate = { name: 'inflate-steps', args: z.object({}).passthrough(), create: () => ({ name: 'inflate-steps', apply: (m) => ({ ...m, meta: { ...m.meta, [META.NUM_STEPS_CURRENT_ROUND]: 1e12 } }) }) };
const filters = new Map([['inflate-steps', inflate]]);
const policies = await loadSitePolicies({ localDir: join(kitDir, 'local'), registry: filters });
const relay = await startAggregatingRelay({
  kit, port: Number(port), upstream: [{ host: '127.0.0.1', port: Number(upstream) }], workspace: ws,
  policy: sitePolicyFromFiles(policies, { jobTrust: jobTrustFromKit({ project: kit.project, rootCaPem: kit.rootCaPem }) }),
  filters, backoff: { initialMs: 100, maxMs: 1000 },
});
console.log('hostile relay listening on port ' + relay.port);
process.once('SIGTERM', () => void relay.close().then(() => { policies.close(); process.exit(0); }));
`;

/** Starts a process and resolves once a stdout line matches `ready` (bounded by 120 s). */
function start(args: readonly string[], ready: RegExp | undefined, o: { readonly cwd?: string } = {}): Promise<ChildProcess> {
  const child = spawn(process.execPath, [...args], { stdio: ['ignore', 'pipe', 'pipe'], ...(o.cwd === undefined ? {} : { cwd: o.cwd }) });
  procs.push(child);
  let err = '';
  child.stderr!.on('data', (d: Buffer) => {
    err = (err + d.toString()).slice(-20_000);
    if (process.env['FLARE_E2E_VERBOSE'] !== undefined) process.stderr.write(`[${args.slice(1, 4).join(' ')}] ${d.toString()}`);
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

/** Polls `check` every 200 ms until it returns a value, at most `ms`. */
async function until<T>(check: () => Promise<T | undefined>, ms: number, what: string): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await check().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

type AuditLine = { action: string; user?: string; job?: string; data?: { [k: string]: unknown } };
const auditLines = async (ws: string): Promise<AuditLine[]> =>
  (await readFile(join(ws, 'audit.jsonl'), 'utf8'))
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as AuditLine);
const ws = (name: string): string => join(root, `${name}-ws`);

beforeAll(async () => {
  root = await tempDir('flare-relay-hier-');
  for (const k of Object.keys(ports) as Array<keyof typeof ports>) ports[k] = await freePort();
  const relay = (name: string): string => `  - name: ${name}\n    type: relay\n    org: nvidia\n    mode: aggregate\n    listening_host: localhost\n`;
  const site = (name: string, parent: keyof typeof ports): string => `  - name: ${name}\n    type: client\n    org: org_${name.replace('-', '_')}\n    parent: ${parent}\n    connect_to: { host: localhost, port: ${ports[parent]} }\n`;
  const yaml = `api_version: 3
name: relay_hier_e2e
participants:
  - name: localhost
    type: server
    org: nvidia
    fed_learn_port: ${ports.server}
${relay('agg-a')}${relay('agg-b')}${relay('agg-h')}${site('site-1', 'agg-a')}${site('site-2', 'agg-a')}${site('site-3', 'agg-b')}${site('site-4', 'agg-b')}${site('site-5', 'agg-h')}  - name: admin@nvidia.com
    type: admin
    org: nvidia
    role: project_admin
`;
  const r = await provision(parseProject(yaml), { workspace: root });
  for (const k of r.kits) kits.set(k.name, k.dir);
  const json = (v: unknown): string => JSON.stringify(v);
  // The server caps each site's steps (and so each relay's, per site it names).
  await writeFile(join(kits.get('localhost')!, 'local', 'aggregation.json'), json({ format_version: '1.0', max_steps: MAX_STEPS }));
  for (const name of ['agg-a', 'agg-b', 'agg-h']) {
    const local = join(kits.get(name)!, 'local');
    // Each relay's own policy: it admits the job's learner name and caps its sites' steps like the server.
    await writeFile(join(local, 'components.json'), json({ format_version: '1.0', allow: ['tfjs-spam'], byoc: false }));
    await writeFile(join(local, 'aggregation.json'), json({ format_version: '1.0', max_steps: MAX_STEPS }));
  }
  await writeFile(
    join(kits.get('agg-h')!, 'local', 'privacy.json'),
    json({ scopes: [{ name: 'public', task_result_filters: [{ name: 'inflate-steps', args: {} }], task_data_filters: [] }], default_scope: 'public' }),
  );
  for (const [i, s] of ['site-1', 'site-2', 'site-3', 'site-4', 'site-5'].entries()) {
    await mkdir(ws(s), { recursive: true });
    await writeFile(join(ws(s), 'site.json'), json({ data: { site: i % 3, sites: 3, features: FEATURES }, components: { allow: ['tfjs-spam'], byoc: false } }));
    await writeFile(join(kits.get(s)!, 'local', 'components.json'), json({ format_version: '1.0', allow: ['tfjs-spam'], byoc: false }));
  }
  await selectBackend({ prefer: 'cpu' });
});

afterAll(async () => {
  await Promise.all(procs.splice(0).map((p) => stop(p)));
});

describe('hierarchical aggregation relays with real processes', () => {
  it('a job runs through two aggregating relays (2 sites each) and a hostile one: the audit log shows the tree, the hostile weight is capped (E_RUNTIME_RELAY_WEIGHT)', { timeout: 900_000 }, async () => {
    await start([FLARE_BIN, 'server', '--kit', kits.get('localhost')!, '--workspace', ws('server')], /listening on port/);
    await start([FLARE_BIN, 'relay', '--kit', kits.get('agg-a')!, '--port', String(ports['agg-a']), '--workspace', ws('agg-a')], /listening on port/);
    await start([FLARE_BIN, 'relay', '--kit', kits.get('agg-b')!, '--port', String(ports['agg-b']), '--workspace', ws('agg-b')], /listening on port/);
    await start(['--input-type=module', '-e', HOSTILE, kits.get('agg-h')!, String(ports['agg-h']), String(ports.server), ws('agg-h')], /hostile relay listening/, { cwd: E2E_DIR });
    for (const s of ['site-1', 'site-2', 'site-3', 'site-4', 'site-5']) await start([FLARE_BIN, 'client', '--kit', kits.get(s)!, '--workspace', ws(s)], undefined);
    // Every relay has registered with the server, and every site with its relay.
    await until(async () => ((await auditLines(ws('server'))).filter((e) => e.action === 'client_registered').length >= 3 ? true : undefined), 300_000, 'the relays to register');
    for (const [relay, n] of [['agg-a', 2], ['agg-b', 2]] as const) {
      await until(async () => ((await auditLines(ws(relay))).filter((e) => e.action === 'client_registered').length >= n ? true : undefined), 300_000, `the sites of ${relay} to register`);
    }
    const dir = join(root, 'job');
    await mkdir(dir, { recursive: true });
    await writeFile(
      join(dir, 'meta.json'),
      JSON.stringify({ name: 'hier', rounds: 2, min_clients: 3, round_timeout_s: 240, deploy: ['@ALL'], learner: { name: 'tfjs-spam', args: { features: FEATURES, hidden: 0, epochs: 1, batch_size: 32 } } }),
    );
    await writeFile(join(dir, 'model.safetensors'), encodeModel(readWeights(denseNetwork(FEATURES, [{ name: 'out', units: 1, activation: 'sigmoid' }]))));
    const submitted = await flare(['admin', '--kit', kits.get('admin@nvidia.com')!, 'submit', dir]);
    expect(submitted.code, submitted.stderr).toBe(0);
    const id = submitted.stdout.trim();
    const rec = await until(async () => {
      const r = JSON.parse(await readFile(join(ws('server'), 'jobs', id, 'record.json'), 'utf8')) as { status: string; history: Array<{ contributors: string[] }>; error?: unknown };
      return r.status === 'RUNNING' || r.status === 'SUBMITTED' ? undefined : r;
    }, 600_000, 'the job to end');
    expect(rec.error).toBeUndefined();
    expect(rec.status).toBe('FINISHED');
    // The server aggregated three contributors, one per relay.
    expect(rec.history.map((h) => [...h.contributors].sort())).toEqual([['agg-a', 'agg-b', 'agg-h'], ['agg-a', 'agg-b', 'agg-h']]);

    // The server's audit log shows the tree: the sites behind each relay's update, every round.
    const audit = await auditLines(ws('server'));
    const contributions = audit.filter((e) => e.action === 'relay_contribution' && e.job === id);
    expect(contributions).toHaveLength(6);
    const of = (relay: string): AuditLine[] => contributions.filter((e) => e.data?.['relay'] === relay);
    expect(of('agg-a').map((e) => e.data?.['sites'])).toEqual([['site-1', 'site-2'], ['site-1', 'site-2']]);
    expect(of('agg-b').map((e) => e.data?.['sites'])).toEqual([['site-3', 'site-4'], ['site-3', 'site-4']]);
    // Honest relays are within their cap; the hostile one's 1e12 steps count as MAX_STEPS (one site), audited with the code.
    for (const e of [...of('agg-a'), ...of('agg-b')]) expect(e.data?.['code']).toBeUndefined();
    for (const e of of('agg-h')) expect(e.data).toMatchObject({ sites: ['site-5'], steps: 1e12, cap: MAX_STEPS, code: 'E_RUNTIME_RELAY_WEIGHT' });

    // Each relay's own audit log records its sites' round.
    const relayAudit = await auditLines(ws('agg-a'));
    expect(relayAudit.filter((e) => e.action === 'relay_round_aggregated' && e.job === id).map((e) => e.data?.['sites'])).toEqual([['site-1', 'site-2'], ['site-1', 'site-2']]);
    // The sites verified the admin's signature on the job the relay forwarded, and ran it.
    const site1 = await auditLines(ws('site-1'));
    expect(site1.some((e) => e.action === 'deploy_accepted' && e.job === id)).toBe(true);

    // `flare admin sites` shows the tree: each site behind its aggregating relay, as the relays reported them.
    const sites = await flare(['admin', '--kit', kits.get('admin@nvidia.com')!, 'sites']);
    expect(sites.code, sites.stderr).toBe(0);
    for (const [s, relay] of [['site-1', 'agg-a'], ['site-2', 'agg-a'], ['site-3', 'agg-b'], ['site-4', 'agg-b'], ['site-5', 'agg-h']]) {
      expect(sites.stdout).toMatch(new RegExp(`^${s} .* behind aggregating relay ${relay}$`, 'm'));
    }
  });
});
