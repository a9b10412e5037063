import { META, model, type FLModel } from '@flare/core';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { CoordinateMedianAggregator, coordinateMedian } from '../src/index.js';
import { expectFlareCode } from '@flare/core/testing';
import { f32, sameBits, values, vec } from './fixtures.js';

const list = (...rows: number[][]) => rows.map((r) => ({ model: vec(r) }));

describe('coordinateMedian', () => {
  it('takes the median of each coordinate (hand-computed, odd n)', () => {
    expect(values(coordinateMedian(list([1, 10], [5, -2], [3, 0])))).toEqual([3, 0]);
  });

  it('averages the two middle values for an even n (numpy.median)', () => {
    expect(values(coordinateMedian(list([1], [2], [3], [10])))).toEqual([2.5]);
  });

  it('ignores weights, as Flower does', () => {
    const out = coordinateMedian([{ model: vec([0]), weight: 100 }, { model: vec([1]), weight: 1 }, { model: vec([2]), weight: 1 }]);
    expect(values(out)).toEqual([1]);
  });

  it('Flower fedmedian_test.py test_aggregate_fit (serverapp; adap/flower@fdef7afb)', () => {
    // Copied from ../shared/vectors/agg/flower_cases.json, case fedmedian_coordinatewise.
    const out = coordinateMedian([
      { model: vec([1.0, 0.2, 0.5, 1.0], 'full'), weight: 5 },
      { model: vec([0.2, 0.5, 1.0, 0.2], 'full'), weight: 2 },
      { model: vec([0.5, 1.0, 0.2, 0.5], 'full'), weight: 9 },
    ]);
    expect(values(out)).toEqual([0.5, 0.5, 0.5, 0.5]);
  });

  it('keeps scalar (0-d) tensors scalar and float32 tensors float32', () => {
    const scalar = (v: number): FLModel => model({ s: { dtype: 'float32', shape: [], data: Float32Array.of(v) } }, 'diff');
    const out = coordinateMedian([{ model: scalar(1) }, { model: scalar(3) }, { model: scalar(2) }]);
    expect(out.params.get('s')).toEqual({ dtype: 'float32', shape: [], data: Float32Array.of(2) });
  });

  it('property: equals the median of the sorted values, for any order of contributions', () => {
    fc.assert(
      fc.property(fc.array(fc.array(fc.double({ noNaN: true, min: -1e300, max: 1e300 }), { minLength: 4, maxLength: 4 }), { minLength: 1, maxLength: 15 }), (rows) => {
        const out = values(coordinateMedian(list(...rows)));
        const reversed = values(coordinateMedian(list(...[...rows].reverse())));
        return out.every((v, c) => {
          const col = rows.map((r) => r[c]!).sort((a, b) => a - b);
          const k = col.length >> 1;
          const want = col.length % 2 === 1 ? col[k]! : (col[k - 1]! + col[k]!) / 2;
          return v === want && reversed[c] === want;
        });
      }),
      { numRuns: 400, seed: 1 },
    );
  });

  it('refuses too few contributions for f (E_AGG_ASSUMPTION: n >= 2f + 1)', () => {
    expectFlareCode(() => coordinateMedian(list([1], [2], [3], [4]), { f: 2 }), 'E_AGG_ASSUMPTION');
    expect(values(coordinateMedian(list([1], [2], [3], [4], [5]), { f: 2 }))).toEqual([3]);
    expect(() => coordinateMedian(list([1]), { f: -1 })).toThrow(RangeError);
  });

  it('refuses inconsistent or faulty contributions', () => {
    expectFlareCode(() => coordinateMedian([]), 'E_AGG_EMPTY');
    expectFlareCode(() => coordinateMedian([{ model: vec([1]) }, { model: vec([1, 2]) }]), 'E_MODEL_MISMATCH');
    expectFlareCode(() => coordinateMedian([{ model: f32({ a: [1] }) }, { model: f32({ b: [1] }) }]), 'E_MODEL_MISMATCH');
    expectFlareCode(() => coordinateMedian([{ model: f32({ a: [1], b: [2] }) }, { model: f32({ a: [1] }) }]), 'E_MODEL_MISMATCH');
    expectFlareCode(() => coordinateMedian([{ model: vec([1]) }, { model: vec([Number.NaN]) }]), 'E_AGG_NONFINITE');
    expectFlareCode(() => coordinateMedian([{ model: vec([1]) }, { model: vec([1], 'full') }]), 'E_AGG_KIND');
    expectFlareCode(() => coordinateMedian([{ model: vec([1]), from: 'x' }, { model: vec([1]), from: 'x' }]), 'E_AGG_DUPLICATE');
    expectFlareCode(() => coordinateMedian([{ model: vec([1]), weight: 0 }]), 'E_AGG_WEIGHT');
    // The mean of the two middle values 1.7e308 and 1.75e308 overflows: refused, not returned as infinity.
    expectFlareCode(() => coordinateMedian(list([1.7e308], [1.75e308])), 'E_AGG_NONFINITE');
  });
});

describe('CoordinateMedianAggregator (streaming)', () => {
  it('gives the same bits whatever the arrival order (contributions are sorted by site)', () => {
    const rows = [[0.1, 5], [0.3, -1], [0.2, 2], [9, 9]];
    const run = (order: number[]) => {
      const agg = new CoordinateMedianAggregator();
      for (const i of order) agg.accept(vec(rows[i]!), { from: `s${i}` });
      return agg.result();
    };
    expect(sameBits(run([0, 1, 2, 3]), run([3, 1, 0, 2]))).toBe(true);
    expect(values(run([2, 0, 3, 1]))).toEqual([0.25, 3.5]);
  });

  it('applies the round rules (E_AGG_ROUND, E_AGG_DUPLICATE, E_AGG_KIND, E_AGG_LATE) and stamps the round', () => {
    const agg = new CoordinateMedianAggregator({ round: 3 });
    expectFlareCode(() => agg.accept(vec([1]), { from: 'a', round: 2 }), 'E_AGG_ROUND');
    agg.accept(vec([1]), { from: 'a', round: 3 });
    expectFlareCode(() => agg.accept(vec([2]), { from: 'a', round: 3 }), 'E_AGG_DUPLICATE');
    expectFlareCode(() => agg.accept(vec([2], 'full'), { from: 'b', round: 3 }), 'E_AGG_KIND');
    expectFlareCode(() => agg.accept(vec([2]), { from: 'c', round: 3, weight: -1 }), 'E_AGG_WEIGHT');
    const out = agg.result();
    expect(out.meta[META.CURRENT_ROUND]).toBe(3);
    expectFlareCode(() => agg.accept(vec([2]), { from: 'b', round: 3 }), 'E_AGG_LATE');
    agg.reset();
    expect(agg.round).toBe(4);
    expect(agg.contributors()).toEqual([]);
    expectFlareCode(() => agg.result(), 'E_AGG_EMPTY');
  });

  it('refuses at accept a contribution unlike the first one or the template (E_MODEL_MISMATCH, E_AGG_NONFINITE)', () => {
    const agg = new CoordinateMedianAggregator();
    agg.accept(f32({ a: [1, 2] }), { from: 'a' });
    expectFlareCode(() => agg.accept(f32({ a: [1] }), { from: 'b' }), 'E_MODEL_MISMATCH');
    expectFlareCode(() => agg.accept(f32({ a: [1, Number.POSITIVE_INFINITY] }), { from: 'b' }), 'E_AGG_NONFINITE');
    const templated = new CoordinateMedianAggregator({ template: f32({ a: [0, 0] }) });
    expectFlareCode(() => templated.accept(f32({ b: [1, 2] }), { from: 'a' }), 'E_MODEL_MISMATCH');
    expect(agg.contributors()).toEqual(['a']);
  });

  it('computes once per round and hands out copies', () => {
    const agg = new CoordinateMedianAggregator();
    agg.accept(vec([1]), { from: 'a' });
    const first = agg.result();
    (first.params.get('w')!.data as Float64Array)[0] = 99;
    expect(values(agg.result())).toEqual([1]);
  });
});
