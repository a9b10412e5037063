import { createHash } from 'node:crypto';
import { PolicyError, decodeModel, isFlareError, type FilterFactory } from '@flare/core';
import { afterEach, describe, expect, it } from 'vitest';
import { AdminClient } from '../src/admin-client.js';
import type { PeerChannel } from '../src/channel.js';
import { ClientEngine } from '../src/client-engine.js';
import { EventBus, type PeerIdentity } from '../src/event-bus.js';
import { ServerEngine } from '../src/server-engine.js';
import type { LearnerFactory, SitePolicy } from '../src/site-policy.js';
import { ADMIN, SERVER, auditRecorder, initialModelBytes, jobDefinition, learnerFactory, memoryHub, site, sitePolicy, tempDir, TestFedAvg, until } from './helpers.js';

const open: Array<{ close(): Promise<void> }> = [];
afterEach(async () => {
  for (const x of open.splice(0).reverse()) await x.close();
});

interface Fed {
  server: ServerEngine;
  hub: ReturnType<typeof memoryHub>;
  admin: AdminClient;
  serverAudit: ReturnType<typeof auditRecorder>;
  siteAudits: Map<string, ReturnType<typeof auditRecorder>>;
  clients: Map<string, ClientEngine>;
  workspace: string;
}

async function startServer(workspace: string, opts: { deny?: string[]; audit?: ReturnType<typeof auditRecorder> } = {}): Promise<{ server: ServerEngine; hub: ReturnType<typeof memoryHub>; serverAudit: ReturnType<typeof auditRecorder> }> {
  const hub = memoryHub(SERVER);
  const serverAudit = opts.audit ?? auditRecorder('srv');
  const server = await ServerEngine.start({
    name: 'server',
    org: 'nvidia',
    workspace,
    listener: hub,
    authorize: ({ user, right }) => !(opts.deny ?? []).includes(`${user.name}:${right}`),
    aggregator: () => new TestFedAvg(),
    audit: serverAudit.hook,
    deployWaitMs: 200,
  });
  open.push(server);
  return { server, hub, serverAudit };
}

async function startSite(
  n: number,
  connect: () => Promise<PeerChannel>,
  opts: { policy?: SitePolicy; learner?: LearnerFactory<unknown>; filters?: Map<string, FilterFactory<unknown>>; audit?: ReturnType<typeof auditRecorder> } = {},
): Promise<[ClientEngine, ReturnType<typeof auditRecorder>]> {
  const audit = opts.audit ?? auditRecorder(`s${n}`);
  const engine = await ClientEngine.start({
    site: { name: `site-${n}`, org: `org${n}` },
    connect,
    policy: opts.policy ?? sitePolicy(),
    learners: new Map([['towards', opts.learner ?? learnerFactory(n)]]),
    filters: opts.filters ?? new Map(),
    workspace: await tempDir(),
    audit: audit.hook,
    heartbeatMs: 200,
    reconnect: { attempts: 100, delayMs: 50 },
  });
  open.push(engine);
  return [engine, audit];
}

async function federation(sites: Array<{ policy?: SitePolicy; learner?: LearnerFactory<unknown> }> = [{}, {}, {}], admin: PeerIdentity = ADMIN, deny: string[] = []): Promise<Fed> {
  const workspace = await tempDir();
  const { server, hub, serverAudit } = await startServer(workspace, { deny });
  const clients = new Map<string, ClientEngine>();
  const siteAudits = new Map<string, ReturnType<typeof auditRecorder>>();
  for (const [i, s] of sites.entries()) {
    const [engine, audit] = await startSite(i + 1, () => hub.connect(site(i + 1)), s);
    clients.set(`site-${i + 1}`, engine);
    siteAudits.set(`site-${i + 1}`, audit);
  }
  const adminClient = new AdminClient(await hub.connect(admin), { timeoutMs: 5000 });
  return { server, hub, admin: adminClient, serverAudit, siteAudits, clients, workspace };
}

describe('ServerEngine + ClientEngine + AdminClient (in-memory channels)', () => {
  it('runs a 3-site scatter-and-gather FedAvg job to FINISHED, checkpoints every round and serves the result', async () => {
    const fed = await federation();
    const id = await fed.admin.submit({ definition: jobDefinition(), initialModel: initialModelBytes(), files: new Map() });
    const rec = await fed.server.waitForJob(id, 20_000);
    expect(rec.status).toBe('FINISHED');
    expect(rec.rounds_done).toBe(3);
    expect(rec.history.map((h) => h.round)).toEqual([0, 1, 2]);
    for (const h of rec.history) expect(h.contributors).toEqual(['site-1', 'site-2', 'site-3']);
    // Sites pull w halfway to 1, 2, 3: the equal-weight average pulls it halfway to 2 each round.
    const w = decodeModel(await fed.admin.download(id)).params.get('w')!.data as Float32Array;
    expect(w[0]).toBeCloseTo(2 * (1 - 0.5 ** 3), 5);
    // Each round's metrics are the sites' validation of the model after that round.
    expect(rec.history[2]!.metrics['loss']).toBeCloseTo(Math.abs(w[0]! - 1) / 3 + Math.abs(w[0]! - 2) / 3 + Math.abs(w[0]! - 3) / 3, 4);
    expect(rec.history[0]!.bytes['site-1']).toBeGreaterThan(0);
    const list = await fed.admin.list();
    expect(list.map((j) => [j.id, j.status])).toEqual([[id, 'FINISHED']]);
  });

  it("correlates audit events across sites: a site's task_received carries the server's task_sent id as ref", async () => {
    const fed = await federation();
    const id = await fed.admin.submit({ definition: jobDefinition({ rounds: 1 }), initialModel: initialModelBytes(), files: new Map() });
    await fed.server.waitForJob(id, 20_000);
    const sent = fed.serverAudit.events.filter((e) => e.action === 'task_sent');
    const received = fed.siteAudits.get('site-2')!.events.filter((e) => e.action === 'task_received');
    expect(received.length).toBeGreaterThan(0);
    expect(sent.map((e) => e.id)).toContain(received[0]!.ref);
    const resultSent = fed.siteAudits.get('site-2')!.events.find((e) => e.action === 'result_sent')!;
    expect(fed.serverAudit.events.find((e) => e.action === 'result_accepted' && e.ref === resultSent.id)).toBeDefined();
    // the site's accept of the deploy answers the server's deploy_sent
    const deployRecv = fed.siteAudits.get('site-2')!.events.find((e) => e.action === 'deploy_received')!;
    expect(fed.serverAudit.events.find((e) => e.id === deployRecv.ref)?.action).toBe('deploy_sent');
  });

  it('a site whose policy forbids the submitter refuses deployment (E_RUNTIME_SUBMITTER_REFUSED); the others run the job', async () => {
    const fed = await federation([{}, {}, { policy: sitePolicy({ allowSubmitter: () => false }) }]);
    const id = await fed.admin.submit({ definition: jobDefinition({ rounds: 1 }), initialModel: initialModelBytes(), files: new Map() });
    const rec = await fed.server.waitForJob(id, 20_000);
    expect(rec.status).toBe('FINISHED');
    expect(rec.sites.sort()).toEqual(['site-1', 'site-2']);
    expect(rec.refused['site-3']).toMatch(/^E_RUNTIME_SUBMITTER_REFUSED/);
    const refusal = fed.siteAudits.get('site-3')!.events.find((e) => e.action === 'deploy_refused');
    expect(refusal?.data?.['code']).toBe('E_RUNTIME_SUBMITTER_REFUSED');
    expect(refusal?.msg).toContain("'admin@nvidia.com' is not authorized for 'submit_job'");
  });

  it('a job naming a privacy scope a site lacks is refused by that site (E_RUNTIME_SCOPE_UNKNOWN)', async () => {
    const fed = await federation([{ policy: sitePolicy({ scopes: ['public', 'private'] }) }, { policy: sitePolicy({ scopes: ['public', 'private'] }) }, { policy: sitePolicy({ scopes: ['public'] }) }]);
    const id = await fed.admin.submit({ definition: jobDefinition({ rounds: 1, scope: 'private' }), initialModel: initialModelBytes(), files: new Map() });
    const rec = await fed.server.waitForJob(id, 20_000);
    expect(rec.refused['site-3']).toMatch(/^E_RUNTIME_SCOPE_UNKNOWN/);
    expect(fed.siteAudits.get('site-3')!.events.find((e) => e.action === 'deploy_refused')?.data?.['code']).toBe('E_RUNTIME_SCOPE_UNKNOWN');
  });

  it('a component off the allow-list is refused (E_RUNTIME_COMPONENT_FORBIDDEN); BYOC without consent too (E_RUNTIME_BYOC_REFUSED)', async () => {
    const fed = await federation([{}, {}, { policy: sitePolicy({ allowList: [] }) }]);
    const id = await fed.admin.submit({ definition: jobDefinition({ rounds: 1 }), initialModel: initialModelBytes(), files: new Map() });
    const rec = await fed.server.waitForJob(id, 20_000);
    expect(rec.refused['site-3']).toMatch(/^E_RUNTIME_COMPONENT_FORBIDDEN/);
  });

  it('a job that brings code is refused by a site without BYOC consent (E_RUNTIME_BYOC_REFUSED) and by one that cannot verify signatures (E_RUNTIME_BYOC_SIGNATURE)', async () => {
    const fed = await federation([{ policy: sitePolicy({ byocConsent: false }) }, { policy: sitePolicy({ byocConsent: true }) }, {}]);
    const files = new Map([['a.py', new Uint8Array([1, 2, 3])]]);
    const digest = createHash('sha256').update(files.get('a.py')!).digest('hex');
    const id = await fed.admin.submit({ definition: jobDefinition({ rounds: 1, byoc: { files: { 'a.py': digest }, signature: 'c2ln', certificate: 'x' } }), initialModel: initialModelBytes(), files });
    const rec = await fed.server.waitForJob(id, 20_000);
    expect(rec.refused['site-1']).toMatch(/^E_RUNTIME_BYOC_REFUSED/);
    expect(rec.refused['site-2']).toMatch(/^E_RUNTIME_BYOC_SIGNATURE/);
  });

  it('when too few sites accept, the job fails with E_RUNTIME_DEPLOY_REFUSED', async () => {
    const deny = sitePolicy({ allowSubmitter: () => false });
    const fed = await federation([{}, { policy: deny }, { policy: deny }]);
    const id = await fed.admin.submit({ definition: jobDefinition({ rounds: 1 }), initialModel: initialModelBytes(), files: new Map() });
    const rec = await fed.server.waitForJob(id, 20_000);
    expect(rec.status).toBe('FAILED');
    expect(rec.error?.code).toBe('E_RUNTIME_DEPLOY_REFUSED');
  });

  it('an admin without submit_job is refused by the server (E_RUNTIME_NOT_AUTHORIZED) and it is audited', async () => {
    const member: PeerIdentity = { name: 'member@org1.com', org: 'org1', role: 'member', kind: 'admin' };
    const fed = await federation([{}, {}, {}], member, ['member@org1.com:submit_job']);
    const err = await fed.admin.submit({ definition: jobDefinition(), initialModel: initialModelBytes(), files: new Map() }).catch((e: unknown) => e);
    expect(isFlareError(err, 'E_RUNTIME_NOT_AUTHORIZED')).toBe(true);
    expect(fed.serverAudit.events.find((e) => e.action === 'admin_refused')?.user).toBe('member@org1.com');
    expect(await fed.admin.list()).toEqual([]);
  });

  it('refuses an invalid job definition at submit (E_RUNTIME_JOB_INVALID)', async () => {
    const fed = await federation();
    const err = await fed.admin.submit({ definition: jobDefinition({ rounds: 0 }), initialModel: initialModelBytes(), files: new Map() }).catch((e: unknown) => e);
    expect(isFlareError(err, 'E_RUNTIME_JOB_INVALID')).toBe(true);
    const err2 = await fed.admin.submit({ definition: jobDefinition({ evil: true }), initialModel: initialModelBytes(), files: new Map() }).catch((e: unknown) => e);
    expect(isFlareError(err2, 'E_RUNTIME_JOB_INVALID')).toBe(true);
  });

  it('a site that disconnects mid-round stops counting at once: the round completes with the others and the audit says so', async () => {
    const fed = await federation([{}, {}, { learner: learnerFactory(3, { delayMs: 5000 }) }]);
    const id = await fed.admin.submit({ definition: jobDefinition({ rounds: 2, round_timeout_s: 60 }), initialModel: initialModelBytes(), files: new Map() });
    await until(() => fed.siteAudits.get('site-3')!.events.find((e) => e.action === 'task_received'));
    const started = Date.now();
    await fed.clients.get('site-3')!.close();
    const rec = await fed.server.waitForJob(id, 20_000);
    expect(Date.now() - started).toBeLessThan(4000); // did not wait for the 60 s round timeout
    expect(rec.status).toBe('FINISHED');
    expect(rec.history[0]!.contributors).toEqual(['site-1', 'site-2']);
    expect(fed.serverAudit.events.find((e) => e.action === 'client_lost')?.user).toBe('site-3');
    expect(fed.serverAudit.events.find((e) => e.action === 'result_missing')?.data?.['code']).toBe('E_RUNTIME_DISCONNECTED');
  });

  it('a result that arrives after the round timeout is ignored with a late_result_ignored audit event', async () => {
    const fed = await federation([{}, {}, { learner: learnerFactory(3, { delayMs: 1500 }) }]);
    const id = await fed.admin.submit({ definition: jobDefinition({ rounds: 1, round_timeout_s: 0.5 }), initialModel: initialModelBytes(), files: new Map() });
    const rec = await fed.server.waitForJob(id, 20_000);
    expect(rec.history[0]!.contributors).toEqual(['site-1', 'site-2']);
    expect(fed.serverAudit.events.find((e) => e.action === 'round_timeout')).toBeDefined();
    await until(() => fed.serverAudit.events.find((e) => e.action === 'late_result_ignored'));
  });

  it('fails the job with E_RUNTIME_MIN_CLIENTS when a round stays below min_clients after its retries', async () => {
    const broken = learnerFactory(0, { fail: true });
    const fed = await federation([{}, { learner: broken }, { learner: broken }]);
    const id = await fed.admin.submit({ definition: jobDefinition({ rounds: 2, retries: 1 }), initialModel: initialModelBytes(), files: new Map() });
    const rec = await fed.server.waitForJob(id, 20_000);
    expect(rec.status).toBe('FAILED');
    expect(rec.error?.code).toBe('E_RUNTIME_MIN_CLIENTS');
    expect(fed.serverAudit.events.filter((e) => e.action === 'round_below_min_clients')).toHaveLength(2);
    expect(fed.siteAudits.get('site-2')!.events.find((e) => e.action === 'task_failed')?.data?.['code']).toBe('E_RUNTIME_TASK_FAILED');
  });

  it('abort stops a running job (ABORTED) and tells the sites, each re-checking abort_job; a finished job cannot be aborted (E_RUNTIME_JOB_STATE)', async () => {
    const slow = learnerFactory(1, { delayMs: 400 });
    const fed = await federation([{ learner: slow }, { learner: slow }, { learner: slow, policy: sitePolicy({ allowAbort: false }) }]);
    const id = await fed.admin.submit({ definition: jobDefinition({ rounds: 50 }), initialModel: initialModelBytes(), files: new Map() });
    await until(async () => ((await fed.admin.status(id)).status === 'RUNNING' ? true : undefined));
    await fed.admin.abort(id);
    const rec = await fed.server.waitForJob(id, 5000);
    expect(rec.status).toBe('ABORTED');
    await until(() => fed.siteAudits.get('site-1')!.events.find((e) => e.action === 'job_aborted'));
    // A site-level action: site-3's own policy does not let this admin abort, and it says so.
    const refusal = await until(() => fed.siteAudits.get('site-3')!.events.find((e) => e.action === 'abort_refused'));
    expect(refusal.user).toBe('admin@nvidia.com');
    const err = await fed.admin.abort(id).catch((e: unknown) => e);
    expect(isFlareError(err, 'E_RUNTIME_JOB_STATE')).toBe(true);
    const dl = await fed.admin.download(id).catch((e: unknown) => e);
    expect(isFlareError(dl, 'E_RUNTIME_JOB_STATE')).toBe(true);
  });

  it('a restarted server resumes the job from its last checkpoint: no round is lost or run twice', async () => {
    const workspace = await tempDir();
    let current = await startServer(workspace);
    const slow = (n: number) => learnerFactory(n, { delayMs: 150 });
    const audits = [1, 2, 3].map((n) => auditRecorder(`s${n}`));
    for (const n of [1, 2, 3]) await startSite(n, () => current.hub.connect(site(n)), { learner: slow(n), audit: audits[n - 1]! });
    const admin = new AdminClient(await current.hub.connect(ADMIN), { timeoutMs: 5000 });
    const id = await admin.submit({ definition: jobDefinition({ rounds: 5 }), initialModel: initialModelBytes(), files: new Map() });
    await until(async () => ((await current.server.store.get(id)).rounds_done >= 2 ? true : undefined));
    await current.server.close();
    const before = (await current.server.store.get(id)).rounds_done;
    expect((await current.server.store.get(id)).status).toBe('RUNNING');
    current = await startServer(workspace);
    const rec = await current.server.waitForJob(id, 20_000);
    expect(rec.status).toBe('FINISHED');
    expect(rec.history.map((h) => h.round)).toEqual([0, 1, 2, 3, 4]);
    expect(current.serverAudit.events.find((e) => e.action === 'job_resumed')?.data?.['start_round']).toBe(before);
    // Same result as an uninterrupted run: halfway to 2 five times.
    const cp = await current.server.store.loadCheckpoint(id);
    expect((cp!.model.params.get('w')!.data as Float32Array)[0]).toBeCloseTo(2 * (1 - 0.5 ** 5), 5);
  });

  it('closes a peer that sends a malformed message, and audits the protocol error', async () => {
    const fed = await federation([{}]);
    const rogue = await fed.hub.connect(site(9));
    let closed = false;
    rogue.onClose(() => {
      closed = true;
    });
    await rogue.send({ t: 'result', job: 'x', evil: 1 });
    await until(() => (closed ? true : undefined));
    expect(fed.serverAudit.events.find((e) => e.action === 'protocol_error')?.msg).toMatch(/^E_RUNTIME_PROTOCOL/);
  });

  it('an event-bus plugin at a site can veto a deployment; the refusal carries its code', async () => {
    const workspace = await tempDir();
    const { server, hub } = await startServer(workspace);
    void server;
    const bus = new EventBus();
    bus.on('before-deploy', ({ definition }) => {
      if (definition.rounds > 2) throw new PolicyError('E_POLICY_RESOURCES_EXCEEDED', 'this site runs at most 2 rounds');
    });
    const audit = auditRecorder('s1');
    const engine = await ClientEngine.start({
      site: { name: 'site-1', org: 'org1' },
      connect: () => hub.connect(site(1)),
      policy: sitePolicy(),
      learners: new Map([['towards', learnerFactory(1)]]),
      filters: new Map(),
      workspace: await tempDir(),
      audit: audit.hook,
      events: bus,
    });
    open.push(engine);
    const admin = new AdminClient(await hub.connect(ADMIN));
    const id = await admin.submit({ definition: jobDefinition({ deploy: ['site-1'], min_clients: 1 }), initialModel: initialModelBytes(), files: new Map() });
    const rec = await server.waitForJob(id, 10_000);
    expect(rec.status).toBe('FAILED');
    expect(rec.refused['site-1']).toMatch(/^E_POLICY_RESOURCES_EXCEEDED: this site runs at most 2 rounds/);
    expect(audit.events.find((e) => e.action === 'deploy_refused')?.data?.['code']).toBe('E_POLICY_RESOURCES_EXCEEDED');
  });
});
