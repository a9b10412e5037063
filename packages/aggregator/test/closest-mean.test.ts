import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { closestMean } from '../src/index.js';
import { expectFlareCode } from '@flare/core/testing';
import { f32, values, vec } from './fixtures.js';

describe('closestMean (Bulyan\'s second phase)', () => {
  it('averages, per coordinate, the beta values nearest the reference (hand-computed)', () => {
    const out = closestMean([{ model: vec([1, 0]) }, { model: vec([2, 9]) }, { model: vec([10, 1]) }], vec([0, 0]), { beta: 2 });
    expect(values(out)).toEqual([1.5, 0.5]);
  });

  it('breaks equal distances on both sides towards the smaller value, whatever the order', () => {
    // Reference 1.5: distances 1.5, 0.5, 0.5, 1.5; the third value is 0 or 3: 0 is taken.
    const rows = [0, 1, 2, 3];
    for (const order of [rows, [3, 2, 1, 0], [2, 0, 3, 1]]) {
      expect(values(closestMean(order.map((v) => ({ model: vec([v]) })), vec([1.5]), { beta: 3 }))).toEqual([1]);
    }
  });

  it('Flower serverapp bulyan_test.py test_multiple_layers, test_beta_equals_one, test_invalid_beta_too_large (adap/flower@fdef7afb)', () => {
    // Copied from ../shared/vectors/agg/flower_cases.json: bulyan_n_closest_multiple_layers, _beta_equals_one, _beta_too_large.
    const cands = [
      f32({ l0: [1.1, 2.1], l1: [0.2, 1.2] }),
      f32({ l0: [0.9, 1.9], l1: [-0.1, 0.8] }),
      f32({ l0: [5.0, 5.0], l1: [10.0, 10.0] }),
    ].map((model) => ({ model }));
    const out = closestMean(cands, f32({ l0: [1.0, 2.0], l1: [0.0, 1.0] }), { beta: 2 });
    [1.0, 2.0].forEach((e, i) => expect(values(out, 'l0')[i]).toBeCloseTo(e, 6));
    [0.05, 1.0].forEach((e, i) => expect(values(out, 'l1')[i]).toBeCloseTo(e, 6));
    expect(values(closestMean([1.0, -0.5, 10.0].map((v) => ({ model: vec([v]) })), vec([0]), { beta: 1 }))).toEqual([-0.5]);
    expectFlareCode(() => closestMean([{ model: vec([1]) }, { model: vec([2]) }], vec([1]), { beta: 3 }), 'E_AGG_ASSUMPTION');
  });

  it('property: equals the mean of the beta values first by distance, then by value', () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: -20, max: 20 }), { minLength: 1, maxLength: 12 }),
        fc.integer({ min: -25, max: 25 }),
        fc.nat(),
        (xs, ref, b) => {
          const beta = 1 + (b % xs.length);
          const got = values(closestMean(xs.map((v) => ({ model: vec([v]) })), vec([ref]), { beta }))[0]!;
          const chosen = [...xs].sort((p, q) => Math.abs(p - ref) - Math.abs(q - ref) || p - q).slice(0, beta);
          return got === chosen.reduce((s, v) => s + v, 0) / beta;
        },
      ),
      { numRuns: 500, seed: 3 },
    );
  });

  it('refuses a reference without the tensor or of another shape (E_MODEL_MISMATCH), beta < 1 (RangeError)', () => {
    const cands = [{ model: vec([1]) }, { model: vec([2]) }];
    expectFlareCode(() => closestMean(cands, f32({ other: [0] }), { beta: 1 }), 'E_MODEL_MISMATCH');
    expectFlareCode(() => closestMean(cands, vec([0, 0]), { beta: 1 }), 'E_MODEL_MISMATCH');
    expect(() => closestMean(cands, vec([0]), { beta: 0 })).toThrow(RangeError);
  });
});
