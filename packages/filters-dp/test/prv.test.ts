import { describe, expect, it } from 'vitest';
import { prvEpsilon, rdpEpsilon } from '../src/index.js';

// Reference values copied from ../shared/vectors/dp/accountant_cases.json, which names each upstream test:
// pytorch/opacus@4d0ebc84 tests/accountants_test.py and tests/prv_accountant.py (values of microsoft/
// prv_accountant), google/differential-privacy@b5b0286e pld tests, tensorflow/privacy@03035d5d.
// An independent PRV/PLD implementation is expected within ~1e-3 relative (the file's note).

const rel = (a: number, b: number) => Math.abs(a - b) / Math.abs(b);

describe('prvEpsilon', () => {
  it("opacus test_prv_accountant: sigma 1.5, q 0.04, 2249 steps, delta 1e-5 -> 6.777395712150674 (RDP says 7.33)", () => {
    const r = prvEpsilon({ noiseMultiplier: 1.5, samplingRate: 0.04, steps: 2249, delta: 1e-5 });
    expect(rel(r.epsilon, 6.777395712150674)).toBeLessThan(1e-3);
    expect(r.lower).toBeLessThan(r.estimate);
    expect(r.estimate).toBeLessThan(r.epsilon);
    expect(rdpEpsilon({ noiseMultiplier: 1.5, samplingRate: 0.04, steps: 2249, delta: 1e-5 }).epsilon).toBeGreaterThan(7.3);
  });

  it('opacus prv_accountant.py msr value: sigma 3.0, q 0.05, 100 steps, delta 1e-6 -> 0.7679337896668256', () => {
    expect(rel(prvEpsilon({ noiseMultiplier: 3, samplingRate: 0.05, steps: 100, delta: 1e-6 }).epsilon, 0.7679337896668256)).toBeLessThan(1e-3);
  });

  it('dp_accounting pld test_gaussian_basic: 3 x sigma sqrt(3) is one Gaussian with mu = 1: epsilon 1 at delta 0.126936', () => {
    const r = prvEpsilon({ noiseMultiplier: Math.sqrt(3), samplingRate: 1, steps: 3, delta: 0.126936 });
    expect(Math.abs(r.estimate - 1)).toBeLessThan(1e-3);
  });

  it('tensorflow/privacy compute_dp_sgd_example_privacy no_microbatching_with_subsampling_pld: 2.4612381', () => {
    const r = prvEpsilon({ noiseMultiplier: 0.7, samplingRate: 0.01, steps: 120, delta: 1e-5 });
    expect(rel(r.estimate, 2.4612381)).toBeLessThan(1e-3);
  });

  it('estimates a smaller epsilon than the RDP bound for the same noise (Gopi et al. 2021)', () => {
    for (const [s, q, t] of [[1, 0.01, 200], [2, 0.1, 50], [0.9, 0.02, 300]] as const) {
      const prv = prvEpsilon({ noiseMultiplier: s, samplingRate: q, steps: t, delta: 1e-5 });
      const rdp = rdpEpsilon({ noiseMultiplier: s, samplingRate: q, steps: t, delta: 1e-5 }).epsilon;
      expect(prv.estimate).toBeLessThan(rdp);
    }
  });

  it('refuses bad arguments and grids beyond 2^22 points with RangeError', () => {
    expect(() => prvEpsilon({ noiseMultiplier: 0, samplingRate: 0.1, steps: 1, delta: 1e-5 })).toThrow(RangeError);
    expect(() => prvEpsilon({ noiseMultiplier: 1, samplingRate: 0.1, steps: 1, delta: 1e-5, deltaError: 1e-5 })).toThrow(RangeError);
    expect(() => prvEpsilon({ noiseMultiplier: 1.5, samplingRate: 0.05, steps: 50_000, delta: 1e-6 })).toThrow(/larger "epsError"/);
  });
});
