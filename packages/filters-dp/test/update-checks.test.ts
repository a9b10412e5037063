import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { sumOfSquares } from '../src/update-checks.js';

/** Σ x² with Neumaier's compensated summation: within a few ulps of the exact sum, as the yardstick. */
function compensated(data: ArrayLike<number>): number {
  let sum = 0;
  let comp = 0;
  for (let i = 0; i < data.length; i++) {
    const v = data[i]! * data[i]!; // exact for float32 inputs; one rounding for float64
    const t = sum + v;
    comp += Math.abs(sum) >= v ? sum - t + v : v - t + sum;
    sum = t;
  }
  return sum + comp;
}

describe('sumOfSquares (blocked float64 summation)', () => {
  it('stays within its documented bound (4100 + n/16384)·2^-53 at every block boundary', () => {
    for (const n of [0, 1, 4095, 4096, 16_383, 16_384, 16_385, 3 * 16_384 + 4097, 65_536 + 123]) {
      const data = Float32Array.from({ length: n }, (_, i) => Math.sin(i * 0.7) * (1 + (i % 13)));
      const exact = compensated(data);
      const bound = (4100 + n / 16_384) * 2 ** -53 * exact;
      expect(Math.abs(sumOfSquares(data) - exact)).toBeLessThanOrEqual(bound);
    }
  });

  it('agrees with the compensated sum within the same bound for any float64 data (property)', () => {
    fc.assert(
      fc.property(fc.array(fc.double({ min: -1e6, max: 1e6, noNaN: true }), { maxLength: 40_000 }), (xs) => {
        const data = Float64Array.from(xs);
        const exact = compensated(data);
        return Math.abs(sumOfSquares(data) - exact) <= (4100 + xs.length / 16_384) * 2 ** -53 * exact;
      }),
      { numRuns: 50, seed: 7 },
    );
  });

  it('returns NaN or Infinity for non-finite input, in the vectorised blocks and in the tail', () => {
    const a = new Float32Array(20_000);
    a[5] = Number.NaN;
    expect(sumOfSquares(a)).toBeNaN();
    const b = new Float64Array(20_000);
    b[19_999] = Infinity;
    expect(sumOfSquares(b)).toBe(Infinity);
  });
});
