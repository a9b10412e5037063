import { createHash, randomUUID } from 'node:crypto';
import { MlError, PolicyError, decodeModel, isFlareError } from '@flare/core';
import { afterEach, describe, expect, it } from 'vitest';
import { EventBus } from '../src/event-bus.js';
import type { PeerIdentity } from '../src/protocol/channel.js';
import { signJobBundle } from '../src/protocol/job-trust.js';
import { ADMIN, adminKit, signingAdmin, bundle, closeAll, federation, jobDefinition, learnerFactory, site, sitePolicy, startServer, startSite, tempDir, until } from './helpers.js';

afterEach(closeAll);

describe('ServerEngine + ClientEngine + AdminClient (in-memory channels)', () => {
  it('runs a 3-site scatter-and-gather FedAvg job to FINISHED, checkpoints every round and serves the result', async () => {
    const fed = await federation();
    const id = await fed.admin.submit(bundle());
    const rec = await fed.server.waitForJob(id, 20_000);
    expect(rec.status, JSON.stringify([rec.error, rec.refused])).toBe('FINISHED');
    expect(rec.rounds_done).toBe(3);
    expect(rec.history.map((h) => h.round)).toEqual([0, 1, 2]);
    for (const h of rec.history) expect(h.contributors).toEqual(['site-1', 'site-2', 'site-3']);
    // Sites pull w halfway to 1, 2, 3: the equal-weight average pulls it halfway to 2 each round.
    const w = decodeModel(await fed.admin.download(id)).params.get('w')!.data as Float32Array;
    expect(w[0]).toBeCloseTo(2 * (1 - 0.5 ** 3), 5);
    // Each round's metrics are the sites' validation of the model after that round (equal counts: the mean).
    expect(rec.history[2]!.metrics['loss']).toBeCloseTo(Math.abs(w[0]! - 1) / 3 + Math.abs(w[0]! - 2) / 3 + Math.abs(w[0]! - 3) / 3, 4);
    expect(rec.history[2]!.site_validation?.['site-3']?.['loss']).toBeCloseTo(Math.abs(w[0]! - 3), 4);
    expect(rec.history[2]!.metrics['sites']).toBe(3);
    expect(rec.history[0]!.bytes['site-1']).toBeGreaterThan(0);
    expect((await fed.admin.list()).map((j) => [j.id, j.status])).toEqual([[id, 'FINISHED']]);
  });

  it("correlates audit events across sites: a site's task_received carries the server's task_sent id as ref", async () => {
    const fed = await federation();
    const id = await fed.admin.submit(bundle(jobDefinition({ rounds: 1 })));
    await fed.server.waitForJob(id, 20_000);
    const s2 = fed.sites.get('site-2')!.audit.events;
    const sent = fed.serverAudit.events.filter((e) => e.action === 'task_sent');
    const received = s2.filter((e) => e.action === 'task_received');
    expect(received.length).toBeGreaterThan(0);
    expect(sent.map((e) => e.id)).toContain(received[0]!.ref);
    const resultSent = s2.find((e) => e.action === 'result_sent')!;
    expect(fed.serverAudit.events.find((e) => e.action === 'result_accepted' && e.ref === resultSent.id)).toBeDefined();
    const deployRecv = s2.find((e) => e.action === 'deploy_received')!;
    expect(fed.serverAudit.events.find((e) => e.id === deployRecv.ref)?.action).toBe('deploy_sent');
  });

  it("a site whose policy forbids the submitter refuses with @flare/policy's code (E_POLICY_DENIED); the others run the job", async () => {
    const fed = await federation([{}, {}, { policy: sitePolicy({ permissions: { submit_job: 'none' } }) }]);
    const id = await fed.admin.submit(bundle(jobDefinition({ rounds: 1 })));
    const rec = await fed.server.waitForJob(id, 20_000);
    expect(rec.status).toBe('FINISHED');
    expect(rec.sites.sort()).toEqual(['site-1', 'site-2']);
    expect(rec.refused['site-3']).toMatch(/^E_POLICY_DENIED/);
    const refusal = fed.sites.get('site-3')!.audit.events.find((e) => e.action === 'deploy_refused');
    expect(refusal?.data?.['code']).toBe('E_POLICY_DENIED');
    expect(fed.sites.get('site-3')!.audit.events.find((e) => e.action === 'job_refused')?.data?.['code']).toBe('E_POLICY_DENIED');
  });

  it('a job naming a privacy scope a site lacks is refused by that site (E_POLICY_SCOPE), also by a site without privacy.json', async () => {
    const both = [{ name: 'public' }, { name: 'private' }];
    const fed = await federation([{ policy: sitePolicy({ scopes: both }) }, { policy: sitePolicy({ scopes: both }) }, { policy: sitePolicy({ scopes: [{ name: 'public' }] }) }, { policy: sitePolicy({ noPrivacy: true }) }]);
    const id = await fed.admin.submit(bundle(jobDefinition({ rounds: 1, scope: 'private', deploy: ['site-1', 'site-2', 'site-3', 'site-4'] })));
    const rec = await fed.server.waitForJob(id, 20_000);
    expect(rec.status).toBe('FINISHED');
    expect(rec.refused['site-3']).toMatch(/^E_POLICY_SCOPE/);
    expect(rec.refused['site-4']).toMatch(/^E_POLICY_SCOPE/);
    expect(fed.sites.get('site-3')!.audit.events.find((e) => e.action === 'deploy_refused')?.data?.['code']).toBe('E_POLICY_SCOPE');
  });

  it('a component off the allow-list is refused (E_POLICY_COMPONENT); a job filter the site has not got too (E_POLICY_FILTER_UNKNOWN)', async () => {
    const fed = await federation([{}, { policy: sitePolicy({ allowList: ['towards', 'gaussian-dp'] }) }, { policy: sitePolicy({ allowList: [] }) }]);
    const id = await fed.admin.submit(bundle(jobDefinition({ rounds: 1, min_clients: 1, task_result_filters: [{ name: 'gaussian-dp', args: {} }] })));
    const rec = await fed.server.waitForJob(id, 20_000);
    expect(rec.refused['site-1']).toMatch(/^E_POLICY_COMPONENT/);
    expect(rec.refused['site-2']).toMatch(/^E_POLICY_FILTER_UNKNOWN/);
    expect(rec.refused['site-3']).toMatch(/^E_POLICY_COMPONENT/);
    expect(rec.status).toBe('FAILED');
    // The admin sees each site's own code in the job's error.
    expect(rec.error?.code).toBe('E_RUNTIME_DEPLOY_REFUSED');
    expect(rec.error?.message).toMatch(/site-2: E_POLICY_FILTER_UNKNOWN/);
  });

  it('a job that brings code is refused without BYOC consent (E_POLICY_BYOC_DISABLED) and when a custom file changed after signing (E_POLICY_JOB_TAMPERED)', async () => {
    const fed = await federation([{ policy: sitePolicy({ byocConsent: false }) }, { policy: sitePolicy({ byocConsent: true }) }, {}]);
    const id = randomUUID();
    const signed = signJobBundle(await adminKit(ADMIN), bundle(jobDefinition({ rounds: 1 }), new Map([['a.py', new Uint8Array([1, 2, 3])]])), id);
    await fed.admin.submit({ ...signed, files: new Map([['a.py', new Uint8Array([1, 2, 4])]]) }, { id });
    const rec = await fed.server.waitForJob(id, 20_000);
    expect(rec.refused['site-1']).toMatch(/^E_POLICY_JOB_TAMPERED: job file "custom\/a.py" differs/);
    expect(rec.refused['site-2']).toMatch(/^E_POLICY_JOB_TAMPERED/);
    const id2 = await fed.admin.submit(bundle(jobDefinition({ rounds: 1 }), new Map([['a.py', new Uint8Array([1, 2, 3])]])));
    const rec2 = await fed.server.waitForJob(id2, 20_000);
    expect(rec2.refused['site-1']).toMatch(/^E_POLICY_BYOC_DISABLED/);
    expect(rec2.sites).toContain('site-2');
  });

  it('an admin without submit_job is refused by the server (E_RUNTIME_NOT_AUTHORIZED) and it is audited', async () => {
    const member: PeerIdentity = { name: 'member@org1.com', org: 'org1', role: 'member', type: 'admin' };
    const fed = await federation([{}], { admin: member, server: { deny: ['member@org1.com:submit_job'] } });
    const err = await fed.admin.submit(bundle()).catch((e: unknown) => e);
    expect(isFlareError(err, 'E_RUNTIME_NOT_AUTHORIZED')).toBe(true);
    expect(fed.serverAudit.events.find((e) => e.action === 'admin_refused')?.user).toBe('member@org1.com');
    expect(await fed.admin.list()).toEqual([]);
  });

  it('refuses an invalid job at submit (E_RUNTIME_JOB_INVALID): a bad field, an unknown field, a syntax error with its line, an unknown workflow, a corrupt model', async () => {
    const fed = await federation([{}]);
    const code = async (b: ReturnType<typeof bundle>): Promise<unknown> => fed.admin.submit(b).catch((e: unknown) => e);
    expect(isFlareError(await code(bundle(jobDefinition({ rounds: 0 }))), 'E_RUNTIME_JOB_INVALID')).toBe(true);
    expect(isFlareError(await code(bundle(jobDefinition({ evil: true }))), 'E_RUNTIME_JOB_INVALID')).toBe(true);
    const syntax = (await code({ ...bundle(), meta: new TextEncoder().encode('{\n  "name": "x",\n  "rounds": 1,,\n}') })) as Error;
    expect(isFlareError(syntax, 'E_RUNTIME_JOB_INVALID')).toBe(true);
    expect(syntax.message).toMatch(/meta\.json is not valid JSON at line 3/);
    expect((await code(bundle(jobDefinition({ workflow: 'no_such_flow' }))) as Error).message).toMatch(/workflow 'no_such_flow'/);
    const model = (await code(bundle(jobDefinition(), new Map(), new Uint8Array([1, 2, 3])))) as Error;
    expect(isFlareError(model, 'E_RUNTIME_JOB_INVALID')).toBe(true);
    expect(model.message).toMatch(/model\.safetensors/);
  });

  it('meta.json and custom/ files travel as the payload with limits: a 100 KB file and a 70 KB meta.json pass, larger than the limits are refused (E_RUNTIME_JOB_TOO_LARGE)', async () => {
    const fed = await federation([{}], { server: { limits: { maxJobFilesBytes: 200_000, maxMetaBytes: 100_000, deployWaitMs: 200, schedulerIntervalMs: 50 } } });
    const big = new Uint8Array(100_000).fill(7);
    const digest = createHash('sha256').update(big).digest('hex');
    const padded = jobDefinition({ rounds: 1, min_clients: 1, deploy: ['site-1'], byoc: { files: { 'a.bin': digest }, signature: 'x'.repeat(2048) }, learner: { name: 'towards', args: { pad: 'p'.repeat(4000) } } });
    const meta = JSON.stringify({ ...padded, task_data_filters: Array.from({ length: 16 }, () => ({ name: 'x', args: { pad: 'q'.repeat(4000) } })) });
    expect(meta.length).toBeGreaterThan(70_000);
    const id = await fed.admin.submit({ ...bundle(), meta: new TextEncoder().encode(meta), files: new Map([['a.bin', big]]) });
    expect(id).toMatch(/^[0-9a-f-]{36}$/);
    const tooBig = await fed.admin.submit({ ...bundle(), files: new Map([['a.bin', new Uint8Array(300_000)]]) }).catch((e: unknown) => e);
    expect(isFlareError(tooBig, 'E_RUNTIME_JOB_TOO_LARGE')).toBe(true);
    expect((tooBig as Error).message).toMatch(/custom\//);
    const metaTooBig = await fed.admin.submit({ ...bundle(), meta: new Uint8Array(100_001).fill(32) }).catch((e: unknown) => e);
    expect(isFlareError(metaTooBig, 'E_RUNTIME_JOB_TOO_LARGE')).toBe(true);
    expect((metaTooBig as Error).message).toMatch(/meta\.json/);
  });

  it('a site that disconnects mid-round stops counting at once: the round completes with the others and the audit says so', async () => {
    const fed = await federation([{}, {}, { learner: learnerFactory(3, { delayMs: 60_000 }) }]);
    const id = await fed.admin.submit(bundle(jobDefinition({ rounds: 2, round_timeout_s: 600 })));
    await until(() => fed.sites.get('site-3')!.audit.events.find((e) => e.action === 'task_received'));
    await fed.sites.get('site-3')!.engine.close();
    // Finishing at all proves it: the round timeout is 600 s.
    const rec = await fed.server.waitForJob(id, 60_000);
    expect(rec.status).toBe('FINISHED');
    expect(rec.history[0]!.contributors).toEqual(['site-1', 'site-2']);
    expect(fed.serverAudit.events.find((e) => e.action === 'client_lost')?.user).toBe('site-3');
    expect(fed.serverAudit.events.find((e) => e.action === 'result_missing')?.data?.['code']).toBe('E_RUNTIME_DISCONNECTED');
  });

  it('a result that arrives after the round timeout is ignored with a late_result_ignored audit event', async () => {
    const fed = await federation([{}, {}, { learner: learnerFactory(3, { delayMs: 1500 }) }]);
    const id = await fed.admin.submit(bundle(jobDefinition({ rounds: 1, round_timeout_s: 0.5 })));
    const rec = await fed.server.waitForJob(id, 20_000);
    expect(rec.history[0]!.contributors).toEqual(['site-1', 'site-2']);
    expect(fed.serverAudit.events.find((e) => e.action === 'round_timeout')).toBeDefined();
    await until(() => fed.serverAudit.events.find((e) => e.action === 'late_result_ignored' && e.data?.['site'] === 'site-3'));
  });

  it("fails the job with E_RUNTIME_MIN_CLIENTS naming each site's own code when a round stays below min_clients after its retries", async () => {
    const broken = learnerFactory(0, { fail: true });
    const fed = await federation([{}, { learner: broken }, { learner: broken }]);
    const id = await fed.admin.submit(bundle(jobDefinition({ rounds: 2, retries: 1 })));
    const rec = await fed.server.waitForJob(id, 20_000);
    expect(rec.status).toBe('FAILED');
    expect(rec.error?.code).toBe('E_RUNTIME_MIN_CLIENTS');
    expect(rec.error?.message).toMatch(/site-2: E_RUNTIME_TASK_FAILED \(.*learner broke\)/);
    expect(fed.serverAudit.events.filter((e) => e.action === 'round_below_min_clients')).toHaveLength(2);
    expect(fed.sites.get('site-2')!.audit.events.find((e) => e.action === 'task_failed')?.data?.['code']).toBe('E_RUNTIME_TASK_FAILED');
  });

  it("the job's reason gives each failed site's own message beside its code, what `flare admin status` prints as why (#15)", async () => {
    const nan = learnerFactory(0, {
      update: () => {
        throw new MlError('E_ML_NOT_FINITE', 'local training gave loss NaN at epoch 3');
      },
    });
    const fed = await federation([{ learner: nan }, { learner: nan }, { learner: nan }]);
    const id = await fed.admin.submit(bundle(jobDefinition({ rounds: 1, retries: 0 })));
    const rec = await fed.server.waitForJob(id, 20_000);
    expect(rec.status).toBe('FAILED');
    expect(rec.error?.code).toBe('E_ML_NOT_FINITE');
    for (const s of ['site-1', 'site-2', 'site-3']) expect(rec.error?.message).toContain(`${s}: E_ML_NOT_FINITE (local training gave loss NaN at epoch 3)`);
  });

  it('a round retry works: a site failing once is retried on the same round and the job FINISHES with every round once (issue #14 item 2)', async () => {
    let failures = 1;
    const flaky = learnerFactory(2, { fail: () => failures-- > 0 });
    const fed = await federation([{}, { learner: flaky }]);
    const id = await fed.admin.submit(bundle(jobDefinition({ rounds: 2, min_clients: 2, deploy: ['site-1', 'site-2'], retries: 2 })));
    const rec = await fed.server.waitForJob(id, 20_000);
    expect(rec.status, rec.error?.message).toBe('FINISHED');
    expect(rec.history.map((h) => [h.round, h.contributors])).toEqual([
      [0, ['site-1', 'site-2']],
      [1, ['site-1', 'site-2']],
    ]);
    expect(fed.serverAudit.events.filter((e) => e.action === 'round_below_min_clients')).toHaveLength(1);
    expect(fed.serverAudit.events.some((e) => e.action === 'result_rejected')).toBe(false);
  });

  it('abort stops a running job (ABORTED), each site re-checks abort_job and releases the job; a finished job cannot be aborted (E_RUNTIME_JOB_STATE)', async () => {
    const slow = learnerFactory(1, { delayMs: 400 });
    const fed = await federation([{ learner: slow }, { learner: slow }, { learner: slow, policy: sitePolicy({ permissions: { submit_job: 'any', manage_job: 'none' } }) }]);
    const id = await fed.admin.submit(bundle(jobDefinition({ rounds: 50 })));
    await until(async () => ((await fed.admin.status(id)).status === 'RUNNING' ? true : undefined));
    await fed.admin.abort(id);
    const rec = await fed.server.waitForJob(id, 10_000);
    expect(rec.status).toBe('ABORTED');
    await until(() => fed.sites.get('site-1')!.audit.events.find((e) => e.action === 'job_aborted'));
    const refusal = await until(() => fed.sites.get('site-3')!.audit.events.find((e) => e.action === 'abort_refused'));
    expect(refusal.user).toBe('admin@nvidia.com');
    // Whatever the site thought of the abort, the job ended at the server: every site released it.
    for (const s of fed.sites.values()) await until(() => (s.engine.jobs().length === 0 ? true : undefined));
    expect(isFlareError(await fed.admin.abort(id).catch((e: unknown) => e), 'E_RUNTIME_JOB_STATE')).toBe(true);
    expect(isFlareError(await fed.admin.download(id).catch((e: unknown) => e), 'E_RUNTIME_JOB_STATE')).toBe(true);
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
    const { server, hub } = await startServer(await tempDir());
    const bus = new EventBus();
    bus.on('before-deploy', ({ definition }) => {
      if (definition.rounds > 2) throw new PolicyError('E_POLICY_RESOURCES_EXCEEDED', 'this site runs at most 2 rounds');
    });
    const { engine, audit } = await startSite(1, hub, { events: bus });
    await engine.registered();
    const admin = await signingAdmin(hub);
    const id = await admin.submit(bundle(jobDefinition({ deploy: ['site-1'], min_clients: 1 })));
    const rec = await server.waitForJob(id, 10_000);
    expect(rec.status).toBe('FAILED');
    expect(rec.refused['site-1']).toMatch(/^E_POLICY_RESOURCES_EXCEEDED: this site runs at most 2 rounds/);
    expect(audit.events.find((e) => e.action === 'deploy_refused')?.data?.['code']).toBe('E_POLICY_RESOURCES_EXCEEDED');
  });

  it("`status` shows each site's state: running, last seen, refused with its own code, the rounds it contributed to", async () => {
    const fed = await federation([{}, {}, { policy: sitePolicy({ permissions: { submit_job: 'none' } }) }]);
    const id = await fed.admin.submit(bundle(jobDefinition({ rounds: 2 })));
    await fed.server.waitForJob(id, 20_000);
    const { record, sites } = await fed.admin.jobStatus(id);
    expect(record.status).toBe('FINISHED');
    expect(sites.map((s) => [s.name, s.connected, s.deployed, s.contributions])).toEqual([
      ['site-1', true, true, [0, 1]],
      ['site-2', true, true, [0, 1]],
      ['site-3', true, false, []],
    ]);
    expect(sites[2]!.refused).toMatch(/^E_POLICY_DENIED: /);
    expect(sites[0]!.last_seen).toMatch(/^\d{4}-\d\d-\d\dT/);
  });

  it('`sites` lists the connected participants and those seen before', async () => {
    const fed = await federation([{}, {}]);
    await fed.sites.get('site-2')!.engine.close();
    await until(() => (fed.server.registry.names().length === 1 ? true : undefined));
    const sites = await fed.admin.sites();
    expect(sites.map((s) => [s.name, s.connected])).toEqual([
      ['site-1', true],
      ['site-2', false],
    ]);
  });
});
