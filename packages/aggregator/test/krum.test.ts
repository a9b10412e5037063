import { describe, expect, it } from 'vitest';
import { KrumAggregator, MultiKrumAggregator, krum, krumScores, multiKrum } from '../src/index.js';
import { expectFlareCode } from '@flare/core/testing';
import { f32, sameBits, values, vec } from './fixtures.js';

// Five one-dimensional updates 0, 1, 2, 3, 100 with f = 1: k = n - f - 2 = 2 nearest others.
// Squared distances give scores 0: 1+4 = 5, 1: 1+1 = 2, 2: 1+1 = 2, 3: 1+4 = 5, 100: 97^2+98^2 = 19013.
const five = () => [0, 1, 2, 3, 100].map((v) => ({ model: vec([v]) }));

describe('krumScores', () => {
  it('sums squared distances to the k = n - f - 2 nearest others (hand-computed)', () => {
    expect(Array.from(krumScores(five(), { f: 1 }))).toEqual([5, 2, 2, 5, 19013]);
  });

  it('measures distance over all tensors concatenated', () => {
    const a = f32({ x: [0], y: [0] });
    const b = f32({ x: [3], y: [4] });
    const c = f32({ x: [0], y: [1] });
    // n = 3, f = 0: k = 1. d(a,b) = 25, d(a,c) = 1, d(b,c) = 9 + 9 = 18.
    expect(Array.from(krumScores([{ model: a }, { model: b }, { model: c }], { f: 0 }))).toEqual([1, 18, 1]);
  });

  it('Flower krum_test.py test_aggregate_fit scores (adap/flower@fdef7afb): [1.0, 0.36, 0.36]', () => {
    // Copied from ../shared/vectors/agg/flower_cases.json, case krum_f1_n3 (the scores are in its notes).
    const scores = krumScores([{ model: vec([0.2, 0.2, 0.2, 0.2]) }, { model: vec([0.7, 0.7, 0.7, 0.7]) }, { model: vec([1.0, 1.0, 1.0, 1.0]) }], { f: 1 });
    [1.0, 0.36, 0.36].forEach((s, i) => expect(scores[i]).toBeCloseTo(s, 12));
    expect(scores[1]).toBe(scores[2]);
  });
});

describe('krum', () => {
  it('returns the best-scored update, ties to the earliest (hand-computed: update 1 of 0,1,2,3,100)', () => {
    expect(values(krum(five(), { f: 1 }))).toEqual([1]);
  });

  it('returns the chosen update bit for bit', () => {
    const list = [0.1, 0.2, 0.31, 0.45, 1e9].map((v) => ({ model: vec([v, v / 3]), weight: 7 }));
    expect(sameBits(krum(list, { f: 1 }), list[1]!.model)).toBe(true);
  });

  it('refuses n < 2f + 3 (E_AGG_ASSUMPTION), as Blanchard et al. require', () => {
    expectFlareCode(() => krum(five().slice(0, 4), { f: 1 }), 'E_AGG_ASSUMPTION');
    expectFlareCode(() => krum(five(), { f: 2 }), 'E_AGG_ASSUMPTION');
    expect(() => krum(five(), { f: 1.5 })).toThrow(RangeError);
  });
});

describe('multiKrum', () => {
  it('averages the m best-scored updates with their weights (hand-computed)', () => {
    // Best three: updates 1 and 2 (score 2), then 0 (score 5, tied with 3: the earliest).
    const list = five().map((u, i) => ({ ...u, weight: [1, 1, 2, 1, 1][i]! }));
    expect(values(multiKrum(list, { f: 1, m: 3 }))).toEqual([(0 * 1 + 1 * 1 + 2 * 2) / 4]);
    expect(values(multiKrum(five(), { f: 1, m: 1 }))).toEqual([1]);
  });

  it('refuses an average that overflows (E_AGG_NONFINITE) instead of returning a partial sum', () => {
    const list = [1e308, 1.5e308, 1.7e308, 1.6e308, 1.4e308].map((v) => ({ model: vec([v]) }));
    expectFlareCode(() => multiKrum(list, { f: 1, m: 3 }), 'E_AGG_NONFINITE');
  });

  it('refuses m > n - f (E_AGG_ASSUMPTION) and m < 1 (RangeError)', () => {
    expectFlareCode(() => multiKrum(five(), { f: 1, m: 5 }), 'E_AGG_ASSUMPTION');
    expect(values(multiKrum(five(), { f: 1, m: 4 }))).toEqual([1.5]);
    expect(() => multiKrum(five(), { f: 1, m: 0 })).toThrow(RangeError);
  });
});

describe('KrumAggregator and MultiKrumAggregator (streaming)', () => {
  it('order contributions by site name, so ties go to the first name whatever the arrival order', () => {
    const run = (order: number[]) => {
      const agg = new KrumAggregator({ f: 1 });
      for (const i of order) agg.accept(vec([[0, 1, 2, 3, 100][i]!]), { from: `site-${'edcba'[i]}` });
      return values(agg.result());
    };
    // Sorted by name: a=100, b=3, c=2, d=1, e=0: the tie between 2 and 1 goes to c (value 2).
    expect(run([0, 1, 2, 3, 4])).toEqual([2]);
    expect(run([4, 2, 0, 3, 1])).toEqual([2]);
  });

  it('refuse too few contributions when aggregating (E_AGG_ASSUMPTION) and weigh Multi-Krum by ctx.weight', () => {
    const k = new KrumAggregator({ f: 2 });
    for (let i = 0; i < 6; i++) k.accept(vec([i]), { from: `s${i}` });
    expectFlareCode(() => k.result(), 'E_AGG_ASSUMPTION');
    const mk = new MultiKrumAggregator({ f: 1, m: 2 });
    [0, 1, 2, 3, 100].forEach((v, i) => mk.accept(vec([v]), { from: `s${i}`, weight: i === 2 ? 3 : 1 }));
    expect(values(mk.result())).toEqual([(1 + 2 * 3) / 4]);
  });
});
