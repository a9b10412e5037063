import { describe, expect, it } from 'vitest';
import { checkRoundConfig } from '../src/config.js';
import { PROTOCOL } from '../src/crypto.js';
import { decodeSum, encodeUpdate } from '../src/encode.js';
import { planEncoding } from '../src/plan-encoding.js';
import { distributedDpPrivacy } from '../src/privacy.js';
import { simulateRound } from '../src/testing.js';
import { siteNames } from './helpers/harness.js';
import { ReferenceSampler } from './helpers/reference-sampler.js';

describe('distributed discrete Gaussian', () => {
  it('the exact reference sampler matches N_Z(0, σ²): chi-square against the exact pmf, σ = 2, 20,000 draws', () => {
    const sampler = new ReferenceSampler('pmf');
    const draws = new Float64Array(20_000);
    sampler.sample(draws, 2);
    const weight = (k: number) => Math.exp(-(k * k) / 8);
    let norm = 0;
    for (let k = -60; k <= 60; k++) norm += weight(k);
    // Bins -6..6 and the two tails; expected counts >= 30 in each.
    const bins = new Map<number, number>();
    const binOf = (k: number) => Math.max(-7, Math.min(7, k));
    for (const z of draws) {
      expect(Number.isInteger(z)).toBe(true);
      bins.set(binOf(z), (bins.get(binOf(z)) ?? 0) + 1);
    }
    let chi = 0;
    for (let b = -7; b <= 7; b++) {
      let p = 0;
      for (let k = -60; k <= 60; k++) if (binOf(k) === b) p += weight(k) / norm;
      const expected = p * draws.length;
      chi += ((bins.get(b) ?? 0) - expected) ** 2 / expected;
    }
    // df = 14; 1 - 10^-6 quantile of chi-square(14) is 50.6 (fixed seed: the draws are the same every run).
    expect(chi).toBeLessThan(50.6);
  });

  it('the summed noise of the honest sites has the target variance: (multiplier·clip)², within 10% over 8,192 coordinates', () => {
    // 8 sites, all honest, noise multiplier 1, clip 1: the sum must carry N(0, 1) noise per coordinate. Zero
    // updates round exactly, so the decoded sum is γ·Σz. The sample variance of 8,192 values has relative
    // standard deviation √(2/8192) = 1.6%: 10% is over 6 of them (false failure < 10^-9; seeds are fixed).
    const n = 8;
    const dimension = 8192;
    const plan = planEncoding({ dimension, clip: 1, bits: 32, sites: n, rotation: 'none', noise: { multiplier: 1, honestSites: n } });
    const config = checkRoundConfig({
      protocol: PROTOCOL, job: 'job-dp', round: 0, sites: siteNames(n), degree: n - 1, threshold: 5, minSurvivors: n,
      bits: 32, length: plan.length, encoding: plan.encoding,
    });
    expect(plan.noiseStddevOnSum).toBeCloseTo(1, 12);
    const inputs = new Map(config.sites.map((site, s) => [site, encodeUpdate(new Float32Array(dimension), config, { sampler: new ReferenceSampler(`site-${s}`) })]));
    const result = simulateRound({ config, inputs });
    const noise = decodeSum(result.sum, config);
    let mean = 0;
    for (const v of noise) mean += v / dimension;
    let variance = 0;
    for (const v of noise) variance += (v - mean) ** 2 / (dimension - 1);
    expect(Math.abs(variance - 1)).toBeLessThan(0.1);
    expect(Math.abs(mean)).toBeLessThan(6 / Math.sqrt(dimension));
  }, 300_000);

  it('each site adds 1/√m of the target noise: the privacy statement charges ρ ≈ 1/(2z²), as the Gaussian mechanism with multiplier z', () => {
    for (const z of [0.8, 1, 2]) {
      const plan = planEncoding({ dimension: 10_000, clip: 1, bits: 20, sites: 50, noise: { multiplier: z, honestSites: 40 } });
      const config = checkRoundConfig({
        protocol: PROTOCOL, job: 'job-dp', round: 0, sites: siteNames(50), degree: 49, threshold: 40, minSurvivors: 40,
        bits: 20, length: plan.length, encoding: plan.encoding,
      });
      const p = distributedDpPrivacy(config);
      expect(p.honestSites).toBe(40);
      expect(p.tau).toBe(0); // σ is thousands of ring units: the sum is a discrete Gaussian to within e^-(10^7)
      // Conditional rounding inflates the clip bound a little (c̃·γ vs c): ρ is a few percent above 1/(2z²).
      expect(p.rho).toBeGreaterThan(1 / (2 * z * z));
      expect(p.rho).toBeLessThan(1.1 / (2 * z * z));
      const [r2, r32] = p.rdp([2, 32]);
      expect(r2).toBeCloseTo(2 * p.rho, 10);
      expect(r32).toBeCloseTo(32 * p.rho, 8);
    }
  });

  it('counts τ when the per-site noise is small, so the statement never falls below the continuous one', () => {
    const plan = planEncoding({ dimension: 16, clip: 1, bits: 16, sites: 4, rotation: 'none', noise: { multiplier: 1, honestSites: 4 } });
    const base = { protocol: PROTOCOL, job: 'j', round: 0, sites: siteNames(4), degree: 3, threshold: 3, minSurvivors: 4, bits: 16, length: 16 };
    const small = checkRoundConfig({ ...base, encoding: { ...plan.encoding, noise: { stddev: 0.6, honestSites: 4 } } });
    const p = distributedDpPrivacy(small);
    expect(p.tau).toBeGreaterThan(0);
    const a = p.l2Sensitivity / (2 * 0.6);
    expect(p.rho).toBeGreaterThan((a * a) / 2);
    const [r] = p.rdp([4]);
    expect(r).toBeLessThanOrEqual(4 * p.rho + 1e-12);
    expect(() => distributedDpPrivacy(checkRoundConfig({ ...base, encoding: null }))).toThrow(expect.objectContaining({ code: 'E_SECAGG_CONFIG' }));
    expect(() => p.rdp([1])).toThrow(RangeError);
  });
});
