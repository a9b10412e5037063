import { isFlareError } from '@flare/core';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DEFAULT_ORDERS, epsilonFromRdp, noiseMultiplierFor, rdp, rdpEpsilon } from '../src/index.js';

// Reference values copied from the upstream unit tests named in each title (also in ../shared/vectors/dp/
// accountant_cases.json, which the conformance suite checks in full). Snapshots: pytorch/opacus@4d0ebc84,
// tensorflow/privacy@03035d5d, google/differential-privacy@b5b0286e.

const TF_ORDERS = [1.25, 1.5, 1.75, 2.0, 2.25, 2.5, 3.0, 3.5, 4.0, 4.5, ...Array.from({ length: 59 }, (_, i) => 5 + i), 128, 256, 512];
const DPACC_ORDERS = [...Array.from({ length: 99 }, (_, i) => 1 + (i + 1) / 10), ...Array.from({ length: 53 }, (_, i) => 11 + i), 128, 256, 512, 1024];

describe('DEFAULT_ORDERS', () => {
  it('are Opacus DEFAULT_ALPHAS: 1.1 .. 10.9 by 0.1, then 12 .. 63', () => {
    expect(DEFAULT_ORDERS).toHaveLength(151);
    expect(DEFAULT_ORDERS[0]).toBe(1.1);
    expect(DEFAULT_ORDERS[98]).toBe(10.9);
    expect(DEFAULT_ORDERS[99]).toBe(12);
    expect(DEFAULT_ORDERS.at(-1)).toBe(63);
  });
});

describe('rdpEpsilon', () => {
  it('opacus tests/accountants_test.py test_rdp_accountant: sigma 1.5, q 0.04, 2250 steps, delta 1e-5 -> 7.32911117143', () => {
    const { epsilon, order } = rdpEpsilon({ noiseMultiplier: 1.5, samplingRate: 0.04, steps: 2250, delta: 1e-5 });
    expect(Math.abs(epsilon - 7.32911117143)).toBeLessThan(5e-8);
    expect(order).toBe(3.9);
  });

  it('tensorflow/privacy compute_dp_sgd_privacy_test Test0: sigma 1.3, q 0.0025, 6000 steps -> 0.7242234026109595 at order 19', () => {
    const r = rdpEpsilon({ noiseMultiplier: 1.3, samplingRate: 0.0025, steps: 6000, delta: 1e-5, orders: TF_ORDERS });
    expect(Math.abs(r.epsilon - 0.7242234026109595)).toBeLessThan(5e-8);
    expect(r.order).toBe(19);
  });

  it('tensorflow/privacy compute_dp_sgd_privacy_test Test1: sigma 1.0, q 0.001, 30000 steps, delta 1e-7 -> 1.4154988495444842 at order 13', () => {
    const r = rdpEpsilon({ noiseMultiplier: 1.0, samplingRate: 0.001, steps: 30000, delta: 1e-7, orders: TF_ORDERS });
    expect(Math.abs(r.epsilon - 1.4154988495444842)).toBeLessThan(5e-8);
    expect(r.order).toBe(13);
  });

  it('tensorflow/privacy compute_dp_sgd_privacy_test Test2 (extreme): sigma 0.1, q 1.024e-5, 976563 steps -> 5907982.3113984 at order 1.25', () => {
    const r = rdpEpsilon({ noiseMultiplier: 0.1, samplingRate: 1.024e-5, steps: 976563, delta: 1e-7, orders: TF_ORDERS });
    expect(Math.abs(r.epsilon - 5907982.3113984) / 5907982.3113984).toBeLessThan(1e-6);
    expect(r.order).toBe(1.25);
  });

  it('derived (accountant_cases.json derived_abadi_sigma8.0_E10, exact RDP): sigma 8, q 0.01, 1000 steps -> 0.14743408494679175 at order 128', () => {
    const r = rdpEpsilon({ noiseMultiplier: 8, samplingRate: 0.01, steps: 1000, delta: 1e-5, orders: DPACC_ORDERS });
    expect(Math.abs(r.epsilon - 0.14743408494679175) / 0.14743408494679175).toBeLessThan(1e-6);
    expect(r.order).toBe(128);
  });

  it('stays finite at the extremes the issue names: q = 1e-6, sigma 0.5 and 50, 1e6 steps, orders up to 1024', () => {
    for (const sigma of [0.5, 50]) {
      for (const orders of [DEFAULT_ORDERS, DPACC_ORDERS]) {
        const r = rdpEpsilon({ noiseMultiplier: sigma, samplingRate: 1e-6, steps: 1_000_000, delta: 1e-5, orders });
        expect(Number.isFinite(r.epsilon)).toBe(true);
        expect(r.epsilon).toBeGreaterThan(0);
      }
      const v = rdp({ noiseMultiplier: sigma, samplingRate: 1e-6, orders: DPACC_ORDERS });
      expect(v.every((x) => Number.isFinite(x) && x >= 0)).toBe(true);
    }
  });

  it('grows with steps and shrinks with noise (property)', () => {
    fc.assert(
      fc.property(fc.double({ min: 0.6, max: 20, noNaN: true }), fc.double({ min: 1e-5, max: 0.5, noNaN: true }), fc.integer({ min: 1, max: 5000 }), (sigma, q, steps) => {
        const e1 = rdpEpsilon({ noiseMultiplier: sigma, samplingRate: q, steps, delta: 1e-5 }).epsilon;
        const e2 = rdpEpsilon({ noiseMultiplier: sigma, samplingRate: q, steps: steps * 2, delta: 1e-5 }).epsilon;
        const e3 = rdpEpsilon({ noiseMultiplier: sigma * 1.5, samplingRate: q, steps, delta: 1e-5 }).epsilon;
        return e2 >= e1 && e3 <= e1 && Number.isFinite(e1);
      }),
      { numRuns: 40, seed: 7 },
    );
  });

  it('refuses out-of-range arguments with RangeError', () => {
    expect(() => rdpEpsilon({ noiseMultiplier: -1, samplingRate: 0.1, steps: 1, delta: 1e-5 })).toThrow(RangeError);
    expect(() => rdpEpsilon({ noiseMultiplier: 1, samplingRate: 1.5, steps: 1, delta: 1e-5 })).toThrow(RangeError);
    expect(() => rdpEpsilon({ noiseMultiplier: 1, samplingRate: 0.1, steps: 1.5, delta: 1e-5 })).toThrow(RangeError);
    expect(() => rdpEpsilon({ noiseMultiplier: 1, samplingRate: 0.1, steps: 1, delta: 0 })).toThrow(RangeError);
    expect(() => rdp({ noiseMultiplier: 1, samplingRate: 0.1, orders: [1] })).toThrow(RangeError);
  });
});

describe('rdp', () => {
  it('dp_accounting rdp_privacy_accountant_test test_compute_rdp_gaussian: sigma 2.71828, order 3.14159 -> 0.21258427222223966', () => {
    const [v] = rdp({ noiseMultiplier: 2.71828, samplingRate: 1, orders: [3.14159] });
    expect(Math.abs(v! - 0.21258427222223966)).toBeLessThan(5e-8);
  });

  it('dp_accounting test_compute_rdp_multi_gaussian: two Gaussians (2.71828, 6.28319) compose by addition -> 0.25237291495195807', () => {
    const a = rdp({ noiseMultiplier: 2.71828, samplingRate: 1, orders: [3.14159] })[0]!;
    const b = rdp({ noiseMultiplier: 6.28319, samplingRate: 1, orders: [3.14159] })[0]!;
    expect(Math.abs(a + b - 0.25237291495195807)).toBeLessThan(5e-8);
  });

  it('dp_accounting test_compute_rdp_poisson_sampled_gaussian (q 0.01, sigma 2.5, 50 steps): exact values, not the conservative 2024 ones', () => {
    // The upstream test expects 6.70579741e-4 at order 1.5 since dp_accounting@0b109e95 (2024-04-26) sums |terms|;
    // before that commit it expected the exact 6.5007e-4 that Opacus and TF Privacy compute and that we match.
    const orders = [1.5, 2.5, 5, 50, 100, Infinity];
    const exact = [0.0006500708971880398, 0.0010854180569181244, 0.0021807565623078807, 0.02384603753870617, 167.41630754841825, Infinity];
    const got = rdp({ noiseMultiplier: 2.5, samplingRate: 0.01, orders }).map((v) => v * 50);
    got.forEach((v, i) => {
      if (exact[i] === Infinity) expect(v).toBe(Infinity);
      else expect(Math.abs(v - exact[i]!) / exact[i]!).toBeLessThan(1e-6);
    });
  });

  it('is 0 without sampling and infinite without noise', () => {
    expect(rdp({ noiseMultiplier: 1, samplingRate: 0, orders: [2, 3.5] })).toEqual([0, 0]);
    expect(rdp({ noiseMultiplier: 0, samplingRate: 0.5, orders: [2] })).toEqual([Infinity]);
  });

  it('never returns NaN or Infinity for finite settings (property, log-space robustness)', () => {
    fc.assert(
      fc.property(
        fc.double({ min: 0.3, max: 100, noNaN: true }),
        fc.double({ min: 1e-7, max: 0.99, noNaN: true }),
        fc.oneof(fc.double({ min: 1.01, max: 64, noNaN: true }), fc.integer({ min: 2, max: 1024 })),
        (sigma, q, order) => {
          const [v] = rdp({ noiseMultiplier: sigma, samplingRate: q, orders: [order] });
          return Number.isFinite(v) && v! >= 0;
        },
      ),
      { numRuns: 200, seed: 11 },
    );
  });
});

describe('epsilonFromRdp', () => {
  it('dp_accounting test_compute_epsilon_delta_pure_dp: rdp 1.1 at orders 2..32, delta 1e-5 -> 1.32783806176 at order 32', () => {
    const orders = Array.from({ length: 31 }, (_, i) => 2 + i);
    const r = epsilonFromRdp({ orders, rdp: orders.map(() => 1.1), delta: 1e-5 });
    expect(Math.abs(r.epsilon - 1.32783806176)).toBeLessThan(5e-8);
    expect(r.order).toBe(32);
  });

  it('dp_accounting test_compute_epsilon_delta_gaussian: sigma 4.530877117 gives (1, 1e-6) over orders 1.001 .. 99.999', () => {
    const orders = Array.from({ length: 98999 }, (_, i) => 0.001 * (i + 1001));
    const r = epsilonFromRdp({ orders, rdp: rdp({ noiseMultiplier: 4.530877117, samplingRate: 1, orders }), delta: 1e-6 });
    expect(Math.abs(r.epsilon - 1.0)).toBeLessThan(5e-8);
  });

  it('answers Infinity when no order is finite, and refuses mismatched arrays', () => {
    expect(epsilonFromRdp({ orders: [2, 3], rdp: [Infinity, Infinity], delta: 1e-5 }).epsilon).toBe(Infinity);
    expect(() => epsilonFromRdp({ orders: [2, 3], rdp: [1], delta: 1e-5 })).toThrow(RangeError);
  });
});

describe('noiseMultiplierFor', () => {
  it('opacus test_get_noise_multiplier_rdp_steps: epsilon 8, delta 1e-5, q 0.04, 2000 steps -> 1.3562', () => {
    expect(Math.abs(noiseMultiplierFor({ epsilon: 8, delta: 1e-5, samplingRate: 0.04, steps: 2000 }) - 1.3562)).toBeLessThan(5e-5);
  });

  it('opacus test_get_noise_multiplier_rdp_epochs: 90 epochs at q 0.04 (int(90/0.04) steps) -> 1.416', () => {
    expect(Math.abs(noiseMultiplierFor({ epsilon: 8, delta: 1e-5, samplingRate: 0.04, steps: Math.trunc(90 / 0.04) }) - 1.416)).toBeLessThan(5e-5);
  });

  it('never overshoots the target epsilon, and a tighter tolerance lands closer', () => {
    const target = 2;
    const z = noiseMultiplierFor({ epsilon: target, delta: 1e-5, samplingRate: 0.01, steps: 1000, epsilonTolerance: 1e-6 });
    const e = rdpEpsilon({ noiseMultiplier: z, samplingRate: 0.01, steps: 1000, delta: 1e-5 }).epsilon;
    expect(e).toBeLessThanOrEqual(target);
    expect(target - e).toBeLessThan(1e-5);
  });

  it('refuses an epsilon no noise can reach (E_DP_UNREACHABLE_EPSILON)', () => {
    let err: unknown;
    try {
      noiseMultiplierFor({ epsilon: 1e-9, delta: 1e-12, samplingRate: 1, steps: 1000 });
    } catch (e) {
      err = e;
    }
    expect(isFlareError(err, 'E_DP_UNREACHABLE_EPSILON')).toBe(true);
  });
});
