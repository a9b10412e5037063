import { model, tensor, type AuditEventInput, type FLModel } from '@flare/core';
import { describe, expect, it } from 'vitest';
import { BUDGET_ORDERS, DP_SPENT_META, dpSgdAccountant, dpSgdFactory, rdpEpsilon } from '../src/index.js';
import { memoryPrivacyLedger } from '../src/testing.js';

const report = { noise_multiplier: 1.1, sampling_rate: 0.02, clip_norm: 1, steps: 50, examples: 1600 };
const update = (meta: FLModel['meta'] = { dp_sgd: report }): FLModel => model({ w: tensor(new Float32Array([0.1, -0.2, 0.3])) }, 'diff', meta);

function ctx(events?: AuditEventInput[], round = 0) {
  return { site: 'site-1', job: 'job-1', round, ...(events === undefined ? {} : { audit: (e: AuditEventInput) => (events.push(e), undefined) }) };
}

describe('dpSgdAccountant', () => {
  it('passes a result without tensors (metrics only, e.g. a validation result) through without charging the budget', async () => {
    const events: AuditEventInput[] = [];
    const f = dpSgdAccountant({ budget: { maxEpsilon: 10, delta: 1e-5, ledger: memoryPrivacyLedger({ site: 'site-1' }) } });
    const metricsOnly: FLModel = { ...model(new Map(), 'full'), metrics: { val_accuracy: 0.9 } };
    expect(await f.apply(metricsOnly, ctx(events))).toBe(metricsOnly);
    expect(events).toEqual([]);
  });

  it('charges the RDP of the subsampled Gaussian over the reported steps (Opacus convention) and passes the model through', async () => {
    const f = dpSgdAccountant({ budget: { maxEpsilon: 10, delta: 1e-5, ledger: memoryPrivacyLedger({ site: 'site-1' }) } });
    const m = update();
    const out = await f.apply(m, ctx());
    expect(out.params).toBe(m.params);
    const expected = rdpEpsilon({ noiseMultiplier: 1.1, samplingRate: 0.02, steps: 50, delta: 1e-5, orders: BUDGET_ORDERS }).epsilon;
    const spent = out.meta[DP_SPENT_META] as Record<string, number>;
    expect(spent['epsilon']).toBeCloseTo(expected, 8); // plus a sampler error below 1e-10
    expect(spent['epsilon']).toBeGreaterThanOrEqual(expected);
  });

  it("keeps the learner's report at the site: the update leaves with what was spent, not the run's parameters or row count", async () => {
    const events: AuditEventInput[] = [];
    const f = dpSgdAccountant({ budget: { maxEpsilon: 10, delta: 1e-5, ledger: memoryPrivacyLedger({ site: 'site-1' }) } });
    const out = await f.apply(update({ dp_sgd: report, NUM_STEPS_CURRENT_ROUND: 50 }), ctx(events));
    expect(Object.keys(out.meta).sort()).toEqual(['NUM_STEPS_CURRENT_ROUND', DP_SPENT_META]);
    expect(JSON.stringify(out.meta)).not.toContain('1600');
    // The site's own audit line keeps what the learner reported.
    expect(events.find((e) => e.action === 'dp_sgd_accounted')?.data).toMatchObject({ steps: 50, examples: 1600 });
    // A report without `examples` (what the learners send now) is accounted the same.
    const { examples: _n, ...withoutExamples } = report;
    const again = await f.apply(update({ dp_sgd: withoutExamples }), ctx());
    expect(again.meta[DP_SPENT_META]).toBeDefined();
  });

  it('composes rounds: three rounds of 50 steps cost what 150 steps cost', async () => {
    const f = dpSgdAccountant({ budget: { maxEpsilon: 10, delta: 1e-5, ledger: memoryPrivacyLedger({ site: 'site-1' }) } });
    let out!: FLModel;
    for (let round = 0; round < 3; round++) out = await f.apply(update(), ctx(undefined, round));
    const expected = rdpEpsilon({ noiseMultiplier: 1.1, samplingRate: 0.02, steps: 150, delta: 1e-5, orders: BUDGET_ORDERS }).epsilon;
    expect((out.meta[DP_SPENT_META] as Record<string, number>)['epsilon']).toBeCloseTo(expected, 8);
  });

  it('refuses the round that would pass the budget (E_DP_BUDGET_EXHAUSTED), audits it, and the spending survives a new filter on the same ledger', async () => {
    const ledger = memoryPrivacyLedger({ site: 'site-1' });
    const events: AuditEventInput[] = [];
    const one = rdpEpsilon({ noiseMultiplier: 1.1, samplingRate: 0.02, steps: 50, delta: 1e-5, orders: BUDGET_ORDERS }).epsilon;
    const budget = { maxEpsilon: one * 1.1, delta: 1e-5, ledger }; // 100 steps cost about 1.4x what 50 do
    await dpSgdAccountant({ budget }).apply(update(), ctx(events));
    await expect(dpSgdAccountant({ budget }).apply(update(), ctx(events, 1))).rejects.toMatchObject({ code: 'E_DP_BUDGET_EXHAUSTED' });
    // Each ledger entry reports its head before the filter's own event.
    expect(events.map((e) => e.action)).toEqual(['dp_ledger_head', 'dp_sgd_accounted', 'dp_ledger_head', 'dp_budget_exhausted']);
  });

  it('refuses an update not trained with DP-SGD (E_DP_SGD_MISSING), a malformed report (E_DP_BAD_META) and weaker settings than the site allows (E_DP_SGD_WEAK)', async () => {
    const f = dpSgdAccountant({ budget: { maxEpsilon: 10, delta: 1e-5, ledger: memoryPrivacyLedger({ site: 'site-1' }) }, minNoiseMultiplier: 1, maxSamplingRate: 0.05 });
    await expect(f.apply(update({}), ctx())).rejects.toMatchObject({ code: 'E_DP_SGD_MISSING' });
    await expect(f.apply(update({ dp_sgd: { ...report, steps: -1 } }), ctx())).rejects.toMatchObject({ code: 'E_DP_BAD_META' });
    await expect(f.apply(update({ dp_sgd: { ...report, extra: 1 } }), ctx())).rejects.toMatchObject({ code: 'E_DP_BAD_META' });
    await expect(f.apply(update({ dp_sgd: { ...report, noise_multiplier: 0.5 } }), ctx())).rejects.toMatchObject({ code: 'E_DP_SGD_WEAK' });
    await expect(f.apply(update({ dp_sgd: { ...report, sampling_rate: 0.1 } }), ctx())).rejects.toMatchObject({ code: 'E_DP_SGD_WEAK' });
  });

  it('is registered as dp-sgd with validated arguments', () => {
    expect(dpSgdFactory.name).toBe('dp-sgd');
    expect(dpSgdFactory.args.safeParse({ budget: { maxEpsilon: 4, delta: 1e-5 } }).success).toBe(true);
    expect(dpSgdFactory.args.safeParse({ budget: { maxEpsilon: 4, delta: 1e-5 }, typo: 1 }).success).toBe(false);
    expect(dpSgdFactory.args.safeParse({ budget: { maxEpsilon: 4, delta: 2 } }).success).toBe(false);
  });
});
