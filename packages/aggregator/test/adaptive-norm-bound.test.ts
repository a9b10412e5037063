import { META, l2norm, manifestOf, type AuditEventInput, type FLModel } from '@flare/core';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  AdaptiveNormBoundAggregator,
  DEFAULT_AGGREGATOR_SPEC,
  FedAvgAggregator,
  createAggregator,
  fedAvg,
  saveAggregatorState,
  type RoundAggregator,
} from '../src/index.js';
import { expectFlareCode } from '@flare/core/testing';
import { boundedDouble, f32, gaussian, rng, sameBits, values, vec } from './fixtures.js';

const DIM = 20;
const steps = (n: number) => ({ [META.NUM_STEPS_CURRENT_ROUND]: n });

/** One round of the model-replacement attack: 3 honest sites step 10% toward 1.0, one site sends +3.0 claiming 1e9 steps. */
function round(agg: RoundAggregator, global: Float32Array, r: number, u: () => number): Float32Array<ArrayBufferLike> {
  agg.beginRound(r);
  for (let s = 0; s < 3; s++) {
    const diff = Array.from(global, (w) => 0.1 * (1 - w) + 0.01 * u());
    agg.accept(f32({ w: diff }, 'diff', steps(10)), { from: `honest-${s}`, round: r });
  }
  agg.accept(f32({ w: Array(DIM).fill(3) }, 'diff', steps(1e9)), { from: 'attacker', round: r });
  const avg = agg.result().params.get('w')!.data as Float32Array;
  return Float32Array.from(global, (w, i) => w + avg[i]!);
}

describe('AdaptiveNormBoundAggregator: the secure default', () => {
  it('a site reporting NUM_STEPS 1e9 with a +3.0 update cannot replace the model (2 rounds, 3 honest sites)', () => {
    const u = gaussian(rng(14));
    let plain: Float32Array<ArrayBufferLike> = new Float32Array(DIM);
    let secure: Float32Array<ArrayBufferLike> = new Float32Array(DIM);
    const plainAgg = createAggregator({ name: 'fedavg' });
    const secureAgg = createAggregator(DEFAULT_AGGREGATOR_SPEC);
    expect(secureAgg).toBeInstanceOf(AdaptiveNormBoundAggregator);
    for (let r = 0; r < 2; r++) {
      plain = round(plainAgg, plain, r, u);
      secure = round(secureAgg, secure, r, u);
    }
    // FedAvg as FLARE does it: the model is the attacker's, 2 x 3.0 (issue 14 item 3).
    expect(Math.min(...plain)).toBeGreaterThan(5.99);
    // The default: the attacker is clipped to 3x the median norm and counted as 3x the median step count,
    // so the model moves at most a few honest steps' worth: nowhere near 6.
    expect(Math.max(...secure)).toBeLessThan(0.5);
    expect(Math.min(...secure)).toBeGreaterThan(0);
  });

  it('leaves honest updates untouched: with no update above 3x the median norm, the result is FedAvg\'s, bit for bit', () => {
    fc.assert(
      fc.property(fc.array(fc.array(fc.float({ min: 1, max: 2, noNaN: true }), { minLength: 5, maxLength: 5 }), { minLength: 1, maxLength: 7 }), fc.array(fc.integer({ min: 1, max: 3 }), { minLength: 7, maxLength: 7 }), (rows, st) => {
        const updates = rows.map((r, i) => ({ model: f32({ w: r }, 'diff', steps(st[i]!)), from: `s${i}` }));
        const agg = createAggregator(DEFAULT_AGGREGATOR_SPEC);
        for (const x of updates) agg.accept(x.model, { from: x.from });
        // norms within [sqrt(5), 2 sqrt(5)] and steps within [1, 3]: nothing is clipped or capped
        expect(sameBits(agg.result(), fedAvg(updates))).toBe(true);
      }),
      { numRuns: 100, seed: 2026120502 },
    );
  });

  it('bounds the result: no aggregate is longer than 3x the lower median update norm (property), whatever the arrival order', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.array(boundedDouble(1e3), { minLength: 3, maxLength: 3 }), fc.integer({ min: 1, max: 1e9 })), { minLength: 1, maxLength: 8 }),
        fc.integer(),
        (rows, seed) => {
          const models = rows.map(([v, s]) => vec(v, 'diff', steps(s)));
          const norms = models.map((m) => l2norm(m)).sort((a, b) => a - b);
          const bound = 3 * norms[(norms.length - 1) >> 1]!;
          const run = (order: number[]) => {
            const agg = createAggregator(DEFAULT_AGGREGATOR_SPEC);
            for (const i of order) agg.accept(models[i]!, { from: `s${i}` });
            return agg.result();
          };
          const forward = run(models.map((_, i) => i));
          const r = rng(seed);
          const shuffled = models.map((_, i) => i).sort(() => r() - 0.5);
          expect(l2norm(forward)).toBeLessThanOrEqual(bound * (1 + 1e-12) + 1e-300);
          expect(sameBits(run(shuffled), forward)).toBe(true);
        },
      ),
      { numRuns: 150, seed: 2026120503 },
    );
  });

  it('after the first round, bounds each update by 3x the previous round\'s median norm, streaming (no copies kept)', () => {
    const events: AuditEventInput[] = [];
    const agg = new AdaptiveNormBoundAggregator(new FedAvgAggregator(), { audit: (e) => void events.push(e) });
    for (const [i, n] of [1, 2, 3].entries()) agg.accept(vec([n]), { from: `s${i}`, round: 0 });
    agg.result(); // medians of round 0: norm 2, no steps
    expect(agg.history).toEqual({ medianNorm: 2, medianSteps: undefined });
    agg.beginRound(1);
    expect(agg.maxNorm).toBe(6);
    agg.accept(vec([5.9]), { from: 's0', round: 1 });
    agg.accept(vec([-100]), { from: 's1', round: 1 });
    expect(values(agg.result())).toEqual([(5.9 - 6) / 2]);
    expect(events.filter((e) => e.action === 'norm_bound').map((e) => e.data)).toEqual([
      { method: 'fedavg', round: 0, bound: 6, clipped: 0, capped: 0, contributions: 3 },
      { method: 'fedavg', round: 1, bound: 6, clipped: 1, capped: 0, contributions: 2 },
    ]);
  });

  it('caps step counts at 3x the median (weight_capped), and not with capSteps: false', () => {
    const events: AuditEventInput[] = [];
    const agg = createAggregator(DEFAULT_AGGREGATOR_SPEC, { audit: (e) => void events.push(e) });
    agg.accept(vec([1], 'diff', steps(10)), { from: 'a' });
    agg.accept(vec([1], 'diff', steps(10)), { from: 'b' });
    agg.accept(vec([-1], 'diff', steps(1e9)), { from: 'c' });
    expect(values(agg.result())).toEqual([(10 + 10 - 30) / 50]); // c counted as 30 steps
    expect(events.filter((e) => e.action === 'weight_capped').map((e) => e.data)).toEqual([{ method: 'fedavg', from: 'c', claimed: 1e9, cap: 30 }]);
    const uncapped = createAggregator({ name: 'fedavg', args: { normBound: { adaptive: { capSteps: false } } } });
    uncapped.accept(vec([1], 'diff', steps(10)), { from: 'a' });
    uncapped.accept(vec([1], 'diff', steps(10)), { from: 'b' });
    uncapped.accept(vec([-1], 'diff', steps(1e9)), { from: 'c' });
    expect(values(uncapped.result())[0]).toBeLessThan(-0.99);
  });

  it('refuses at accept, with the inner aggregator\'s codes, even in the buffered first round', () => {
    const g = f32({ w: [0, 0] }, 'full');
    const agg = createAggregator(DEFAULT_AGGREGATOR_SPEC, { manifest: manifestOf(g) });
    expectFlareCode(() => agg.accept(f32({ w: [1, 2, 3] }), { from: 'wrong-shape' }), 'E_MODEL_MISMATCH');
    expectFlareCode(() => agg.accept(f32({ w: [Number.NaN, 1] }), { from: 'nan' }), 'E_AGG_NONFINITE');
    expectFlareCode(() => agg.accept(vec([1, 1], 'diff'), { from: 'float64' }), 'E_MODEL_MISMATCH');
    expectFlareCode(() => agg.accept(f32({ w: [1, 1] }, 'full'), { from: 'kind' }), 'E_AGG_KIND');
    agg.accept(f32({ w: [1, 1] }), { from: 'honest' });
    expectFlareCode(() => agg.accept(f32({ w: [1, 1] }), { from: 'honest' }), 'E_AGG_DUPLICATE');
    expect(values(agg.result())).toEqual([1, 1]);
  });

  it('keeps its own copy of first-round updates: the caller may reuse its buffers after accept', () => {
    const agg = createAggregator(DEFAULT_AGGREGATOR_SPEC);
    const buffer = f32({ w: [1] });
    agg.accept(buffer, { from: 'a' });
    (buffer.params.get('w')!.data as Float32Array)[0] = 1;
    agg.accept(buffer, { from: 'b' });
    (buffer.params.get('w')!.data as Float32Array)[0] = 1000; // a third site, clipped to 3 at result()
    agg.accept(buffer, { from: 'c' });
    (buffer.params.get('w')!.data as Float32Array).fill(0);
    expect(values(agg.result())).toEqual([Math.fround((1 + 1 + 3) / 3)]);
  });

  it('a retry of the first round forgets the first attempt', () => {
    const agg = createAggregator(DEFAULT_AGGREGATOR_SPEC, { round: 0 });
    agg.accept(vec([1000]), { from: 'a', round: 0 });
    agg.beginRound(0);
    agg.accept(vec([1]), { from: 'a', round: 0 });
    agg.accept(vec([2]), { from: 'b', round: 0 });
    expect(values(agg.result())).toEqual([1.5]);
  });

  it('with initialMaxNorm, the first round streams with that bound', () => {
    const agg = createAggregator({ name: 'fedavg', args: { normBound: { adaptive: { initialMaxNorm: 2 } } } }) as AdaptiveNormBoundAggregator;
    expect(agg.maxNorm).toBe(2);
    agg.accept(vec([1]), { from: 'a' });
    agg.accept(vec([10]), { from: 'b' });
    expect(values(agg.result())).toEqual([1.5]);
  });

  it('bounds full contributions around the round\'s global model, and wraps server optimizers', () => {
    let current: FLModel = vec([0], 'full');
    const agg = createAggregator({ name: 'fedavg', args: { kind: 'full', normBound: 'adaptive' } }, { global: () => current });
    agg.accept(vec([1], 'full'), { from: 'a' });
    agg.accept(vec([1], 'full'), { from: 'b' });
    agg.accept(vec([100], 'full'), { from: 'c' });
    expect(values(agg.result())).toEqual([(1 + 1 + 3) / 3]);
    current = vec([10], 'full');
    agg.reset();
    agg.accept(vec([10.5], 'full'), { from: 'a' });
    agg.accept(vec([-90], 'full'), { from: 'b' }); // 100 away; the bound is 3 x 1
    expect(values(agg.result())).toEqual([(10.5 + 7) / 2]);
    expect(() => createAggregator({ name: 'fedavg', args: { kind: 'full', normBound: 'adaptive' } })).toThrow(TypeError);

    const opt = createAggregator({ name: 'fedavgm', args: { eta: 1, momentum: 0, normBound: 'adaptive' } }, { global: vec([0], 'full') });
    opt.accept(vec([1]), { from: 'a' });
    opt.accept(vec([1]), { from: 'b' });
    opt.accept(vec([1e6]), { from: 'c' });
    expect(values(opt.result())).toEqual([(1 + 1 + 3) / 3]);
  });

  it('refuses bad options (RangeError, TypeError)', () => {
    expect(() => new AdaptiveNormBoundAggregator(new FedAvgAggregator(), { multiple: 0.5 })).toThrow(RangeError);
    expect(() => new AdaptiveNormBoundAggregator(new FedAvgAggregator(), { initialMaxNorm: 0 })).toThrow(RangeError);
    expect(() => new AdaptiveNormBoundAggregator(new FedAvgAggregator({ kind: 'full' }))).toThrow(TypeError);
    expect(() => new AdaptiveNormBoundAggregator(new FedAvgAggregator()).restoreHistory({ medianNorm: -1 })).toThrow(RangeError);
  });

  it('carries its medians across a checkpoint: a resumed job continues bit for bit (with FedAdam)', () => {
    const spec = { name: 'fedadam', args: { eta: 0.05, normBound: 'adaptive' } };
    const u = gaussian(rng(3));
    const rounds = Array.from({ length: 4 }, (_, r) =>
      Array.from({ length: 4 }, (_, s) => f32({ w: Array.from({ length: 6 }, () => u() * (s === 3 ? 50 : 1)) }, 'diff', steps(5 + s + r))),
    );
    const run = (agg: RoundAggregator, from: number, to: number): FLModel => {
      let last: FLModel | undefined;
      for (let r = from; r < to; r++) {
        agg.beginRound(r);
        rounds[r]!.forEach((m, s) => agg.accept(m, { from: `s${s}`, round: r }));
        last = agg.result();
      }
      return last!;
    };
    const initial = f32({ w: [0, 0, 0, 0, 0, 0] }, 'full');
    const straight = run(createAggregator(spec, { global: initial }), 0, 4);

    const first = createAggregator(spec, { global: initial });
    const mid = run(first, 0, 2);
    const state = saveAggregatorState(first)!;
    expect(state).toBeInstanceOf(Uint8Array);
    const resumed = createAggregator(spec, { global: mid, state });
    expect(sameBits(run(resumed, 2, 4), straight)).toBe(true);
  });
});
