import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { isFlareError } from '@flare/core';
import { afterEach, describe, expect, it } from 'vitest';
import { ADMIN, signingAdmin, bundle, closeAll, federation, jobDefinition, learnerFactory, sitePolicy, startServer, startSite, tempDir, until } from './helpers.js';

afterEach(closeAll);

describe('a job has a whole lifecycle', () => {
  it('20 sequential jobs on 3 sites that each run at most 2 jobs at once all FINISH (sites release every job)', async () => {
    const policy = (): ReturnType<typeof sitePolicy> => sitePolicy({ maxJobs: 2 });
    const fed = await federation([{ policy: policy() }, { policy: policy() }, { policy: policy() }]);
    for (let i = 0; i < 20; i++) {
      const id = await fed.admin.submit(bundle(jobDefinition({ name: `seq-${i}`, rounds: 1 })));
      const rec = await fed.server.waitForJob(id, 20_000);
      expect(rec.status, `job ${i}: ${rec.error?.code ?? ''} ${JSON.stringify(rec.refused)}`).toBe('FINISHED');
    }
    for (const s of fed.sites.values()) await until(() => (s.engine.jobs().length === 0 ? true : undefined));
  });

  it('concurrent jobs share the sites when resources allow; a third waits in the queue and starts when a slot frees', async () => {
    const slow = learnerFactory(1, { delayMs: 100 });
    const fed = await federation([0, 1, 2].map(() => ({ policy: sitePolicy({ maxJobs: 2 }), learner: slow })));
    const ids: string[] = [];
    for (const i of [0, 1, 2]) ids.push(await fed.admin.submit(bundle(jobDefinition({ name: `c-${i}`, rounds: 3 }))));
    for (const id of ids) {
      const rec = await fed.server.waitForJob(id, 30_000);
      expect(rec.status, JSON.stringify(rec.refused)).toBe('FINISHED');
      expect(rec.refused).toEqual({});
    }
    expect(fed.serverAudit.events.some((e) => e.action === 'deploy_refused')).toBe(false);
    // Two ran at once on the same sites; the third waited in the queue until one of them ended.
    const at = (action: string, job: string): number => fed.serverAudit.events.findIndex((e) => e.action === action && e.job === job);
    const [a, b, c] = ids as [string, string, string];
    expect(at('job_started', b)).toBeLessThan(at('job_finished', a));
    expect(at('job_started', a)).toBeLessThan(at('job_finished', b));
    expect(at('job_started', c)).toBeGreaterThan(Math.min(at('job_finished', a), at('job_finished', b)));
  });

  it('when a job ends, every site releases its reservation, closes the learner and removes the job folder', async () => {
    let closed = 0;
    const policy = sitePolicy();
    const ws = await tempDir();
    const fed = await federation([{ policy, workspace: ws, learner: learnerFactory(1, { onClose: () => void closed++ }) }, {}]);
    const id = await fed.admin.submit(bundle(jobDefinition({ rounds: 1, deploy: ['site-1', 'site-2'] })));
    expect((await fed.server.waitForJob(id, 20_000)).status).toBe('FINISHED');
    const s1 = fed.sites.get('site-1')!;
    // job_released is audited once everything is released.
    const released = await until(() => s1.audit.events.find((e) => e.action === 'job_released'));
    expect(s1.engine.jobs()).toEqual([]);
    expect(closed).toBe(1);
    expect(policy.resources.reservations.size).toBe(0);
    expect(await readdir(join(ws, 'runs'))).toEqual([]);
    expect(released.data?.['code']).toBe('FINISHED');
  });

  it('a failed job is released everywhere too, with the failure code', async () => {
    const broken = learnerFactory(0, { fail: true });
    const fed = await federation([{ learner: broken }, { learner: broken }]);
    const id = await fed.admin.submit(bundle(jobDefinition({ rounds: 1, retries: 0, deploy: ['site-1', 'site-2'] })));
    expect((await fed.server.waitForJob(id, 20_000)).status).toBe('FAILED');
    const s1 = fed.sites.get('site-1')!;
    const released = await until(() => s1.audit.events.find((e) => e.action === 'job_released'));
    // Every site failed the same way: that is the job's error, with the sites' own code.
    expect(released.data?.['code']).toBe('E_RUNTIME_TASK_FAILED');
  });

  it('a site that loses its connection mid-job is offered the job again when it is back, re-checks its policy and contributes from the next round', async () => {
    const slow = (n: number) => learnerFactory(n, { delayMs: 100 });
    const fed = await federation([{ learner: slow(1) }, { learner: slow(2) }, { learner: slow(3) }]);
    const id = await fed.admin.submit(bundle(jobDefinition({ rounds: 8, min_clients: 2 })));
    await until(async () => ((await fed.admin.status(id)).rounds_done >= 2 ? true : undefined));
    // Cut site-3's connection from the server's side: its link dials again by itself.
    const s3 = fed.sites.get('site-3')!;
    fed.server.registry.get('site-3')!.channel.close();
    await until(() => s3.audit.events.filter((e) => e.action === 'registered').length >= 2 ? true : undefined);
    const rec = await fed.server.waitForJob(id, 30_000);
    expect(rec.status).toBe('FINISHED');
    expect(s3.audit.events.filter((e) => e.action === 'deploy_accepted').length).toBeGreaterThanOrEqual(2);
    expect(s3.audit.events.find((e) => e.action === 'job_released')?.data?.['code']).toBe('E_RUNTIME_DISCONNECTED');
    // It contributes again within two rounds of coming back.
    const lostAt = fed.serverAudit.events.findIndex((e) => e.action === 'client_lost' && e.user === 'site-3');
    const roundAtLoss = Math.max(...fed.serverAudit.events.slice(0, lostAt).filter((e) => e.action === 'round_started').map((e) => Number(e.data?.['round'])));
    const back = rec.history.find((h) => h.round > roundAtLoss && h.contributors.includes('site-3'));
    expect(back, JSON.stringify(rec.history.map((h) => h.contributors))).toBeDefined();
    expect(back!.round - roundAtLoss).toBeLessThanOrEqual(3);
  });

  it('a site whose wall time runs out leaves the job (E_POLICY_WALL_TIME); the server stops sending it tasks and the others finish', async () => {
    const slow = learnerFactory(1, { delayMs: 300 });
    const fed = await federation([{ learner: slow }, { learner: slow }, { learner: slow, policy: sitePolicy({ maxWallTimeS: 1 }) }]);
    const id = await fed.admin.submit(bundle(jobDefinition({ rounds: 10, round_timeout_s: 60 })));
    const rec = await fed.server.waitForJob(id, 60_000);
    expect(rec.status).toBe('FINISHED');
    expect(rec.refused['site-3']).toMatch(/^E_POLICY_WALL_TIME/);
    expect(rec.history.at(-1)!.contributors).toEqual(['site-1', 'site-2']);
    expect(fed.sites.get('site-3')!.audit.events.find((e) => e.action === 'job_left')?.data?.['code']).toBe('E_POLICY_WALL_TIME');
    expect(fed.serverAudit.events.find((e) => e.action === 'site_left_job')?.data?.['code']).toBe('E_POLICY_WALL_TIME');
  });
});

describe('sites that never vanish silently', () => {
  it('sites wait through a server outage, rejoin, and the job resumes from its checkpoint: no round lost or run twice', async () => {
    const workspace = await tempDir();
    let current = await startServer(workspace);
    const hub = current.hub;
    const slow = (n: number) => learnerFactory(n, { delayMs: 100 });
    const sites = await Promise.all([1, 2, 3].map((n) => startSite(n, hub, { learner: slow(n) })));
    await Promise.all(sites.map((s) => s.engine.registered()));
    const admin = await signingAdmin(hub, ADMIN, 10_000);
    const id = await admin.submit(bundle(jobDefinition({ rounds: 5 })));
    await until(async () => ((await current.server.store.get(id)).rounds_done >= 2 ? true : undefined));
    // The outage: the server stops; its sites keep trying (their link never gives up by default).
    hub.setUp(false);
    await current.server.close();
    const before = (await current.server.store.get(id)).rounds_done;
    expect((await current.server.store.get(id)).status).toBe('RUNNING');
    await until(() => (sites.every((s) => s.audit.events.some((e) => e.action === 'server_lost')) ? true : undefined));
    hub.setUp(true);
    current = await startServer(workspace, { hub });
    const rec = await current.server.waitForJob(id, 30_000);
    expect(rec.status).toBe('FINISHED');
    expect(rec.history.map((h) => h.round)).toEqual([0, 1, 2, 3, 4]);
    expect(current.audit.events.find((e) => e.action === 'job_resumed')?.data?.['start_round']).toBe(before);
    const cp = await current.server.store.loadCheckpoint(id);
    expect((cp!.model.params.get('w')!.data as Float32Array)[0]).toBeCloseTo(2 * (1 - 0.5 ** 5), 5);
    for (const s of sites) expect(s.engine.stopReason).toBeUndefined();
  });

  it('a site that cannot reach the server for longer than it may wait stops with E_RUNTIME_SERVER_UNREACHABLE', async () => {
    const { hub, server } = await startServer(await tempDir());
    const { engine, audit } = await startSite(1, hub, { giveUpAfterMs: 300 });
    await engine.registered();
    hub.setUp(false);
    await server.close();
    await engine.done;
    expect(isFlareError(engine.stopReason, 'E_RUNTIME_SERVER_UNREACHABLE')).toBe(true);
    expect(audit.events.find((e) => e.action === 'site_stopped')?.data?.['code']).toBe('E_RUNTIME_SERVER_UNREACHABLE');
  });

  it('a bye that is not a refusal (the server shutting down) is never final: the site reconnects', async () => {
    const fed = await federation([{}]);
    const s1 = fed.sites.get('site-1')!;
    const ch = fed.server.registry.get('site-1')!.channel;
    await ch.send({ t: 'bye', reason: { code: 'E_AUTH_SESSION_REVOKED', message: 'forged or not, a close is not final' } });
    ch.close();
    await until(() => (s1.audit.events.filter((e) => e.action === 'registered').length >= 2 ? true : undefined));
    expect(s1.engine.stopReason).toBeUndefined();
  });
});
