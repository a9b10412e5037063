import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { model, tensor, type AuditEventInput, type FilterContext, type FLModel } from '@flare/core';
import { afterAll, describe, expect, it } from 'vitest';
import { BUDGET_ORDERS, createDpFilterFactories, epsilonFromRdp, metricsPrivacy, METRICS_PRIVACY_META, openPrivacyLedger, privacySpent, rdp } from '../src/index.js';

const dir = mkdtempSync(join(tmpdir(), 'flare-metrics-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
const ledger = () => openPrivacyLedger(join(dir, `l${n++}`), { site: 'site-1' });
const result = (metrics: Record<string, number> | undefined): FLModel => {
  const m = model({ w: tensor(new Float32Array([1, 2])) }, 'diff');
  if (metrics !== undefined) m.metrics = metrics;
  return m;
};
const ctx = (events?: AuditEventInput[]): FilterContext => ({ site: 'site-1', job: 'j', round: 0, ...(events ? { audit: (e) => (events.push(e), undefined) } : {}) });

describe('metricsPrivacy', () => {
  it('lets only allowed metrics leave the site; the model and its other meta pass unchanged; audited', async () => {
    const events: AuditEventInput[] = [];
    const input = result({ accuracy: 0.91, loss: 0.3, val_count: 1e9, hospital_patients: 5123 });
    const out = await metricsPrivacy({ allow: ['accuracy', 'loss'] }).apply(input, ctx(events));
    expect(out.metrics).toEqual({ accuracy: 0.91, loss: 0.3 });
    expect(out.params).toBe(input.params);
    expect(out.meta[METRICS_PRIVACY_META]).toEqual({ removed: 2, noised: 0 });
    expect(events[0]).toMatchObject({ action: 'metrics_filtered', data: { released: ['accuracy', 'loss'], removed: ['val_count', 'hospital_patients'] } });
    expect(input.metrics).toHaveProperty('val_count'); // the input is not modified
  });

  it('passes a model without metrics unchanged and does not charge', async () => {
    const l = ledger();
    const m = result(undefined);
    const f = metricsPrivacy({ allow: ['accuracy'], gaussian: { noiseMultiplier: 1, metrics: { accuracy: { sensitivity: 0.01 } }, budget: { maxEpsilon: 1, delta: 1e-5, ledger: l } } });
    expect(await f.apply(m, ctx())).toBe(m);
    expect((await l.read('default', 'j')).totals).toBeUndefined();
  });

  it('clips each metric to its range and adds Gaussian noise of standard deviation noiseMultiplier x sensitivity', async () => {
    const f = metricsPrivacy({ allow: ['accuracy', 'loss'], gaussian: { noiseMultiplier: 2, metrics: { accuracy: { sensitivity: 0.01, min: 0, max: 1 }, loss: { sensitivity: 0.05 } } } });
    const acc: number[] = [];
    const loss: number[] = [];
    for (let i = 0; i < 2000; i++) {
      const out = await f.apply(result({ accuracy: 7, loss: 0.4 }), ctx());
      acc.push(out.metrics!['accuracy']!);
      loss.push(out.metrics!['loss']!);
    }
    const stats = (xs: number[]) => {
      const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
      return { mean, sd: Math.sqrt(xs.reduce((a, b) => a + (b - mean) ** 2, 0) / (xs.length - 1)) };
    };
    // 2,000 draws: the sample mean is within 5 standard errors, the sample sd within 10%.
    expect(Math.abs(stats(acc).mean - 1)).toBeLessThan((5 * 0.02) / Math.sqrt(2000));
    expect(stats(acc).sd).toBeGreaterThan(0.018);
    expect(stats(acc).sd).toBeLessThan(0.022);
    expect(Math.abs(stats(loss).mean - 0.4)).toBeLessThan((5 * 0.1) / Math.sqrt(2000));
    expect(stats(loss).sd).toBeGreaterThan(0.09);
    expect(stats(loss).sd).toBeLessThan(0.11);
  });

  it("charges the site's ledger: k metrics at noise multiplier z cost one Gaussian release at z / sqrt(k); refused when spent (E_DP_BUDGET_EXHAUSTED)", async () => {
    // Two releases cost about 1.4x one (RDP composition): a budget of 1.2x one allows exactly one.
    const l = ledger();
    const one = epsilonFromRdp({ orders: BUDGET_ORDERS, rdp: rdp({ noiseMultiplier: 4 / Math.sqrt(2), samplingRate: 1, orders: BUDGET_ORDERS }), delta: 1e-5 }).epsilon;
    const events: AuditEventInput[] = [];
    const f = metricsPrivacy({
      allow: ['accuracy', 'loss'],
      gaussian: { noiseMultiplier: 4, metrics: { accuracy: { sensitivity: 0.002, min: 0, max: 1 }, loss: { sensitivity: 0.01 } }, budget: { maxEpsilon: one * 1.2, delta: 1e-5, ledger: l } },
    });
    const out = await f.apply(result({ accuracy: 0.9, loss: 0.2 }), ctx(events));
    const spent = out.meta['dp_privacy_spent'] as { epsilon: number; releases: number; dataset: string };
    expect(spent).toMatchObject({ releases: 1, dataset: 'default' });
    expect(spent.epsilon).toBeGreaterThanOrEqual(one);
    expect(spent.epsilon).toBeLessThan(one * 1.0001);
    expect(privacySpent((await l.read('default', 'j')).totals, { delta: 1e-5, maxEpsilon: 100 }).releases).toBe(1);
    await expect(f.apply(result({ accuracy: 0.9, loss: 0.2 }), ctx(events))).rejects.toMatchObject({ code: 'E_DP_BUDGET_EXHAUSTED' });
    expect(events.some((e) => e.action === 'dp_budget_exhausted')).toBe(true);
  });

  it('refuses a NaN or infinite metric that would be released (E_DP_NON_FINITE), not one that is removed', async () => {
    const f = metricsPrivacy({ allow: ['accuracy'] });
    await expect(f.apply(result({ accuracy: Number.NaN }), ctx())).rejects.toMatchObject({ code: 'E_DP_NON_FINITE' });
    expect((await f.apply(result({ accuracy: 0.5, junk: Number.POSITIVE_INFINITY }), ctx())).metrics).toEqual({ accuracy: 0.5 });
  });

  it('refuses inconsistent options (RangeError)', () => {
    expect(() => metricsPrivacy({ allow: ['a'], gaussian: { noiseMultiplier: 1, metrics: {} } })).toThrow(/no noise settings/);
    expect(() => metricsPrivacy({ allow: ['a'], gaussian: { noiseMultiplier: 1, metrics: { a: { sensitivity: 1 }, b: { sensitivity: 1 } } } })).toThrow(/not allowed/);
    expect(() => metricsPrivacy({ allow: ['a'], gaussian: { noiseMultiplier: 0, metrics: { a: { sensitivity: 1 } } } })).toThrow(RangeError);
    expect(() => metricsPrivacy({ allow: ['a'], gaussian: { noiseMultiplier: 1, metrics: { a: { sensitivity: -1 } } } })).toThrow(RangeError);
    expect(() => metricsPrivacy({ allow: ['a'], gaussian: { noiseMultiplier: 1, metrics: { a: { sensitivity: 1, min: 1, max: 0 } } } })).toThrow(RangeError);
  });
});

describe('metrics-privacy filter factory', () => {
  const factory = createDpFilterFactories().find((f) => f.name === 'metrics-privacy')!;

  it('a site scope names which metrics may leave and how they are noised; arguments are checked when the policy loads', async () => {
    const args = factory.args.parse({
      allow: ['accuracy'],
      gaussian: { noiseMultiplier: 3, metrics: { accuracy: { sensitivity: 0.001, min: 0, max: 1 } }, budget: { maxEpsilon: 10, delta: 1e-5, dataset: 'spam' } },
    });
    const workspace = join(dir, 'ws');
    const out = await factory.create(args, { site: 'site-1', workspace }).apply(result({ accuracy: 0.8, count: 4 }), ctx());
    expect(Object.keys(out.metrics!)).toEqual(['accuracy']);
    expect(out.meta['dp_privacy_spent']).toMatchObject({ dataset: 'spam', releases: 1 });
    for (const bad of [{}, { allow: 'accuracy' }, { allow: ['a'], extra: 1 }, { allow: ['a'], gaussian: { noiseMultiplier: 1, metrics: {} } }, { allow: ['a'], gaussian: { noiseMultiplier: 1, metrics: { a: { sensitivity: 0 } } } }]) {
      expect(factory.args.safeParse(bad).success).toBe(false);
    }
  });
});
