import { decodeModel, type FilterFactory, type FLModel, type JsonValue } from '@flare/core';
import { afterEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { cyclicOrder } from '../src/workflows/cyclic.js';
import { cyclicSite, signedCyclicSite } from '../src/workflows/cyclic-site.js';
import type { SiteTaskHandler, SiteWorkflow } from '../src/workflows/workflow.js';
import { ADMIN, signingAdmin, bundle, closeAll, federation, jobDefinition, learnerFactory, siteIdentity, sitePolicy, startServer, startSite, tempDir, until, type SiteOptions } from './helpers.js';

afterEach(closeAll);

const job = (over: Record<string, JsonValue> = {}) => bundle(jobDefinition({ workflow: 'cyclic', rounds: 2, ...over }));
const wOf = (m: FLModel): number => (m.params.get('w')!.data as Float32Array)[0]!;
/** Each hop moves w halfway to the site's target. */
const hops = (w: number, targets: readonly number[]): number => targets.reduce((x, t) => x + (t - x) / 2, w);

/** A filter adding `by` to w of any model it sees (a data filter on the way in, a result filter on the way out). */
const shift = (name: string, by: number): FilterFactory<unknown> => ({
  name,
  args: z.object({}),
  create: () => ({ name, apply: (m: FLModel) => ({ ...m, params: new Map([...m.params].map(([k, t]) => [k, { ...t, data: Float32Array.from(t.data as Float32Array, (x) => x + by) }])) }) }),
});

describe('cyclic workflow (FLARE CyclicController)', () => {
  it('the model visits the sites in turn, round after round, in the fixed order', async () => {
    const fed = await federation();
    const id = await fed.admin.submit(job());
    const rec = await fed.server.waitForJob(id, 30_000);
    expect(rec.status, JSON.stringify(rec.error)).toBe('FINISHED');
    expect(rec.history.map((h) => h.contributors)).toEqual([
      ['site-1', 'site-2', 'site-3'],
      ['site-1', 'site-2', 'site-3'],
    ]);
    const w = wOf(decodeModel(await fed.admin.download(id)));
    expect(w).toBeCloseTo(hops(0, [1, 2, 3, 1, 2, 3]), 5);
    // The final model was validated by every site: |w - n| for site n.
    expect(rec.history[1]!.site_validation?.['site-3']?.['loss']).toBeCloseTo(Math.abs(w - 3), 4);
  });

  it("each hop passes through the sending site's result filters and the receiving site's data filters", async () => {
    const out = shift('plus-out', 10);
    const inn = shift('plus-in', 100);
    // site-1 adds 10 to the update it sends; site-2 adds 100 to the model it receives before training on it.
    const s1 = sitePolicy({ filters: new Map([['plus-out', out]]), scopes: [{ name: 'public', task_result_filters: [{ name: 'plus-out' }] }] });
    const s2 = sitePolicy({ filters: new Map([['plus-in', inn]]), scopes: [{ name: 'public', task_data_filters: [{ name: 'plus-in' }] }] });
    const fed = await federation([{ policy: s1, filters: new Map([['plus-out', out]]) }, { policy: s2, filters: new Map([['plus-in', inn]]) }, {}]);
    const id = await fed.admin.submit(job({ rounds: 1 }));
    expect((await fed.server.waitForJob(id, 30_000)).status).toBe('FINISHED');
    // Hop 1: site-1's diff (1 - 0)/2 = 0.5, plus 10 on the way out: w = 10.5. Hop 2: site-2 trains from
    // 110.5, its diff (2 - 110.5)/2 is added to 10.5. Hop 3: site-3 as usual.
    const w1 = 0 + 0.5 + 10;
    const w2 = w1 + (2 - (w1 + 100)) / 2;
    const w3 = w2 + (3 - w2) / 2;
    expect(wOf(decodeModel(await fed.admin.download(id)))).toBeCloseTo(w3, 4);
  });

  it('a site that is down is skipped with an audit event naming its code; the round goes on with the others', async () => {
    const workspace = await tempDir();
    const { server, hub, audit } = await startServer(workspace);
    const s1 = await startSite(1, hub);
    const s3 = await startSite(3, hub);
    await Promise.all([s1.engine.registered(), s3.engine.registered()]);
    const admin = await signingAdmin(hub, ADMIN, 10_000);
    const id = await admin.submit(job({ rounds: 1 }));
    const rec = await server.waitForJob(id, 30_000);
    expect(rec.status).toBe('FINISHED');
    expect(rec.history[0]!.contributors).toEqual(['site-1', 'site-3']);
    const skipped = audit.events.find((e) => e.action === 'hop_skipped');
    expect(skipped?.data).toMatchObject({ site: 'site-2', code: 'E_RUNTIME_DISCONNECTED', round: 0 });
    expect(wOf(decodeModel(await admin.download(id)))).toBeCloseTo(hops(0, [1, 3]), 5);
  });

  it('a round where fewer than min_clients sites trained fails the job with their codes after its retries', async () => {
    const fed = await federation([{ learner: learnerFactory(1, { fail: true }) }, { learner: learnerFactory(2, { fail: true }) }, {}]);
    const id = await fed.admin.submit(job({ rounds: 1, min_clients: 2, retries: 1 }));
    const rec = await fed.server.waitForJob(id, 30_000);
    expect(rec.status).toBe('FAILED');
    expect(rec.error?.code).toBe('E_RUNTIME_MIN_CLIENTS');
    expect(rec.error?.message).toMatch(/site-1: E_RUNTIME_TASK_FAILED/);
    expect(fed.serverAudit.events.filter((e) => e.action === 'round_below_min_clients')).toHaveLength(2);
  });

  it('a killed server resumes at the next hop from the model saved after the last one, and ends where an uninterrupted run does', async () => {
    const workspace = await tempDir();
    let current = await startServer(workspace);
    const hub = current.hub;
    const sites = await Promise.all([1, 2, 3].map((n) => startSite(n, hub, { learner: learnerFactory(n, { delayMs: n === 2 ? 300 : 20 }) })));
    await Promise.all(sites.map((s) => s.engine.registered()));
    const admin = await signingAdmin(hub, ADMIN, 10_000);
    const id = await admin.submit(job({ rounds: 2 }));
    // Stop the server right after round 1's first hop was saved (site-2 is still training).
    await until(() => (current.audit.events.some((e) => e.action === 'hop_completed' && e.data?.['round'] === 1 && e.data?.['site'] === 'site-1') ? true : undefined), 30_000);
    hub.setUp(false);
    await current.server.close();
    const cp = await current.server.store.loadCheckpoint(id);
    expect(cp?.partial).toBe(true);
    expect(cp?.round).toBe(1);
    expect(wOf(cp!.model)).toBeCloseTo(hops(0, [1, 2, 3, 1]), 5);
    hub.setUp(true);
    current = await startServer(workspace, { hub });
    const rec = await current.server.waitForJob(id, 30_000);
    expect(rec.status, JSON.stringify(rec.error)).toBe('FINISHED');
    expect(current.audit.events.find((e) => e.action === 'job_resumed')?.data?.['start_round']).toBe(1);
    expect(current.audit.events.find((e) => e.action === 'round_started')?.data).toMatchObject({ round: 1, next: 1 });
    // Round 1 resumed at site-2: site-1 did not train twice.
    expect(rec.history.map((h) => h.contributors)).toEqual([
      ['site-1', 'site-2', 'site-3'],
      ['site-1', 'site-2', 'site-3'],
    ]);
    const fresh = await signingAdmin(hub, ADMIN, 10_000);
    expect(wOf(decodeModel(await fresh.download(id)))).toBeCloseTo(hops(0, [1, 2, 3, 1, 2, 3]), 5);
  });

  it('random order: a permutation drawn from the job, round and attempt (the same after a resume), different across rounds', () => {
    const sites = ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h'];
    const r0 = cyclicOrder(sites, 'random', 'job-1', 0, 0);
    expect([...r0].sort()).toEqual(sites);
    expect(cyclicOrder(sites, 'random', 'job-1', 0, 0)).toEqual(r0);
    const others = [1, 2, 3].map((r) => cyclicOrder(sites, 'random', 'job-1', r, 0).join());
    expect(others.some((o) => o !== r0.join())).toBe(true);
    expect(cyclicOrder(sites, 'fixed', 'job-1', 5, 1)).toEqual(sites);
  });

  it('refuses an unknown order at submit (E_RUNTIME_JOB_INVALID naming workflow_args.order)', async () => {
    const fed = await federation();
    await expect(fed.admin.submit(job({ workflow_args: { order: 'zigzag' } }))).rejects.toMatchObject({ code: 'E_RUNTIME_JOB_INVALID', message: expect.stringMatching(/workflow_args\.order/) as unknown });
  });
});

describe('cyclic workflow with sites that sign their hops (signedCyclicSite, issue #14)', () => {
  /** Site n's options: its kit identity signs and checks every hop. */
  const signing = async (n: number, o: SiteOptions = {}): Promise<SiteOptions> => ({ ...o, workflows: [signedCyclicSite(await siteIdentity(`site-${n}`))] });
  type Audit = { events: Array<{ action: string; user?: string | undefined; data?: Record<string, unknown> | undefined }> };
  const verified = (a: Audit) => a.events.filter((e) => e.action === 'hop_verified').map((e) => `${String(e.data?.['round'])}:${String(e.user)}`);

  it('a whole job finishes as an unsigned one does, through result and data filters; every hop after the first is verified, across rounds and in the final validation', async () => {
    const out = shift('plus-out', 10);
    const inn = shift('plus-in', 100);
    const s1 = sitePolicy({ filters: new Map([['plus-out', out]]), scopes: [{ name: 'public', task_result_filters: [{ name: 'plus-out' }] }] });
    const s2 = sitePolicy({ filters: new Map([['plus-in', inn]]), scopes: [{ name: 'public', task_data_filters: [{ name: 'plus-in' }] }] });
    const fed = await federation([await signing(1, { policy: s1, filters: new Map([['plus-out', out]]) }), await signing(2, { policy: s2, filters: new Map([['plus-in', inn]]) }), await signing(3)]);
    const id = await fed.admin.submit(job({ rounds: 2 }));
    const rec = await fed.server.waitForJob(id, 30_000);
    expect(rec.status, JSON.stringify(rec.error)).toBe('FINISHED');
    expect(rec.history.map((h) => h.contributors)).toEqual([
      ['site-1', 'site-2', 'site-3'],
      ['site-1', 'site-2', 'site-3'],
    ]);
    // The same arithmetic as the unsigned test above, twice (site-1's +10 leaves it, site-2's +100 stays there).
    const round = (w0: number): number => {
      const w1 = w0 + (1 - w0) / 2 + 10;
      const w2 = w1 + (2 - (w1 + 100)) / 2;
      return w2 + (3 - w2) / 2;
    };
    expect(wOf(decodeModel(await fed.admin.download(id)))).toBeCloseTo(round(round(0)), 3);
    const [a1, a2, a3] = ['site-1', 'site-2', 'site-3'].map((n) => fed.sites.get(n)!.audit);
    // site-1 takes site-3's round-0 model in round 1, and every site checks the final model (round 2: validate).
    expect(verified(a1!)).toEqual(['1:site-3', '2:site-3']);
    expect(verified(a2!)).toEqual(['0:site-1', '1:site-1', '2:site-3']);
    expect(verified(a3!)).toEqual(['0:site-2', '1:site-2', '2:site-3']);
    for (const a of [a1!, a2!, a3!]) {
      expect(a.events.filter((e) => e.action === 'hop_signed')).toHaveLength(2);
      expect(a.events.some((e) => e.action === 'hop_refused')).toBe(false);
    }
  });

  it('a killed server resumes at the next hop and passes on the proof it saved with the model', async () => {
    const workspace = await tempDir();
    let current = await startServer(workspace);
    const hub = current.hub;
    const sites = await Promise.all([1, 2, 3].map(async (n) => startSite(n, hub, await signing(n, { learner: learnerFactory(n, { delayMs: n === 2 ? 300 : 20 }) }))));
    await Promise.all(sites.map((s) => s.engine.registered()));
    const admin = await signingAdmin(hub, ADMIN, 10_000);
    const id = await admin.submit(job({ rounds: 2 }));
    await until(() => (current.audit.events.some((e) => e.action === 'hop_completed' && e.data?.['round'] === 1 && e.data?.['site'] === 'site-1') ? true : undefined), 30_000);
    hub.setUp(false);
    await current.server.close();
    hub.setUp(true);
    current = await startServer(workspace, { hub });
    const rec = await current.server.waitForJob(id, 30_000);
    expect(rec.status, JSON.stringify(rec.error)).toBe('FINISHED');
    expect(rec.history.map((h) => h.contributors)).toEqual([
      ['site-1', 'site-2', 'site-3'],
      ['site-1', 'site-2', 'site-3'],
    ]);
    expect(sites[1]!.audit.events.filter((e) => e.action === 'hop_verified' && e.data?.['round'] === 1).map((e) => e.user)).toContain('site-1');
    expect(sites.some((s) => s.audit.events.some((e) => e.action === 'hop_refused'))).toBe(false);
    expect(wOf(decodeModel(await (await signingAdmin(hub, ADMIN, 10_000)).download(id)))).toBeCloseTo(hops(0, [1, 2, 3, 1, 2, 3]), 5);
  });

  it('the next signing site refuses the model of a site that signs nothing (E_RUNTIME_HOP_UNSIGNED): that hop is skipped with its code', async () => {
    const fed = await federation([await signing(1), { workflows: [cyclicSite] }, await signing(3)]);
    const id = await fed.admin.submit(job({ rounds: 1, min_clients: 1 }));
    const rec = await fed.server.waitForJob(id, 30_000);
    expect(rec.status, JSON.stringify(rec.error)).toBe('FINISHED');
    expect(rec.history[0]!.contributors).toEqual(['site-1', 'site-2']);
    expect(fed.serverAudit.events.find((e) => e.action === 'hop_skipped')?.data).toMatchObject({ site: 'site-3', code: 'E_RUNTIME_HOP_UNSIGNED' });
    expect(fed.sites.get('site-3')!.audit.events.find((e) => e.action === 'hop_refused')).toMatchObject({ user: 'site-2', data: { code: 'E_RUNTIME_HOP_UNSIGNED', from: 'site-2' } });
  });

  it('the server skips a hop whose proof is for another place (E_RUNTIME_HOP_BINDING) and passes on the model and proof before it, so the next site still trains', async () => {
    const honest = signedCyclicSite(await siteIdentity('site-2'));
    const train = honest.tasks.get('train')!;
    let first: unknown;
    // site-2 returns the proof of its first hop with every later one (a replay of its own signature).
    const replaying: SiteWorkflow = {
      ...honest,
      tasks: new Map<string, SiteTaskHandler>([
        ...honest.tasks,
        [
          'train',
          async (t) => {
            const answer = await train(t);
            first ??= (answer.data as { proof: unknown }).proof;
            return { ...answer, data: { proof: first as JsonValue } };
          },
        ],
      ]),
    };
    const fed = await federation([await signing(1), { workflows: [replaying] }, await signing(3)]);
    const id = await fed.admin.submit(job({ rounds: 2, min_clients: 2 }));
    const rec = await fed.server.waitForJob(id, 30_000);
    expect(rec.status, JSON.stringify(rec.error)).toBe('FINISHED');
    expect(rec.history.map((h) => h.contributors)).toEqual([
      ['site-1', 'site-2', 'site-3'],
      ['site-1', 'site-3'],
    ]);
    expect(fed.serverAudit.events.find((e) => e.action === 'hop_skipped')?.data).toMatchObject({ site: 'site-2', round: 1, code: 'E_RUNTIME_HOP_BINDING' });
    // site-3 took site-1's round-1 model: the chain was not broken.
    expect(verified(fed.sites.get('site-3')!.audit)).toContain('1:site-1');
    expect(fed.sites.get('site-3')!.audit.events.some((e) => e.action === 'hop_refused')).toBe(false);
  });
});
