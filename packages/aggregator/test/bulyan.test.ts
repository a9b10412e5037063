import { describe, expect, it } from 'vitest';
import { BulyanAggregator, bulyan } from '../src/index.js';
import { expectFlareCode } from '@flare/core/testing';
import { f32, sameBits, values, vec } from './fixtures.js';

// n = 7, f = 1: theta = 5 selected by Krum, beta = 3 averaged around the median.
// Coordinate 0 holds 0, 1, 2, 3, 4, 5, 1000. Iterative Krum (k = r - f - 2, at least 1) picks, in order:
// 2 (scores 30,15,10,10,15,30,.. : tie 2/3 to the earliest), 3, 1 (tie with 4), 4, then 0 (tie with 5):
// selected {0,1,2,3,4}, median 2, the three closest 1,2,3: result 2. Coordinate 1 is constant 10.
const seven = () => [0, 1, 2, 3, 4, 5, 1000].map((v) => ({ model: vec([v, 10]) }));

describe('bulyan', () => {
  it('selects theta = n - 2f with Krum and averages the beta = theta - 2f values nearest the median (hand-computed)', () => {
    expect(values(bulyan(seven(), { f: 1 }))).toEqual([2, 10]);
    expect(values(bulyan(seven(), { f: 1, selection: 'multi-krum' }))).toEqual([2, 10]);
  });

  it('differs between iterative and one-pass selection when the order of picks matters', () => {
    // One pass (k = 4): scores favour the dense cluster; re-running Krum on the remainder moves the later picks.
    const list = [0, 0.1, 0.2, 5, 5.1, 5.2, 5.3, 50, 51, 52, 53].map((v) => ({ model: vec([v]) }));
    const iterative = values(bulyan(list, { f: 2 }));
    const onePass = values(bulyan(list, { f: 2, selection: 'multi-krum' }));
    expect(iterative[0]).not.toBe(onePass[0]);
    // Both stay inside the dense middle cluster, far from 50+.
    for (const v of [iterative[0]!, onePass[0]!]) expect(v >= 5 && v <= 5.3).toBe(true);
  });

  it('Flower bulyan_test.py test_aggregate_fit (adap/flower@fdef7afb): f = 0 is the plain mean', () => {
    // Copied from ../shared/vectors/agg/flower_cases.json, case bulyan_f0_n6.
    const rows = [0.2, 0.5, 0.7, 12.0, 0.1, 0.1].map((v) => ({ model: vec([v, v, v, v], 'full'), weight: 5 }));
    for (const v of values(bulyan(rows, { f: 0 }))) expect(v).toBeCloseTo(2.2666666666666666, 6);
  });

  it('refuses n < 4f + 3 (E_AGG_ASSUMPTION), as El Mhamdi et al. require', () => {
    expectFlareCode(() => bulyan(seven().slice(0, 6), { f: 1 }), 'E_AGG_ASSUMPTION');
    expectFlareCode(() => bulyan(seven(), { f: 2 }), 'E_AGG_ASSUMPTION');
    expect(() => bulyan(seven(), { f: 1, selection: 'best' as never })).toThrow(RangeError);
  });

  it('works over several tensors and keeps their dtypes', () => {
    const list = [0, 1, 2, 3, 4, 5, 1000].map((v) => ({ model: f32({ a: [v], b: [-v, 2 * v] }) }));
    const out = bulyan(list, { f: 1 });
    expect(values(out, 'a')).toEqual([2]);
    expect(values(out, 'b')).toEqual([-2, 4]);
    expect(out.params.get('b')!.dtype).toBe('float32');
  });
});

describe('BulyanAggregator (streaming)', () => {
  it('gives the same bits whatever the arrival order', () => {
    const rows = [0.3, 1.7, 2.2, 3.1, 4.9, 5.5, 1000, -7, 2.5, 2.6, 2.7].map((v, i) => [v, v * i]);
    const run = (order: number[]) => {
      const agg = new BulyanAggregator({ f: 2 });
      for (const i of order) agg.accept(vec(rows[i]!), { from: `s${String(i).padStart(2, '0')}` });
      return agg.result();
    };
    const ids = rows.map((_, i) => i);
    expect(sameBits(run(ids), run([...ids].reverse()))).toBe(true);
    expect(sameBits(run(ids), run([5, 0, 10, 3, 8, 1, 6, 9, 2, 7, 4]))).toBe(true);
  });

  it('refuses too few contributions when aggregating (E_AGG_ASSUMPTION)', () => {
    const agg = new BulyanAggregator({ f: 1 });
    for (let i = 0; i < 6; i++) agg.accept(vec([i]), { from: `s${i}` });
    expectFlareCode(() => agg.result(), 'E_AGG_ASSUMPTION');
  });
});
