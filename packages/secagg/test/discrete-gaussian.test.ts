import { describe, expect, it } from 'vitest';
import { exactDiscreteGaussian } from '../src/discrete-gaussian.js';
import { SeededWords } from './helpers/reference-sampler.js';

describe('exactDiscreteGaussian (Canonne, Kamath, Steinke 2020)', () => {
  it('draws integers whose mean and variance are N_Z(0, σ²)\'s within 4 standard errors, over 20,000 draws', () => {
    for (const sigma of [0.8, 5, 37.5]) {
      const out = new Float64Array(20_000);
      exactDiscreteGaussian(new SeededWords(`dg-${sigma}`)).sample(out, sigma);
      let sum = 0;
      let sq = 0;
      for (const x of out) {
        expect(Number.isInteger(x)).toBe(true);
        sum += x;
        sq += x * x;
      }
      const n = out.length;
      const mean = sum / n;
      const variance = sq / n - mean * mean;
      // N_Z(0, σ²) has variance below σ² and within e^-(2π²σ²)-ish of it for σ >= 1; at σ = 0.8 it is 0.6388...
      const target = sigma < 1 ? discreteVariance(sigma) : sigma * sigma;
      expect(Math.abs(mean)).toBeLessThan((4 * sigma) / Math.sqrt(n));
      // Var of the sample variance of a near-Gaussian: 2σ⁴/n.
      expect(Math.abs(variance - target)).toBeLessThan(4 * Math.sqrt((2 * target * target) / n));
    }
  });

  it('refuses a sigma that is not finite and positive', () => {
    const s = exactDiscreteGaussian(new SeededWords('bad'));
    expect(() => s.sample(new Float64Array(1), 0)).toThrow(RangeError);
    expect(() => s.sample(new Float64Array(1), Number.NaN)).toThrow(RangeError);
  });
});

/** The variance of N_Z(0, σ²) by direct summation (small σ). */
function discreteVariance(sigma: number): number {
  let z = 0;
  let v = 0;
  for (let k = -60; k <= 60; k++) {
    const w = Math.exp(-(k * k) / (2 * sigma * sigma));
    z += w;
    v += k * k * w;
  }
  return v / z;
}
