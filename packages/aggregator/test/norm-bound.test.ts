import { l2norm, model, type FLModel } from '@flare/core';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { FedAvgAggregator, NormBoundAggregator, normBound } from '../src/index.js';
import { expectFlareCode } from '@flare/core/testing';
import { f32, values, vec } from './fixtures.js';

describe('normBound', () => {
  it('scales a diff to the bound (hand-computed: [3, 4] with bound 1 -> [0.6, 0.8])', () => {
    expect(values(normBound(vec([3, 4]), { maxNorm: 1 }))).toEqual([0.6, 0.8]);
  });

  it('returns the input itself when it is within the bound', () => {
    const u = vec([3, 4]);
    expect(normBound(u, { maxNorm: 5 })).toBe(u);
  });

  it('clips a full model around the reference: reference + clipped (model - reference)', () => {
    const out = normBound(vec([13, 24], 'full'), { maxNorm: 5, reference: vec([10, 20], 'full') });
    expect(values(out)).toEqual([13, 24]); // ||(3, 4)|| = 5: within
    expect(values(normBound(vec([16, 28], 'full'), { maxNorm: 5, reference: vec([10, 20], 'full') }))).toEqual([13, 24]);
  });

  it('measures the norm over all float tensors together and leaves integer and excluded tensors alone', () => {
    const counter = { dtype: 'int64' as const, shape: [1], data: BigInt64Array.of(1000n) };
    const m = model({ a: { dtype: 'float32', shape: [1], data: Float32Array.of(3) }, b: { dtype: 'float32', shape: [1], data: Float32Array.of(4) }, n: counter }, 'diff');
    const out = normBound(m, { maxNorm: 1 });
    expect(values(out, 'a')[0]).toBeCloseTo(0.6, 6);
    expect(values(out, 'b')[0]).toBeCloseTo(0.8, 6);
    expect(out.params.get('n')).toBe(counter);
    expect(values(normBound(f32({ a: [3], big: [1e9] }), { maxNorm: 1, exclude: ['big'] }), 'big')).toEqual([1e9]);
    expect(m.params.get('a')!.data[0]).toBe(3); // the input is not modified
  });

  it('Flower differential_privacy_test.py inputs (adap/flower@fdef7afb): joint clipping, no-op update clipping', () => {
    // Copied from ../shared/vectors/agg/flower_cases.json: derived_dp_clip_inputs (joint norm 4, scale 0.375)
    // and dp_clip_model_update_noop (update norm 1.5 <= 4).
    const clipped = normBound(f32({ a: [1.5, -0.5, 2.0, -1.0], b: [0.5, -0.5], c: [-0.5, 1.5, -1.0, 2.0], d: [-0.5, 0.5] }), { maxNorm: 1.5 });
    expect(values(clipped, 'a')).toEqual([0.5625, -0.1875, 0.75, -0.375]);
    expect(values(clipped, 'd')).toEqual([-0.1875, 0.1875]);
    const p1 = vec([0.5, 1.5, 2.5, 3.5, 4.5, 5.5, 6.5, 7.5, 8.5], 'full');
    expect(normBound(p1, { maxNorm: 4, reference: vec([1, 2, 3, 4, 5, 6, 7, 8, 9], 'full') })).toBe(p1);
  });

  it('property: the clipped update never exceeds the bound (float64)', () => {
    fc.assert(
      fc.property(fc.array(fc.double({ min: -1e6, max: 1e6, noNaN: true }), { minLength: 1, maxLength: 20 }), fc.double({ min: 1e-3, max: 1e3, noNaN: true }), (x, c) => {
        return l2norm(normBound(vec(x), { maxNorm: c })) <= c * (1 + 1e-12);
      }),
      { numRuns: 300, seed: 4 },
    );
  });

  it('refuses non-finite norms (E_AGG_NONFINITE), a full model without reference (TypeError), a mismatched reference (E_MODEL_MISMATCH)', () => {
    expectFlareCode(() => normBound(vec([1, Number.NaN]), { maxNorm: 1 }), 'E_AGG_NONFINITE');
    expectFlareCode(() => normBound(vec([1e200, 1e200]), { maxNorm: 1 }), 'E_AGG_NONFINITE');
    expect(() => normBound(vec([1], 'full'), { maxNorm: 1 })).toThrow(TypeError);
    expectFlareCode(() => normBound(vec([1], 'full'), { maxNorm: 1, reference: vec([1, 2], 'full') }), 'E_MODEL_MISMATCH');
    expectFlareCode(() => normBound(f32({ a: [1] }, 'full'), { maxNorm: 1, reference: f32({ b: [1] }, 'full') }), 'E_MODEL_MISMATCH');
    expect(() => normBound(vec([1]), { maxNorm: 0 })).toThrow(RangeError);
  });
});

describe('NormBoundAggregator', () => {
  it('bounds each contribution before the inner aggregator averages it', () => {
    const agg = new NormBoundAggregator(new FedAvgAggregator(), { maxNorm: 1 });
    agg.accept(vec([0.5, 0]), { from: 'honest' });
    agg.accept(vec([-1000, 0]), { from: 'scaled' }); // clipped to [-1, 0]
    expect(values(agg.result())).toEqual([-0.25, 0]);
    expect(agg.method).toBe('fedavg');
    expect(agg.contributors()).toEqual(['honest', 'scaled']);
  });

  it('uses the current global model as reference for full contributions', () => {
    let global: FLModel = vec([10], 'full');
    const agg = new NormBoundAggregator(new FedAvgAggregator({ kind: 'full' }), { maxNorm: 1, reference: () => global });
    agg.accept(vec([20], 'full'), { from: 'a' });
    expect(values(agg.result())).toEqual([11]);
    global = vec([11], 'full');
    agg.reset();
    agg.accept(vec([0], 'full'), { from: 'a' });
    expect(values(agg.result())).toEqual([10]);
  });

  it('lets the inner aggregator refuse a contribution of the wrong kind (E_AGG_KIND); needs a reference for full (TypeError)', () => {
    const agg = new NormBoundAggregator(new FedAvgAggregator({ kind: 'diff' }), { maxNorm: 1 });
    expectFlareCode(() => agg.accept(vec([5], 'full'), { from: 'a' }), 'E_AGG_KIND');
    expect(() => new NormBoundAggregator(new FedAvgAggregator({ kind: 'full' }), { maxNorm: 1 })).toThrow(TypeError);
  });
});
