import { describe, expect, it } from 'vitest';
import { nextClipNorm } from '../src/index.js';
import { effectiveNoiseMultiplier } from '../src/adaptive-clipping.js';

describe('nextClipNorm (Andrew et al. 2021, Algorithm 1)', () => {
  it('grows the clip norm when every update was clipped (b = 0): C·e^(η·γ)', () => {
    expect(nextClipNorm({ clipNorm: 1, unclippedFraction: 0, targetQuantile: 0.5, learningRate: 0.2 })).toBeCloseTo(Math.exp(0.1), 15);
  });

  it('shrinks it when no update was clipped (b = 1): C·e^(-η·(1 - γ))', () => {
    expect(nextClipNorm({ clipNorm: 2, unclippedFraction: 1, targetQuantile: 0.8, learningRate: 0.5 })).toBeCloseTo(2 * Math.exp(-0.1), 15);
  });

  it('stays put at the target quantile', () => {
    expect(nextClipNorm({ clipNorm: 3, unclippedFraction: 0.5, targetQuantile: 0.5, learningRate: 0.2 })).toBe(3);
  });

  it('rejects invalid steps with RangeError', () => {
    expect(() => nextClipNorm({ clipNorm: 0, unclippedFraction: 0, targetQuantile: 0.5, learningRate: 0.2 })).toThrow(RangeError);
    expect(() => nextClipNorm({ clipNorm: 1, unclippedFraction: 0, targetQuantile: 1, learningRate: 0.2 })).toThrow(RangeError);
    expect(() => nextClipNorm({ clipNorm: 1, unclippedFraction: Number.NaN, targetQuantile: 0.5, learningRate: 0.2 })).toThrow(RangeError);
  });
});

describe('effectiveNoiseMultiplier', () => {
  it('is z for add-remove, z/2 for replacement, and combines the bit noise as (z^-2 + σ_b^-2)^(-1/2)', () => {
    expect(effectiveNoiseMultiplier(1.5, 'add-remove', undefined)).toBeCloseTo(1.5, 15);
    expect(effectiveNoiseMultiplier(1.5, 'replace', undefined)).toBeCloseTo(0.75, 15);
    expect(effectiveNoiseMultiplier(1, 'add-remove', 2)).toBeCloseTo(1 / Math.sqrt(1.25), 15);
  });
});
