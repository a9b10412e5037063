import { describe, expect, it } from 'vitest';
import { GeometricMedianAggregator, geometricMedian } from '../src/index.js';
import { expectFlareCode } from '@flare/core/testing';
import { sameBits, values, vec } from './fixtures.js';

const pts = (...rows: number[][]) => rows.map((r) => ({ model: vec(r) }));

describe('geometricMedian (RFA smoothed Weiszfeld)', () => {
  it('finds the Fermat point of an equilateral triangle: its centroid', () => {
    const out = values(geometricMedian(pts([0, 0], [1, 0], [0.5, Math.sqrt(3) / 2]), { tolerance: 1e-14 }));
    expect(out[0]).toBeCloseTo(0.5, 9);
    expect(out[1]).toBeCloseTo(Math.sqrt(3) / 6, 9);
  });

  it('is the median in one dimension (0, 1, 2, 3, 100 -> 2)', () => {
    const out = values(geometricMedian(pts([0], [1], [2], [3], [100]), { tolerance: 0, maxIterations: 500 }))[0]!;
    expect(Math.abs(out - 2)).toBeLessThan(1e-4);
  });

  it('is pulled to a point holding more than half the weight', () => {
    const out = values(geometricMedian([{ model: vec([5, 5]), weight: 6 }, { model: vec([0, 0]) }, { model: vec([100, -3]) }, { model: vec([1, 1]) }], { tolerance: 0, maxIterations: 1000 }));
    expect(Math.abs(out[0]! - 5) + Math.abs(out[1]! - 5)).toBeLessThan(1e-4);
  });

  it('ignores a far minority: 4 points near the origin, 3 at 1e6', () => {
    const gm = geometricMedian(pts([0.1, 0], [-0.1, 0], [0, 0.1], [0, -0.1], [1e6, 1e6], [1e6, 1e6], [-1e6, 1e6]));
    const out = values(gm);
    expect(Math.hypot(out[0]!, out[1]!)).toBeLessThan(0.1);
    expect(gm.meta['geometric_median_iterations']).toBeLessThan(100); // converged, not cut off
  });

  it('stops after maxIterations (the first step from the weighted mean, by hand)', () => {
    // Mean of 0, 0, 3 is 1; distances 1, 1, 2; b = 1, 1, 0.5; next = (0 + 0 + 1.5) / 2.5 = 0.6.
    expect(values(geometricMedian(pts([0], [0], [3]), { maxIterations: 1 }))).toEqual([0.6]);
  });

  it('gives the same bits for any order of contributions', () => {
    const rows = [[1, 2], [3, -1], [0.5, 0.25], [10, 10], [-2, 7]];
    const a = geometricMedian(pts(...rows));
    const b = geometricMedian(pts(...[...rows].reverse()));
    expect(sameBits(a, b)).toBe(true);
  });

  it('refuses bad options (RangeError) and too few contributions for f (E_AGG_ASSUMPTION)', () => {
    expect(() => geometricMedian(pts([1]), { maxIterations: 0 })).toThrow(RangeError);
    expect(() => geometricMedian(pts([1]), { smoothing: 0 })).toThrow(RangeError);
    expect(() => geometricMedian(pts([1]), { tolerance: -1 })).toThrow(RangeError);
    expectFlareCode(() => geometricMedian(pts([1], [2]), { f: 1 }), 'E_AGG_ASSUMPTION');
  });
});

describe('GeometricMedianAggregator (streaming)', () => {
  it('weighs by ctx.weight and does not depend on arrival order', () => {
    const run = (order: number[]) => {
      const agg = new GeometricMedianAggregator({ maxIterations: 50 });
      const rows = [[0, 0], [1, 0], [0, 1], [9, 9]];
      for (const i of order) agg.accept(vec(rows[i]!), { from: `s${i}`, weight: i + 1 });
      return agg.result();
    };
    expect(sameBits(run([0, 1, 2, 3]), run([3, 1, 2, 0]))).toBe(true);
  });
});
