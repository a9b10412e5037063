import { describe, expect, it } from 'vitest';
import { BUDGET_ORDERS, DEFAULT_ORDERS, epsilonFromRdp, privacySpent, rdp, type LedgerTotals } from '../src/index.js';

const base: LedgerTotals = {
  orders: BUDGET_ORDERS,
  rdp: rdp({ noiseMultiplier: 1.1, samplingRate: 1, orders: BUDGET_ORDERS }).map((v) => v * 3),
  pureEpsilon: null,
  samplerEpsilon: 0,
  samplerTv: 0,
  releases: 3,
};

describe('BUDGET_ORDERS', () => {
  it('are Opacus defaults plus dp_accounting large orders 128, 256, 512, 1024', () => {
    expect(BUDGET_ORDERS).toEqual([...DEFAULT_ORDERS, 128, 256, 512, 1024]);
  });
});

describe('privacySpent', () => {
  it('is 0 before any release', () => {
    expect(privacySpent(undefined, { delta: 1e-5, maxEpsilon: 1 })).toEqual({ epsilon: 0, delta: 1e-5, maxEpsilon: 1, releases: 0, accountant: 'rdp' });
  });

  it('converts the composed RDP at delta', () => {
    const spent = privacySpent(base, { delta: 1e-5, maxEpsilon: 10 });
    expect(spent.epsilon).toBe(epsilonFromRdp({ orders: base.orders, rdp: base.rdp, delta: 1e-5 }).epsilon);
    expect(spent.releases).toBe(3);
  });

  it('takes the smaller of basic composition and RDP for pure-DP releases', () => {
    const pure = { ...base, pureEpsilon: 0.5, rdp: BUDGET_ORDERS.map((a) => Math.min(0.5, (a * 0.25) / 2)) };
    expect(privacySpent(pure, { delta: 1e-5, maxEpsilon: 10 })).toMatchObject({ epsilon: 0.5, accountant: 'pure_dp_sum' });
    const many = { ...base, pureEpsilon: 100 * 0.1, rdp: BUDGET_ORDERS.map((a) => 100 * Math.min(0.1, (a * 0.01) / 2)) };
    expect(privacySpent(many, { delta: 1e-5, maxEpsilon: 20 }).epsilon).toBeLessThan(10);
    expect(privacySpent(many, { delta: 1e-5, maxEpsilon: 20 }).accountant).toBe('rdp');
  });

  it('adds the sampler error: epsilon directly, total variation out of delta at the epsilon reached (fixed point)', () => {
    const withSlack = { ...base, samplerEpsilon: 1e-3, samplerTv: 1e-9 };
    const spent = privacySpent(withSlack, { delta: 1e-5, maxEpsilon: 5 });
    const eps = spent.epsilon - 1e-3;
    const deltaLeft = 1e-5 - 1e-9 * (1 + Math.exp(eps));
    // eps is the fixed point ε = ε_rdp(δ − τ(1 + e^ε)): above the bound that ignores τ, and below one charged
    // at e^9 for a budget of 9 (the earlier rule, which made large budgets unusable)
    expect(eps).toBeCloseTo(epsilonFromRdp({ orders: base.orders, rdp: base.rdp, delta: deltaLeft }).epsilon, 9);
    expect(eps).toBeGreaterThan(epsilonFromRdp({ orders: base.orders, rdp: base.rdp, delta: 1e-5 }).epsilon);
    expect(eps).toBeLessThanOrEqual(epsilonFromRdp({ orders: base.orders, rdp: base.rdp, delta: 1e-5 - 1e-9 * (1 + Math.exp(9)) }).epsilon);
    expect(privacySpent({ ...base, samplerTv: 1 }, { delta: 1e-5, maxEpsilon: 5 }).epsilon).toBe(Infinity);
  });

  it('keeps large budgets usable: the Gaussian sampler\'s 2^-180 per coordinate costs nothing measurable at maxEpsilon 1000', () => {
    const realistic = { ...base, samplerTv: 1025 * 2 ** -180 };
    const plain = epsilonFromRdp({ orders: base.orders, rdp: base.rdp, delta: 1e-5 }).epsilon;
    expect(privacySpent(realistic, { delta: 1e-5, maxEpsilon: 1000 }).epsilon).toBeCloseTo(plain, 9);
  });

  it('rejects a delta outside (0, 1)', () => {
    expect(() => privacySpent(base, { delta: 0, maxEpsilon: 1 })).toThrow(RangeError);
  });
});
