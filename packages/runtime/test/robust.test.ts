// Aggregation chosen per job and hostile sites (issue #13 item 4, issue #14 items 1-4), in memory.
import { META, encodeModel, model, tensor, type FLModel } from '@flare/core';
import { afterEach, describe, expect, it } from 'vitest';
import { parseAggregationPolicy } from '../src/server/aggregation-policy.js';
import { ADMIN, signingAdmin, bundle, closeAll, federation, jobDefinition, learnerFactory, startServer, startSite, tempDir, towardsLearner, until } from './helpers.js';

afterEach(closeAll);

const w0 = (m: FLModel): number => (m.params.get('w')!.data as Float32Array)[0]!;
/** A learner that answers at once with `update(w)` (honest sites take 50 ms, so this one answers first). */
const hostile = (update: (w: Float32Array) => FLModel, validate?: () => Promise<Record<string, number>>) => ({
  name: 'towards',
  args: { safeParse: (v: unknown) => ({ success: true as const, data: v }) } as never,
  create: () => ({ ...towardsLearner(0, { update }), ...(validate === undefined ? {} : { validate }) }),
});
const slow = (n: number) => learnerFactory(n, { delayMs: 50 });

describe('a hostile site (issue #14 items 1, 3, 4)', () => {
  for (const [what, update] of [
    ['a wrong shape', (w: Float32Array) => model({ w: tensor(new Float32Array(w.length + 1), [w.length + 1]) }, 'diff')],
    ['float64', (w: Float32Array) => model({ w: tensor(new Float64Array(w.length), [w.length]) }, 'diff')],
    ['an extra tensor', (w: Float32Array) => model({ w: tensor(new Float32Array(w.length), [w.length]), backdoor: tensor(new Float32Array(3), [3]) }, 'diff')],
  ] as const) {
    it(`answering first with ${what}: only its update is refused (E_MODEL_MISMATCH, audited with the site) and the job FINISHES`, async () => {
      const fed = await federation([{ learner: slow(1) }, { learner: slow(2) }, { learner: hostile(update) }]);
      const id = await fed.admin.submit(bundle(jobDefinition({ rounds: 2 })));
      const rec = await fed.server.waitForJob(id, 30_000);
      expect(rec.status, JSON.stringify(rec.error)).toBe('FINISHED');
      for (const h of rec.history) expect(h.contributors).toEqual(['site-1', 'site-2']);
      const refused = fed.serverAudit.events.filter((e) => e.action === 'result_rejected');
      expect(refused.length).toBe(2);
      for (const e of refused) expect(e).toMatchObject({ user: 'site-3', data: { site: 'site-3', code: 'E_MODEL_MISMATCH' } });
    });
  }

  it('NUM_STEPS_CURRENT_ROUND = 1e9 with a +3.0 update does not replace the model under the default aggregator', async () => {
    const boost = (w: Float32Array) => model({ w: tensor(new Float32Array(w.length).fill(3), [w.length]) }, 'diff', { [META.NUM_STEPS_CURRENT_ROUND]: 1e9 });
    const fed = await federation([{ learner: slow(1) }, { learner: slow(2) }, { learner: hostile(boost) }]);
    const id = await fed.admin.submit(bundle(jobDefinition({ rounds: 2 })));
    expect((await fed.server.waitForJob(id, 30_000)).status).toBe('FINISHED');
    const cp = await fed.server.store.loadCheckpoint(id);
    // Honest sites alone pull w to 1.125 in two rounds; the attack unchecked makes it 6 (next test). Under the
    // default each update is clipped to 3x the median norm and counted with at most 3x the median steps.
    expect(w0(cp!.model)).toBeLessThan(4.5);
    const capped = fed.serverAudit.events.filter((e) => e.action === 'weight_capped');
    expect(capped.length).toBeGreaterThan(0);
    expect(capped[0]!.data).toMatchObject({ from: 'site-3', claimed: 1e9 });
  });

  it('the same attack replaces the model where the server lets a job opt out into plain FedAvg (what the default defends)', async () => {
    const boost = (w: Float32Array) => model({ w: tensor(new Float32Array(w.length).fill(3), [w.length]) }, 'diff', { [META.NUM_STEPS_CURRENT_ROUND]: 1e9 });
    const fed = await federation([{ learner: slow(1) }, { learner: slow(2) }, { learner: hostile(boost) }], { server: { aggregation: parseAggregationPolicy({ require: 'none' }) } });
    const id = await fed.admin.submit(bundle(jobDefinition({ rounds: 2, aggregator: { name: 'fedavg' } })));
    expect((await fed.server.waitForJob(id, 30_000)).status).toBe('FINISHED');
    expect(w0((await fed.server.store.loadCheckpoint(id))!.model)).toBeCloseTo(6, 3);
  });

  it('a server-side max_steps caps the weight one site can claim', async () => {
    const boost = (w: Float32Array) => model({ w: tensor(new Float32Array(w.length).fill(3), [w.length]) }, 'diff', { [META.NUM_STEPS_CURRENT_ROUND]: 1e9 });
    const fed = await federation([{ learner: slow(1) }, { learner: slow(2) }, { learner: hostile(boost) }], { server: { aggregation: parseAggregationPolicy({ require: 'none', max_steps: 1 }) } });
    const id = await fed.admin.submit(bundle(jobDefinition({ rounds: 1, aggregator: { name: 'fedavg' } })));
    expect((await fed.server.waitForJob(id, 30_000)).status).toBe('FINISHED');
    // Three equal weights: (0.5 + 1 + 3) / 3.
    expect(w0((await fed.server.store.loadCheckpoint(id))!.model)).toBeCloseTo(1.5, 5);
  });

  it('a validation count of 1e9 does not set the job metric: counts are capped at the median, and the spread shows it', async () => {
    const liar = hostile((w) => model({ w: tensor(Float32Array.from(w, (x) => (3 - x) / 2), [w.length]) }, 'diff', { [META.NUM_STEPS_CURRENT_ROUND]: 1 }), async () => ({ accuracy: 0.999, loss: 0.001, n: 1e9 }));
    const fed = await federation([{ learner: slow(1) }, { learner: slow(2) }, { learner: liar }]);
    const id = await fed.admin.submit(bundle(jobDefinition({ rounds: 2 })));
    const rec = await fed.server.waitForJob(id, 30_000);
    const m = rec.history[1]!.metrics;
    expect(m['accuracy_max']).toBeCloseTo(0.999, 6);
    expect(m['accuracy']).toBeLessThan(0.9);
    expect(rec.history[1]!.site_validation?.['site-3']?.['n']).toBe(1e9);
  });
});

describe('aggregation chosen per job (issue #13 item 4)', () => {
  it('a krum job and a norm-bound job run from meta.json; an aggregator the server does not allow is refused at submit', async () => {
    // Krum with f = 1 needs n >= 2f + 3 = 5 updates.
    const fed = await federation([1, 2, 3, 4, 5].map((n) => ({ learner: slow(n) })));
    const five = ['site-1', 'site-2', 'site-3', 'site-4', 'site-5'];
    const krum = await fed.admin.submit(bundle(jobDefinition({ rounds: 2, min_clients: 5, deploy: five, aggregator: { name: 'krum', args: { f: 1 } } })));
    const bound = await fed.admin.submit(bundle(jobDefinition({ rounds: 2, deploy: five, aggregator: { name: 'norm-bound', args: { maxNorm: 0.01 }, aggregator: { name: 'median' } } })));
    for (const id of [krum, bound]) {
      const rec = await fed.server.waitForJob(id, 30_000);
      expect(rec.status, JSON.stringify(rec.error)).toBe('FINISHED');
    }
    // Each update was clipped to norm 0.01: w moved at most 0.01 / sqrt(2) per coordinate per round.
    expect(Math.abs(w0((await fed.server.store.loadCheckpoint(bound))!.model))).toBeLessThanOrEqual(0.02 / Math.SQRT2 + 1e-6);
    const refused = await fed.admin.submit(bundle(jobDefinition({ aggregator: { name: 'fedavg' } }))).catch((e: unknown) => e);
    expect(refused).toMatchObject({ code: 'E_RUNTIME_AGGREGATOR_POLICY' });
  });

  it('FedAdam killed mid-way and resumed ends bit for bit equal to an uninterrupted run (optimizer and norm-bound state checkpointed)', async () => {
    const aggregator = { name: 'fedadam', args: { eta: 0.05, normBound: 'adaptive' } };
    const definition = jobDefinition({ rounds: 6, aggregator, deploy: ['site-1', 'site-2', 'site-3'] });
    // Uninterrupted.
    const whole = await federation([{ learner: slow(1) }, { learner: slow(2) }, { learner: slow(3) }]);
    const a = await whole.admin.submit(bundle(definition));
    expect((await whole.server.waitForJob(a, 30_000)).status).toBe('FINISHED');
    const expected = encodeModel((await whole.server.store.loadCheckpoint(a))!.model);
    await closeAll();
    // Interrupted after three rounds, resumed by a new server on the same workspace.
    const workspace = await tempDir();
    let current = await startServer(workspace);
    const hub = current.hub;
    for (const n of [1, 2, 3]) await (await startSite(n, hub, { learner: slow(n) })).engine.registered();
    const admin = await signingAdmin(hub, ADMIN, 10_000);
    const b = await admin.submit(bundle(definition));
    await until(async () => ((await current.server.store.get(b)).rounds_done >= 3 ? true : undefined));
    hub.setUp(false);
    await current.server.close();
    expect((await current.server.store.get(b)).rounds_done).toBeLessThan(6);
    hub.setUp(true);
    current = await startServer(workspace, { hub });
    expect((await current.server.waitForJob(b, 30_000)).status).toBe('FINISHED');
    expect(current.audit.events.some((e) => e.action === 'job_resumed')).toBe(true);
    const got = encodeModel((await current.server.store.loadCheckpoint(b))!.model);
    expect(Buffer.from(got).equals(Buffer.from(expected))).toBe(true);
  });
});
