import { META, add, cloneModel, type FLModel } from '@flare/core';
import { describe, expect, it } from 'vitest';
import { DEFAULT_AGGREGATOR_SPEC, FedAvgAggregator, createAggregator, saveAggregatorState } from '../src/index.js';
import { expectFlareCode } from '@flare/core/testing';
import { f32, gaussian, rng, sameBits, values, vec } from './fixtures.js';

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
      expectFlareCode(() => agg.accept(bad, { from: `hostile-${i}` }), 'E_AGG_NONFINITE');
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
    expectFlareCode(() => agg.resultInto(f32({ v: [0, 0] })), 'E_MODEL_MISMATCH');
    expectFlareCode(() => agg.resultInto(f32({ w: [0] })), 'E_MODEL_MISMATCH');
    const ints = { params: new Map([['w', { dtype: 'int32' as const, shape: [2], data: new Int32Array(2) }]]), kind: 'diff' as const, meta: {} };
    expectFlareCode(() => agg.resultInto(ints), 'E_MODEL_DTYPE');
    const ok = vec([9, 9]);
    ok.params.set('w', ok.params.get('w')!);
    agg.resultInto(ok);
    expect(values(ok)).toEqual([1, 2]);
    expectFlareCode(() => agg.accept(f32({ w: [1, 2] }), { from: 'b' }), 'E_AGG_LATE');
  });
});

describe('resultInto through the wrappers (the default spec) and for aggregators without an in-place form', () => {
  it('the default spec (adaptive bound around FedAvg) writes the same result in place, first round (replayed) and later', () => {
    const rounds = [0, 1].map((r) => [0, 1, 2, 3].map((s) => (s === 3 ? f32({ a: Array(1001).fill(50), b: Array(7).fill(50) }) : update(r * 10 + s))));
    const viaResult = createAggregator(DEFAULT_AGGREGATOR_SPEC);
    const inPlace = createAggregator(DEFAULT_AGGREGATOR_SPEC);
    expect(typeof inPlace.resultInto).toBe('function');
    for (const [r, updates] of rounds.entries()) {
      viaResult.beginRound(r);
      inPlace.beginRound(r);
      updates.forEach((u, s) => {
        viaResult.accept(u, { from: `s${s}`, round: r });
        inPlace.accept(u, { from: `s${s}`, round: r });
      });
      const reference = viaResult.result();
      const target = cloneModel(reference);
      for (const t of target.params.values()) (t.data as Float32Array).fill(0);
      inPlace.resultInto!(target);
      expect(sameBits(target, reference)).toBe(true);
    }
    expect(saveAggregatorState(inPlace)).toEqual(saveAggregatorState(viaResult));
  });

  it('an aggregator without an in-place form: its result copied in; add only for diff results', () => {
    const agg = createAggregator({ name: 'norm-bound', args: { maxNorm: 100 }, aggregator: { name: 'median' } });
    for (const [s, v] of [1, 2, 30].entries()) agg.accept(vec([v]), { from: `s${s}` });
    const target = vec([10]);
    agg.resultInto!(target, { add: true });
    expect(values(target)).toEqual([12]);
    const full = createAggregator({ name: 'fedavg', args: { kind: 'full', normBound: { maxNorm: 1 } } }, { global: vec([0], 'full') });
    full.accept(vec([0.5], 'full'), { from: 'a' });
    expect(() => full.resultInto!(vec([0], 'full'), { add: true })).toThrow(TypeError);
  });
});
