// The runtime's failure and refusal paths with real processes: `flare server`, `flare client` and
// `flare admin` from the built CLI, kits from @flare/pki, mTLS + @flare/auth sessions on loopback.
import { cp, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { encodeModel } from '@flare/core';
import { parseProject, provision } from '@flare/pki';
import { denseNetwork, readWeights, selectBackend } from '@flare/tfjs';
import { testProjectYaml } from '@flare/pki/testing';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { auditOf as auditLines, flare, freePort, jobEnded, readJobRecord as record, startFlare, stopAll, stopProcess as stop, submitJob, until, writeSpamJob, type Started } from './support.js';

const FEATURES = 256;
let root: string;
let port: number;
const kits = new Map<string, string>();

const siteWs = (site: string): string => join(root, `${site}-ws`);

function job(name: string, over: { [k: string]: unknown }): Promise<string> {
  return writeSpamJob(join(root, 'jobs', name), {
    name,
    rounds: 3,
    min_clients: 2,
    round_timeout_s: 60,
    deploy: ['site-1', 'site-2', 'site-3'],
    learner: { name: 'tfjs-spam', args: { features: FEATURES, hidden: 0, epochs: 1, batch_size: 32, optimizer: 'adam', learning_rate: 0.01 } },
    ...over,
  }, FEATURES);
}

const submit = (dir: string, admin = 'admin@a.org'): Promise<string> => submitJob(kits.get(admin)!, dir);

function startServer(ws: string): Promise<Started> {
  return startFlare(['server', '--kit', kits.get('localhost')!, '--workspace', ws], { ready: /listening on port/ });
}

function startSites(sites: string[]): Promise<Started[]> {
  return Promise.all(sites.map((s) => startFlare(['client', '--kit', kits.get(s)!, '--workspace', siteWs(s)])));
}

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'flare-rt-e2e-'));
  port = await freePort();
  const yaml = testProjectYaml({
    name: 'rt_e2e',
    org: 'org_a',
    port,
    sites: [1, 2, 3, 4].map((i) => [`site-${i}`, `org_${i}`] as const),
    admins: [['admin@a.org', 'org_a', 'project_admin'], ['member@b.org', 'org_b', 'member']],
  });
  const r = await provision(parseProject(yaml), { workspace: root });
  for (const k of r.kits) kits.set(k.name, k.dir);
  for (const [i, s] of ['site-1', 'site-2', 'site-3', 'site-4'].entries()) {
    await mkdir(siteWs(s), { recursive: true });
    // Sites 1 and 2 consent to jobs that bring their own code; sites 3 and 4 do not.
    await writeFile(join(siteWs(s), 'site.json'), JSON.stringify({ data: { site: i % 3, sites: 3, features: FEATURES }, components: { allow: ['tfjs-spam'], byoc: i < 2 } }));
    // The same allow-list as the site's own local/components.json, which overrides any provisioned default.
    await writeFile(join(kits.get(s)!, 'local', 'components.json'), JSON.stringify({ format_version: '1.0', allow: ['tfjs-spam'], byoc: i < 2 }));
    // Sites 1, 2 and 4 define a `private` scope; site 3 does not.
    const scopes = [{ name: 'public', task_result_filters: [], task_data_filters: [] }, ...(s === 'site-3' ? [] : [{ name: 'private', task_result_filters: [{ name: 'exclude-vars', args: { names: ['no_such_tensor'] } }], task_data_filters: [] }])];
    await writeFile(join(kits.get(s)!, 'local', 'privacy.json'), JSON.stringify({ scopes, default_scope: 'public' }));
  }
  // Site 4's own policy: no one may submit jobs here.
  await writeFile(join(kits.get('site-4')!, 'local', 'authorization.json'), JSON.stringify({ format_version: '1.0', permissions: { project_admin: { submit_job: 'none', view: 'any' }, member: 'none' } }));
  await selectBackend({ prefer: 'cpu' });
});

afterEach(stopAll);

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('runtime with real processes', () => {
  it('a site killed mid-round: the round completes with the others (min_clients 2) and the audit says what happened', async () => {
    const ws = join(root, 'srv-kill-client');
    await startServer(ws);
    const [, , s3] = await startSites(['site-1', 'site-2', 'site-3']);
    const id = await submit(await job('kill-client', { learner: { name: 'tfjs-spam', args: { features: FEATURES, hidden: 0, epochs: 25, batch_size: 32 } } }));
    // Kill site-3 as soon as round 1 has been scattered (local training takes seconds).
    await until(async () => ((await auditLines(ws)).some((e) => e.action === 'task_sent' && e.data?.['round'] === 1 && e.data?.['site'] === 'site-3') ? true : undefined), 300_000, 'round 1');
    s3!.child.kill('SIGKILL');
    const rec = await jobEnded(ws, id, 120_000);
    expect(rec.status).toBe('FINISHED');
    expect(rec.history.map((h) => h.round)).toEqual([0, 1, 2]);
    expect(rec.history[0]!.contributors).toEqual(['site-1', 'site-2', 'site-3']);
    expect(rec.history[1]!.contributors).toEqual(['site-1', 'site-2']);
    const audit = await auditLines(ws);
    expect(audit.find((e) => e.action === 'client_lost')?.user).toBe('site-3');
    const missing = audit.find((e) => e.action === 'result_missing' && e.data?.['site'] === 'site-3');
    expect(missing?.data?.['round']).toBe(1);
    expect(missing?.data?.['code']).toBe('E_RUNTIME_DISCONNECTED');
  });

  it('the server killed and restarted resumes the job from its checkpoint: no round lost, none run twice', async () => {
    const ws = join(root, 'srv-restart');
    const server = await startServer(ws);
    await startSites(['site-1', 'site-2', 'site-3']);
    const id = await submit(await job('restart', { rounds: 5, learner: { name: 'tfjs-spam', args: { features: FEATURES, hidden: 0, epochs: 8, batch_size: 32 } } }));
    const done = await until(async () => {
      const r = await record(ws, id);
      return r.rounds_done >= 2 ? r.rounds_done : undefined;
    }, 120_000, 'two rounds');
    await stop(server, 'SIGKILL');
    const atKill = (await record(ws, id)).rounds_done;
    expect(atKill).toBeGreaterThanOrEqual(done);
    expect((await record(ws, id)).status).toBe('RUNNING');
    await startServer(ws);
    const rec = await until(async () => {
      const r = await record(ws, id);
      return r.status === 'RUNNING' ? undefined : r;
    }, 150_000, 'the resumed job to end');
    expect(rec.status).toBe('FINISHED');
    expect(rec.history.map((h) => h.round)).toEqual([0, 1, 2, 3, 4]);
    const resumed = (await auditLines(ws)).find((e) => e.action === 'job_resumed');
    expect(resumed?.data?.['start_round']).toBe(atKill);
  });

  it("sites decide for themselves: one refuses the submitter, one lacks the job's privacy scope; both audit why and the job runs on the others; an edited authorization.json applies to the next job, no restart", async () => {
    const ws = join(root, 'srv-policy');
    await startServer(ws);
    await startSites(['site-1', 'site-2', 'site-3', 'site-4']);
    const id = await submit(await job('policy', { rounds: 1, scope: 'private', deploy: ['site-1', 'site-2', 'site-3', 'site-4'] }));
    const rec = await jobEnded(ws, id, 90_000);
    expect(rec.status).toBe('FINISHED');
    expect(rec.sites.sort()).toEqual(['site-1', 'site-2']);
    // Each refusal carries the code of @flare/policy, which decided at the site.
    expect(rec.refused['site-3']).toMatch(/^E_POLICY_SCOPE/);
    expect(rec.refused['site-4']).toMatch(/^E_POLICY_DENIED/);
    const s4 = (await auditLines(siteWs('site-4'))).find((e) => e.action === 'deploy_refused');
    expect(s4?.data?.['code']).toBe('E_POLICY_DENIED');
    expect(s4?.msg).toContain('submit_job');
    const s3 = (await auditLines(siteWs('site-3'))).find((e) => e.action === 'deploy_refused');
    expect(s3?.data?.['code']).toBe('E_POLICY_SCOPE');
    // Downloading into a folder that does not exist is a coded error naming it, not a bare ENOENT.
    const missing = join(root, 'no', 'such', 'dir');
    const dl = await flare(['admin', '--kit', kits.get('admin@a.org')!, 'download', id, '-o', missing], 120_000);
    expect(dl.code).toBe(1);
    expect(dl.stderr).toMatch(/^E_FILE_WRITE: could not write .*no\/such\/dir/);
    // site-1 ran the job's scope filters after its own and audited each with the server's event id as ref.
    const applied = (await auditLines(siteWs('site-1'))).filter((e) => e.action === 'filter_applied');
    expect(applied.length).toBeGreaterThan(0);

    // site-4 changes its mind while running: its edited authorization.json applies to the next job, no restart.
    const authz = join(kits.get('site-4')!, 'local', 'authorization.json');
    const before = await readFile(authz, 'utf8');
    try {
      await writeFile(authz, JSON.stringify({ format_version: '1.0', permissions: { project_admin: { submit_job: 'any', view: 'any' }, member: 'none' } }));
      await until(async () => ((await auditLines(siteWs('site-4'))).some((e) => e.action === 'policy_changed' && (e.msg ?? '').startsWith('authorization')) ? true : undefined), 60_000, "site-4's policy_changed audit line");
      const again = await submit(await job('policy-reloaded', { rounds: 1, scope: 'private', deploy: ['site-1', 'site-2', 'site-4'] }));
      const rec2 = await jobEnded(ws, again, 90_000);
      expect(rec2.status).toBe('FINISHED');
      expect(rec2.sites.sort()).toEqual(['site-1', 'site-2', 'site-4']);
    } finally {
      await writeFile(authz, before);
    }
  });

  it("a job that brings code is signed by `flare admin submit`; consenting sites verify the submitter's signature, the others refuse", async () => {
    const ws = join(root, 'srv-byoc');
    await startServer(ws);
    await startSites(['site-1', 'site-2', 'site-3']);
    const dir = await job('byoc', { rounds: 1 });
    await mkdir(join(dir, 'custom'), { recursive: true });
    await writeFile(join(dir, 'custom', 'prepare.py'), 'print("site-side preprocessing")\n');
    const id = await submit(dir);
    const rec = await jobEnded(ws, id, 90_000);
    expect(rec.status).toBe('FINISHED');
    expect(rec.sites.sort()).toEqual(['site-1', 'site-2']);
    expect(rec.refused['site-3']).toMatch(/^E_POLICY_BYOC_DISABLED/);
    expect((await auditLines(siteWs('site-1'))).some((e) => e.action === 'byoc_verified')).toBe(true);
  });

  it("the admin sees why a job failed with the sites' own code (a model the learner cannot load: E_ML_WEIGHTS_MISMATCH), each site's state, the connected sites and readable audit lines", async () => {
    const ws = join(root, 'srv-why');
    await startServer(ws);
    await startSites(['site-1', 'site-2', 'site-3']);
    const dir = await job('mismatch', { rounds: 2, retries: 0 });
    // A model of another width than the learner builds: every site's learner refuses it.
    await writeFile(join(dir, 'model.safetensors'), encodeModel(readWeights(denseNetwork(FEATURES + 1, [{ name: 'out', units: 1, activation: 'sigmoid' }]))));
    const id = await submit(dir);
    const rec = await jobEnded(ws, id, 300_000);
    expect(rec.status).toBe('FAILED');
    expect(rec.error?.code).toBe('E_ML_WEIGHTS_MISMATCH');
    const admin = ['admin', '--kit', kits.get('admin@a.org')!];
    const status = await flare([...admin, 'status', id], 120_000);
    expect(status.code, status.stderr).toBe(0);
    expect(status.stdout).toMatch(/^why: E_ML_WEIGHTS_MISMATCH: /m);
    expect(status.stdout).toMatch(/^site-1 +connected /m);
    const sites = await flare([...admin, 'sites'], 120_000);
    expect(sites.stdout.split('\n').filter((l) => /connected/.test(l))).toHaveLength(3);
    const audit = await flare([...admin, 'audit', '-n', '5'], 120_000);
    expect(audit.code, audit.stderr).toBe(0);
    expect(audit.stdout.trim().split('\n')[0]).toMatch(/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ {2}localhost {2}[a-z_]+/);
    const dl = await flare([...admin, 'download', id, '-o', root], 120_000);
    expect(dl.code).toBe(1);
    expect(dl.stderr).toMatch(/^E_RUNTIME_JOB_STATE: /);
  });

  it('an admin without submit_job is refused by the server (exit 1, E_RUNTIME_NOT_AUTHORIZED)', async () => {
    const ws = join(root, 'srv-member');
    await startServer(ws);
    const r = await flare(['admin', '--kit', kits.get('member@b.org')!, 'submit', await job('member', {})]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^E_RUNTIME_NOT_AUTHORIZED: user 'member@b.org' is not authorized for 'submit_job'/);
    const list = await flare(['admin', '--kit', kits.get('admin@a.org')!, 'list']);
    expect(list.code).toBe(0);
    expect(list.stdout).toBe('');
  });

  it('a tampered kit stops the process at start, naming the file (E_KIT_TAMPERED)', async () => {
    const copy = join(root, 'tampered-site-1');
    await cp(kits.get('site-1')!, copy, { recursive: true });
    const file = join(copy, 'startup', 'fed_client.json');
    await writeFile(file, (await readFile(file, 'utf8')).replace('"connection_security": "mtls"', '"connection_security": "clear"'));
    const r = await flare(['client', '--kit', copy, '--workspace', join(root, 'tampered-ws')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^E_KIT_TAMPERED: .*startup\/fed_client\.json/);
    const srv = join(root, 'tampered-server');
    await cp(kits.get('localhost')!, srv, { recursive: true });
    await writeFile(join(srv, 'startup', 'rootCA.pem'), '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n');
    const s = await flare(['server', '--kit', srv, '--workspace', join(root, 'tampered-srv-ws')]);
    expect(s.code).toBe(1);
    expect(s.stderr).toMatch(/^E_KIT_TAMPERED: .*startup\/rootCA\.pem/);
  });
});
