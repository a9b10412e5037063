import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { TrimmedMeanAggregator, trimmedMean } from '../src/index.js';
import { expectFlareCode } from '@flare/core/testing';
import { sameBits, values, vec } from './fixtures.js';

const list = (...rows: number[][]) => rows.map((r) => ({ model: vec(r) }));

describe('trimmedMean', () => {
  it('drops int(beta x n) values at each end and averages the rest (hand-computed)', () => {
    // n = 5, beta = 0.2: cut 1 per side; per coordinate [1,2,3,4,100] -> mean(2,3,4) = 3 and [-50,0,1,2,3] -> 1.
    expect(values(trimmedMean(list([1, 3], [100, -50], [3, 1], [2, 0], [4, 2]), { beta: 0.2 }))).toEqual([3, 1]);
  });

  it('uses scipy.stats.trim_mean counts: int(0.3 x 4) = 1, int(0.3 x 3) = 0', () => {
    expect(values(trimmedMean(list([0], [1], [2], [10]), { beta: 0.3 }))).toEqual([1.5]);
    expect(values(trimmedMean(list([0], [1], [11]), { beta: 0.3 }))).toEqual([4]);
  });

  it('is the unweighted mean for beta = 0', () => {
    const out = trimmedMean([{ model: vec([0]), weight: 9 }, { model: vec([3]), weight: 1 }], { beta: 0 });
    expect(values(out)).toEqual([1.5]);
  });

  it('Flower fedtrimmedavg_test.py test_aggregate_fit and test_aggregate_fit_with_scalar_weights (adap/flower@fdef7afb)', () => {
    // Copied from ../shared/vectors/agg/flower_cases.json: fedtrimmedavg_beta025, fedtrimmedavg_scalar.
    const out = trimmedMean(
      [
        { model: vec([0.5, 0.5, 0.5, 0.5], 'full'), weight: 1 },
        { model: vec([1.0, 0.2, 0.5, 1.0], 'full'), weight: 5 },
        { model: vec([0.2, 0.5, 1.0, 0.2], 'full'), weight: 2 },
        { model: vec([0.5, 1.0, 0.2, 0.5], 'full'), weight: 9 },
      ],
      { beta: 0.25 },
    );
    expect(values(out)).toEqual([0.5, 0.5, 0.5, 0.5]);
    expect(values(trimmedMean(list([0.5], [1.0], [2.0], [100.0]), { beta: 0.25 }))).toEqual([1.5]);
  });

  it('property: equals the mean of the sorted middle values (exactly rounded), independent of order', () => {
    fc.assert(
      fc.property(
        fc.array(fc.array(fc.integer({ min: -1000, max: 1000 }), { minLength: 3, maxLength: 3 }), { minLength: 1, maxLength: 20 }),
        fc.double({ min: 0, max: 0.49, noNaN: true }),
        (rows, beta) => {
          const cut = Math.floor(beta * rows.length);
          const out = values(trimmedMean(list(...rows), { beta }));
          const back = values(trimmedMean(list(...[...rows].reverse()), { beta }));
          return out.every((v, c) => {
            const mid = rows.map((r) => r[c]!).sort((a, b) => a - b).slice(cut, rows.length - cut);
            // Integer sums are exact in float64: the mean is one correctly rounded division.
            return v === mid.reduce((a, b) => a + b, 0) / mid.length && back[c] === v;
          });
        },
      ),
      { numRuns: 400, seed: 2 },
    );
  });

  it('refuses a cut smaller than f (E_AGG_ASSUMPTION) and beta outside [0, 0.5) (RangeError)', () => {
    expectFlareCode(() => trimmedMean(list([1], [2], [3], [4]), { beta: 0.25, f: 2 }), 'E_AGG_ASSUMPTION');
    expect(values(trimmedMean(list([1], [2], [3], [4], [5], [6], [7], [8]), { beta: 0.25, f: 2 }))).toEqual([4.5]);
    expect(() => trimmedMean(list([1]), { beta: 0.5 })).toThrow(RangeError);
    expect(() => trimmedMean(list([1]), { beta: -0.1 })).toThrow(RangeError);
    expectFlareCode(() => trimmedMean(list([1], [Number.NaN]), { beta: 0.1 }), 'E_AGG_NONFINITE');
  });
});

describe('TrimmedMeanAggregator (streaming)', () => {
  it('gives the same bits whatever the arrival order', () => {
    const rows = [[0.1], [0.7], [0.3], [5], [-4], [0.2]];
    const run = (order: number[]) => {
      const agg = new TrimmedMeanAggregator({ beta: 0.2 });
      for (const i of order) agg.accept(vec(rows[i]!), { from: `s${i}` });
      return agg.result();
    };
    expect(sameBits(run([0, 1, 2, 3, 4, 5]), run([5, 3, 1, 0, 4, 2]))).toBe(true);
    // The kept values 0.1, 0.2, 0.3, 0.7 are summed exactly and rounded once: 1.3 / 4 (a left-to-right
    // double sum would give 0.32499999999999996).
    expect(values(run([0, 1, 2, 3, 4, 5]))).toEqual([0.325]);
  });

  it('checks beta when built and f when aggregating', () => {
    expect(() => new TrimmedMeanAggregator({ beta: 0.7 })).toThrow(RangeError);
    const agg = new TrimmedMeanAggregator({ beta: 0.1, f: 1 });
    for (let i = 0; i < 9; i++) agg.accept(vec([i]), { from: `s${i}` });
    expectFlareCode(() => agg.result(), 'E_AGG_ASSUMPTION'); // int(0.1 x 9) = 0 < 1
  });
});
