import { META, add, cloneModel, type FLModel } from '@flare/core';
import { describe, expect, it } from 'vitest';
import { FedAvgAggregator } from '../src/index.js';
import { codeOf, f32, gaussian, rng, sameBits, values, vec } from './fixtures.js';

function update(seed: number): FLModel {
  const u = gaussian(rng(seed));
  return f32({ a: Array.from({ length: 1001 }, u), b: Array.from({ length: 7 }, u) }, 'diff', { [META.NUM_STEPS_CURRENT_ROUND]: 1 + (seed % 3) });
}

describe('FedAvgAggregator: memory across rounds', () => {
  it('reuses its accumulators: after the first round, more rounds take no more memory', () => {
    const agg = new FedAvgAggregator();
    const run = (round: number) => {
      agg.beginRound(round);
      for (let s = 0; s < 5; s++) agg.accept(update(round * 10 + s), { from: `s${s}`, round });
      agg.result();
    };
    run(0);
    const reserved = agg.reservedBytes;
    expect(reserved).toBeGreaterThanOrEqual(agg.accumulatorBytes);
    for (let r = 1; r < 6; r++) run(r);
    expect(agg.reservedBytes).toBe(reserved);
  });

  it('a refused contribution gives back what it reserved: a hostile site cannot grow the memory by resending', () => {
    const agg = new FedAvgAggregator();
    agg.accept(update(1), { from: 'honest' });
    const reserved = agg.reservedBytes;
    for (let i = 0; i < 20; i++) {
      const bad = f32({ [`new${i}`]: Array.from({ length: 5000 }, (_, k) => (k === 4999 ? Number.NaN : 1)) });
      expect(codeOf(() => agg.accept(bad, { from: `hostile-${i}` }))).toBe('E_AGG_NONFINITE');
    }
    expect(agg.reservedBytes).toBeLessThanOrEqual(reserved + 16 * 5000 + 8 * 5000 + 65536);
  });

  it('resultInto writes the average into a given model (or adds it: global += average), rounded once', () => {
    const make = () => {
      const agg = new FedAvgAggregator({ round: 3 });
      for (let s = 0; s < 4; s++) agg.accept(update(s), { from: `s${s}`, round: 3, weight: 1 + s });
      return agg;
    };
    const reference = make().result();
    const target = cloneModel(reference);
    for (const t of target.params.values()) (t.data as Float32Array).fill(0);
    const summary = make().resultInto(target);
    expect(sameBits(target, reference)).toBe(true);
    expect(summary.meta).toEqual(reference.meta);

    const global = f32({ a: Array.from({ length: 1001 }, (_, i) => i / 7), b: [1, 2, 3, 4, 5, 6, 7] }, 'full');
    const viaResult = add(cloneModel(global), reference);
    make().resultInto(global, { add: true });
    // Rounded once (f64 sum, then f32) instead of twice: equal to within one float32 ulp.
    const x = global.params.get('a')!.data as Float32Array;
    const y = viaResult.params.get('a')!.data as Float32Array;
    for (let i = 0; i < x.length; i++) expect(Math.abs(x[i]! - y[i]!)).toBeLessThanOrEqual(Math.abs(y[i]!) * 2 ** -23 + 1e-30);
  });

  it('resultInto refuses a target that lacks a tensor, differs in size or is not float, writing nothing', () => {
    const agg = new FedAvgAggregator();
    agg.accept(f32({ w: [1, 2] }), { from: 'a' });
    expect(codeOf(() => agg.resultInto(f32({ v: [0, 0] })))).toBe('E_MODEL_MISMATCH');
    expect(codeOf(() => agg.resultInto(f32({ w: [0] })))).toBe('E_MODEL_MISMATCH');
    const ints = { params: new Map([['w', { dtype: 'int32' as const, shape: [2], data: new Int32Array(2) }]]), kind: 'diff' as const, meta: {} };
    expect(codeOf(() => agg.resultInto(ints))).toBe('E_MODEL_DTYPE');
    const ok = vec([9, 9]);
    ok.params.set('w', ok.params.get('w')!);
    agg.resultInto(ok);
    expect(values(ok)).toEqual([1, 2]);
    expect(codeOf(() => agg.accept(f32({ w: [1, 2] }), { from: 'b' }))).toBe('E_AGG_LATE');
  });
});
