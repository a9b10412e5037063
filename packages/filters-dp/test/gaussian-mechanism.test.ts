import { describe, expect, it } from 'vitest';
import { gaussianMechanism } from '../src/index.js';
import { seededRandom } from './helpers/seeded-random.js';

describe('gaussianMechanism', () => {
  it('centres the noise on each value with standard deviation sigma (200,000 samples, fixed seed)', () => {
    const noise = gaussianMechanism(seededRandom('mechanism'));
    const n = 200_000;
    const values = new Float64Array(n).fill(0.3);
    noise(values, 2);
    let mean = 0;
    for (const v of values) mean += v;
    mean /= n;
    let sq = 0;
    for (const v of values) sq += (v - mean) ** 2;
    const sd = Math.sqrt(sq / (n - 1));
    // 5 standard errors: sd/sqrt(n) ≈ 0.0045 for the mean, sd/sqrt(2n) ≈ 0.0032 for the sd
    expect(Math.abs(mean - 0.3)).toBeLessThan(5 * (2 / Math.sqrt(n)));
    expect(Math.abs(sd - 2)).toBeLessThan(5 * (2 / Math.sqrt(2 * n)));
  });

  it('outputs lie on the grid sigma/128: no low-order bit of the input survives', () => {
    const noise = gaussianMechanism(seededRandom('grid'));
    const a = Float64Array.of(0.1, 0.1 + 2 ** -40, 1e-9, -5.123456789);
    noise(a, 1);
    for (const v of a) expect(Number.isInteger(v * 128)).toBe(true);
  });

  it('works in place on float32 data', () => {
    const noise = gaussianMechanism(seededRandom('f32'));
    const a = new Float32Array(1000).fill(10);
    noise(a, 0.5);
    expect(a.some((v) => v !== 10)).toBe(true);
    expect(Math.abs(a.reduce((s, v) => s + v, 0) / 1000 - 10)).toBeLessThan(0.1);
  });

  it('refuses NaN or infinite values (E_DP_NON_FINITE) and a bad sigma (RangeError)', () => {
    const noise = gaussianMechanism(seededRandom('bad'));
    expect(() => noise(Float64Array.of(1, Number.NaN), 1)).toThrow(expect.objectContaining({ code: 'E_DP_NON_FINITE' }));
    expect(() => noise(Float64Array.of(Infinity), 1)).toThrow(expect.objectContaining({ code: 'E_DP_NON_FINITE' }));
    expect(() => noise(Float64Array.of(1), 0)).toThrow(RangeError);
  });
});
