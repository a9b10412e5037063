import { META, model, type AuditEventInput, type FLModel, type Tensor } from '@flare/core';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { FedAvgAggregator, fedAvg } from '../src/index.js';
import { expectFlareCode } from '@flare/core/testing';
import { boundedDouble, f32, gaussian, rng, sameBits, values, vec } from './fixtures.js';

const steps = (n: number) => ({ [META.NUM_STEPS_CURRENT_ROUND]: n });

describe('FedAvgAggregator: FLARE semantics', () => {
  it('weighs each contribution by aggregation weight x NUM_STEPS_CURRENT_ROUND (hand-computed)', () => {
    const agg = new FedAvgAggregator();
    agg.accept(vec([1, 2], 'diff', steps(3)), { from: 'a', weight: 1 }); // weight 3
    agg.accept(vec([5, 6], 'diff', steps(2)), { from: 'b', weight: 0.5 }); // weight 1
    expect(values(agg.result())).toEqual([2, 3]); // (3*[1,2] + [5,6]) / 4
  });

  it('defaults the aggregation weight and the step count to 1', () => {
    expect(values(fedAvg([{ model: vec([1, 10]) }, { model: vec([3, 20]) }]))).toEqual([2, 15]);
  });

  it('takes per-site aggregation weights (FLARE aggregation_weights) when ctx.weight is absent', () => {
    const agg = new FedAvgAggregator({ aggregationWeights: new Map([['a', 3]]) });
    agg.accept(vec([0]), { from: 'a' }); // 3
    agg.accept(vec([4]), { from: 'b' }); // not listed: 1
    agg.accept(vec([8]), { from: 'c', weight: 4 }); // ctx.weight wins
    expect(values(agg.result())).toEqual([(0 * 3 + 4 + 8 * 4) / 8]);
    expect(() => new FedAvgAggregator({ aggregationWeights: { a: 1 } as never })).toThrow(TypeError);
  });

  it('ignores NUM_STEPS_CURRENT_ROUND when useSteps is false', () => {
    const out = fedAvg([{ model: vec([0], 'diff', steps(100)) }, { model: vec([4], 'diff', steps(1)) }], { useSteps: false });
    expect(values(out)).toEqual([2]);
  });

  it('keeps sums and divisors per tensor: a tensor missing from a site is averaged over the sites that sent it', () => {
    const out = fedAvg([
      { model: f32({ a: [2], b: [10] }), weight: 1 },
      { model: f32({ a: [4] }), weight: 3 },
    ]);
    expect(values(out, 'a')).toEqual([3.5]);
    expect(values(out, 'b')).toEqual([10]);
  });

  it('leaves out excluded tensors, by name or regular expression (FLARE exclude_vars)', () => {
    const a = f32({ w: [1], head: [5], 'bn.mean': [7] });
    const b = f32({ w: [3], head: [9], 'bn.mean': [1] });
    const out = fedAvg([{ model: a }, { model: b }], { exclude: ['head', /^bn\./g] });
    expect([...out.params.keys()]).toEqual(['w']);
    expect(values(out)).toEqual([2]);
  });

  it('lists result tensors by name, keeps dtype and shape, and stamps the round', () => {
    const t = (v: number): Tensor => ({ dtype: 'float32', shape: [2, 1], data: Float32Array.of(v, v) });
    const agg = new FedAvgAggregator({ round: 4 });
    agg.accept(model({ z: t(1), a: t(2) }, 'diff'), { from: 's1', round: 4 });
    const out = agg.result();
    expect([...out.params.keys()]).toEqual(['a', 'z']);
    expect(out.params.get('a')).toMatchObject({ dtype: 'float32', shape: [2, 1] });
    expect(out.kind).toBe('diff');
    expect(out.meta[META.CURRENT_ROUND]).toBe(4);
  });

  it('averages integer tensors and rounds half to even; refuses boolean ones (E_MODEL_DTYPE)', () => {
    const ints = (v: number[]): FLModel => model({ n: { dtype: 'int64', shape: [v.length], data: BigInt64Array.from(v.map(BigInt)) } }, 'diff');
    const out = fedAvg([{ model: ints([1, 2, 3]) }, { model: ints([2, 3, 3]) }]);
    expect(Array.from(out.params.get('n')!.data as BigInt64Array)).toEqual([2n, 2n, 3n]); // 1.5 -> 2, 2.5 -> 2, 3
    const bools = model({ b: { dtype: 'bool', shape: [1], data: Uint8Array.of(1) } }, 'diff');
    expectFlareCode(() => fedAvg([{ model: bools }]), 'E_MODEL_DTYPE');
    expect([...fedAvg([{ model: bools }], { exclude: ['b'] }).params.keys()]).toEqual([]);
  });

  it('averages metrics with the same weights and leaves out non-finite ones', () => {
    const a = { ...vec([0]), metrics: { loss: 2, acc: Number.NaN } };
    const b = { ...vec([0]), metrics: { loss: 1, acc: 0.5 } };
    const out = fedAvg([{ model: a, weight: 1 }, { model: b, weight: 3 }]);
    expect(out.metrics).toEqual({ acc: 0.5, loss: 1.25 });
  });

  it('Flower aggregate_test.py test_aggregate and test_weighted_loss_avg_multiple_values (adap/flower@fdef7afb)', () => {
    // Copied from ../shared/vectors/agg/flower_cases.json: fedavg_weighted_identical, weighted_loss_avg_multi.
    const layers = (): FLModel =>
      model(
        new Map<string, Tensor>([
          ['l0', { dtype: 'float64', shape: [2, 3], data: Float64Array.of(1, 2, 3, 4, 5, 6) }],
          ['l1', { dtype: 'float64', shape: [4], data: Float64Array.of(7, 8, 9, 10) }],
        ]),
        'full',
      );
    const out = fedAvg([{ model: layers(), weight: 1 }, { model: layers(), weight: 2 }]);
    expect(sameBits(out, layers())).toBe(true);
    const losses = [[1, 2.0], [2, 1.0], [1, 2.0]] as const;
    const avg = fedAvg(losses.map(([n, loss]) => ({ model: { ...model(new Map()), metrics: { loss } }, weight: n })));
    expect(avg.metrics?.['loss']).toBe(1.5);
  });
});

describe('FedAvgAggregator: refusals', () => {
  it('refuses a contribution for another round (E_AGG_ROUND)', () => {
    const agg = new FedAvgAggregator({ round: 2 });
    expectFlareCode(() => agg.accept(vec([1]), { from: 'a', round: 1 }), 'E_AGG_ROUND');
    expectFlareCode(() => agg.accept(vec([1], 'diff', { [META.CURRENT_ROUND]: 3 }), { from: 'a' }), 'E_AGG_ROUND');
    expectFlareCode(() => agg.accept(vec([1], 'diff', { [META.CURRENT_ROUND]: 1 }), { from: 'a', round: 2 }), 'E_AGG_ROUND');
    expectFlareCode(() => agg.accept(vec([1]), { from: 'a' }), 'E_AGG_ROUND'); // does not say its round
    expectFlareCode(() => agg.accept(vec([1], 'diff', { [META.CURRENT_ROUND]: '2' }), { from: 'a', round: 2 }), 'E_AGG_ROUND');
    agg.accept(vec([1], 'diff', { [META.CURRENT_ROUND]: 2 }), { from: 'a', round: 2 });
    expect(agg.contributors()).toEqual(['a']);
  });

  it('pins the round of the first contribution when none is configured (E_AGG_ROUND for a different one)', () => {
    const agg = new FedAvgAggregator();
    agg.accept(vec([1]), { from: 'a', round: 5 });
    expect(agg.round).toBe(5);
    expectFlareCode(() => agg.accept(vec([1]), { from: 'b', round: 6 }), 'E_AGG_ROUND');
  });

  it('refuses a second contribution from the same site (E_AGG_DUPLICATE)', () => {
    const agg = new FedAvgAggregator();
    agg.accept(vec([1]), { from: 'a' });
    expectFlareCode(() => agg.accept(vec([100]), { from: 'a' }), 'E_AGG_DUPLICATE');
    expect(values(agg.result())).toEqual([1]);
  });

  it('refuses a contribution of the wrong kind (E_AGG_KIND)', () => {
    expectFlareCode(() => new FedAvgAggregator({ kind: 'diff' }).accept(vec([1], 'full'), { from: 'a' }), 'E_AGG_KIND');
    expectFlareCode(() => fedAvg([{ model: vec([1], 'full') }, { model: vec([1], 'diff') }]), 'E_AGG_KIND');
  });

  it('refuses bad weights and step counts (E_AGG_WEIGHT)', () => {
    const agg = new FedAvgAggregator({ maxSteps: 1000 });
    for (const weight of [0, -1, Number.NaN, Number.POSITIVE_INFINITY]) expectFlareCode(() => agg.accept(vec([1]), { from: 'a', weight }), 'E_AGG_WEIGHT');
    for (const n of [0, -5, Number.NaN, Number.POSITIVE_INFINITY]) expectFlareCode(() => agg.accept(vec([1], 'diff', steps(n)), { from: 'a' }), 'E_AGG_WEIGHT');
    expectFlareCode(() => agg.accept(vec([1], 'diff', { [META.NUM_STEPS_CURRENT_ROUND]: '10' }), { from: 'a' }), 'E_AGG_WEIGHT');
    expect(agg.contributors()).toEqual([]);
  });

  it('counts a step count above maxSteps as maxSteps, and reports it (weight_capped)', () => {
    const events: AuditEventInput[] = [];
    const agg = new FedAvgAggregator({ maxSteps: 10, audit: (e) => void events.push(e) });
    agg.accept(vec([0], 'diff', steps(10)), { from: 'honest' });
    agg.accept(vec([3], 'diff', steps(1e9)), { from: 'inflated' });
    expect(values(agg.result())).toEqual([1.5]); // counted as 10 and 10, not 10 and 1e9
    expect(events.filter((e) => e.action === 'weight_capped')).toEqual([
      expect.objectContaining({ data: { method: 'fedavg', from: 'inflated', claimed: 1e9, cap: 10 } }),
    ]);
  });

  it('caps each site at its own step cap (siteMaxSteps, e.g. fixed at admission) on top of maxSteps', () => {
    const declared = new Map([['a', 5], ['b', 100]]);
    const agg = new FedAvgAggregator({ maxSteps: 50, siteMaxSteps: (site) => declared.get(site) });
    agg.accept(vec([0], 'diff', steps(20)), { from: 'a' }); // counted as 5
    agg.accept(vec([11], 'diff', steps(80)), { from: 'b' }); // counted as 50 (maxSteps)
    agg.accept(vec([22], 'diff', steps(5)), { from: 'c' }); // no cap of its own: 5
    expect(values(agg.result())).toEqual([(0 * 5 + 11 * 50 + 22 * 5) / 60]);
    expect(() => new FedAvgAggregator({ siteMaxSteps: 3 as never })).toThrow(TypeError);
    const broken = new FedAvgAggregator({ siteMaxSteps: () => -1 });
    expect(() => broken.accept(vec([1], 'diff', steps(2)), { from: 'a' })).toThrow(RangeError);
  });

  it('refuses NaN and infinite values (E_AGG_NONFINITE) and leaves no trace of the refused contribution', () => {
    const u = gaussian(rng(7));
    const a = f32({ x: Array.from({ length: 300 }, u), y: Array.from({ length: 50 }, u) });
    const b = f32({ x: Array.from({ length: 300 }, u), y: Array.from({ length: 50 }, u) });
    const poisoned = f32({ x: Array.from({ length: 300 }, u), y: Array.from({ length: 50 }, u) });
    (poisoned.params.get('y')!.data as Float32Array)[17] = Number.NaN; // after all of x was added
    const inf = f32({ x: Array.from({ length: 300 }, u), y: [Number.POSITIVE_INFINITY, ...Array.from({ length: 49 }, u)] });

    const clean = new FedAvgAggregator();
    clean.accept(a, { from: 'a', weight: 3 });
    clean.accept(b, { from: 'b', weight: 0.7 });
    const withRefusals = new FedAvgAggregator();
    withRefusals.accept(a, { from: 'a', weight: 3 });
    expectFlareCode(() => withRefusals.accept(poisoned, { from: 'p', weight: 1.3 }), 'E_AGG_NONFINITE');
    expectFlareCode(() => withRefusals.accept(inf, { from: 'q', weight: 2 }), 'E_AGG_NONFINITE');
    withRefusals.accept(b, { from: 'b', weight: 0.7 });
    expect(withRefusals.contributors()).toEqual(['a', 'b']);
    expect(sameBits(withRefusals.result(), clean.result())).toBe(true);
  });

  it('property: a NaN anywhere (unrolled groups or tail, any tensor) is refused and leaves the sums exactly as they were', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 23 }),
        fc.integer({ min: 1, max: 23 }),
        fc.nat(),
        fc.boolean(),
        fc.constantFrom('float32', 'float64'),
        (la, lb, pos, inFirst, dtype) => {
          const g = gaussian(rng(la * 31 + lb));
          const data = (n: number) => {
            const v = Float64Array.from({ length: n }, () => g());
            return dtype === 'float32' ? Float32Array.from(v) : v;
          };
          const mk = () => model({ a: { dtype, shape: [la], data: data(la) }, b: { dtype, shape: [lb], data: data(lb) } }, 'diff');
          const base = mk();
          const bad = mk();
          const t = bad.params.get(inFirst ? 'a' : 'b')!.data as Float32Array | Float64Array;
          t[pos % t.length] = Number.NaN;
          const clean = new FedAvgAggregator();
          clean.accept(base, { from: 'x', weight: 1.7 });
          const tried = new FedAvgAggregator();
          tried.accept(base, { from: 'x', weight: 1.7 });
          expectFlareCode(() => tried.accept(bad, { from: 'y', weight: 0.3 }), 'E_AGG_NONFINITE');
          return sameBits(tried.result(), clean.result());
        },
      ),
      { numRuns: 200, seed: 8 },
    );
  });

  it('refuses values that overflow when weighted (E_AGG_NONFINITE)', () => {
    const big = vec([1e300]);
    expectFlareCode(() => fedAvg([{ model: big, weight: 1e10 }]), 'E_AGG_NONFINITE');
  });

  it('refuses a tensor whose shape or dtype differs from the round\'s (E_MODEL_MISMATCH), before writing anything', () => {
    const agg = new FedAvgAggregator();
    agg.accept(f32({ a: [1, 1], b: [2] }), { from: 's1' });
    expectFlareCode(() => agg.accept(f32({ a: [5, 5], b: [1, 2] }), { from: 's2' }), 'E_MODEL_MISMATCH');
    expect(values(agg.result(), 'a')).toEqual([1, 1]);
  });

  it('with a template, refuses tensors the model does not have or of another shape (E_MODEL_MISMATCH)', () => {
    const agg = new FedAvgAggregator({ template: f32({ a: [0, 0] }) });
    expectFlareCode(() => agg.accept(f32({ a: [1, 1], extra: [1] }), { from: 's1' }), 'E_MODEL_MISMATCH');
    expectFlareCode(() => agg.accept(f32({ a: [1] }), { from: 's1' }), 'E_MODEL_MISMATCH');
    agg.accept(f32({ a: [1, 3] }), { from: 's1' });
    expect(values(agg.result(), 'a')).toEqual([1, 3]);
  });

  it('refuses contributions after result() (E_AGG_LATE) until reset()', () => {
    const agg = new FedAvgAggregator({ round: 0 });
    agg.accept(vec([1]), { from: 'a', round: 0 });
    const first = agg.result();
    expectFlareCode(() => agg.accept(vec([2]), { from: 'b', round: 0 }), 'E_AGG_LATE');
    expect(sameBits(agg.result(), first)).toBe(true);
    agg.reset();
    expect(agg.round).toBe(1);
    agg.accept(vec([2]), { from: 'a', round: 1 });
    expect(values(agg.result())).toEqual([2]);
    agg.reset(7);
    expect(agg.round).toBe(7);
  });

  it('refuses to aggregate nothing (E_AGG_EMPTY)', () => {
    expectFlareCode(() => new FedAvgAggregator().result(), 'E_AGG_EMPTY');
    expectFlareCode(() => fedAvg([]), 'E_AGG_EMPTY');
  });

  it('treats a missing site name as programmer misuse (TypeError)', () => {
    expect(() => new FedAvgAggregator().accept(vec([1]), { from: '' })).toThrow(TypeError);
  });

  it('reports refusals and the aggregation to the audit hook, without model data', () => {
    const events: AuditEventInput[] = [];
    const agg = new FedAvgAggregator({ round: 1, audit: (e) => (events.push(e), undefined) });
    agg.accept(vec([1]), { from: 'a', round: 1 });
    expect(() => agg.accept(vec([1]), { from: 'a', round: 1 })).toThrow();
    agg.result();
    expect(events).toEqual([
      expect.objectContaining({ action: 'contribution_refused', data: { method: 'fedavg', from: 'a', code: 'E_AGG_DUPLICATE' } }),
      expect.objectContaining({ action: 'round_aggregated', data: { method: 'fedavg', round: 1, contributions: 1 } }),
    ]);
  });
});

describe('FedAvgAggregator: exact, order-independent, memory-lean', () => {
  // Values spread over 12 orders of magnitude with cancellations: plain float64 accumulation gives
  // different last bits for different arrival orders on this data (checked below).
  function sites(n: number, size: number, seed: number, dtype: 'float32' | 'float64'): Array<{ from: string; m: FLModel; weight: number }> {
    const u = rng(seed);
    const g = gaussian(u);
    return Array.from({ length: n }, (_, s) => {
      const data = dtype === 'float32' ? new Float32Array(size) : new Float64Array(size);
      for (let i = 0; i < size; i++) data[i] = g() * 10 ** (Math.floor(u() * 12) - 8);
      return { from: `site-${s}`, m: model({ w: { dtype, shape: [size], data } }, 'diff', steps(1 + Math.floor(u() * 50))), weight: 0.1 + u() * 3 };
    });
  }
  function permutation(n: number, u: () => number): number[] {
    const p = Array.from({ length: n }, (_, i) => i);
    for (let i = n - 1; i > 0; i--) {
      const j = Math.floor(u() * (i + 1));
      [p[i], p[j]] = [p[j]!, p[i]!];
    }
    return p;
  }
  function run(list: ReturnType<typeof sites>, order: readonly number[]): FLModel {
    const agg = new FedAvgAggregator();
    for (const i of order) agg.accept(list[i]!.m, { from: list[i]!.from, weight: list[i]!.weight });
    return agg.result();
  }

  for (const dtype of ['float32', 'float64'] as const) {
    it(`gives the same bits for 25 arrival orders of 40 ${dtype} sites`, () => {
      const list = sites(40, 2000, 11, dtype);
      const u = rng(99);
      const reference = run(list, list.map((_, i) => i));
      for (let k = 0; k < 25; k++) expect(sameBits(run(list, permutation(list.length, u)), reference)).toBe(true);
    });
  }

  it('(the data above does separate orders when summed in plain float64: the test can fail)', () => {
    const list = sites(40, 2000, 11, 'float64');
    const naive = (order: readonly number[]) => {
      const acc = new Float64Array(2000);
      for (const i of order) {
        const w = list[i]!.weight * (list[i]!.m.meta[META.NUM_STEPS_CURRENT_ROUND] as number);
        const x = list[i]!.m.params.get('w')!.data as Float64Array;
        for (let j = 0; j < acc.length; j++) acc[j] = acc[j]! + w * x[j]!;
      }
      return acc;
    };
    const a = naive(list.map((_, i) => i));
    const b = naive(permutation(40, rng(3)));
    expect(a.some((v, i) => v !== b[i])).toBe(true);
  });

  it('property: any permutation of float64 contributions within the exact range gives the same bits', () => {
    const arb = fc.array(
      fc.record({
        x: fc.array(boundedDouble(1e18), { minLength: 3, maxLength: 3 }),
        w: fc.double({ min: 1e-3, max: 1e3, noNaN: true }),
      }),
      { minLength: 1, maxLength: 12 },
    );
    fc.assert(
      fc.property(arb, fc.infiniteStream(fc.nat()), (list, stream) => {
        const updates = list.map((e, i) => ({ model: vec(e.x), weight: e.w, from: `s${i}` }));
        const shuffled = updates.map((u) => ({ u, k: stream.next().value as number })).sort((a, b) => a.k - b.k).map((e) => e.u);
        return sameBits(fedAvg(updates), fedAvg(shuffled));
      }),
      { numRuns: 300, seed: 2026120504 },
    );
  });

  it('property: averaging identical float32 updates returns their values exactly, whatever the weights (-0 becomes +0)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.float({ noNaN: true, noDefaultInfinity: true }), { minLength: 1, maxLength: 8 }),
        fc.array(fc.double({ min: 1e-6, max: 1e6, noNaN: true }), { minLength: 1, maxLength: 10 }),
        (x, ws) => {
          const out = values(fedAvg(ws.map((weight) => ({ model: f32({ w: x }), weight }))));
          return out.every((v, i) => v === Math.fround(x[i]!));
        },
      ),
      { numRuns: 300, seed: 6 },
    );
  });

  it('holds one accumulator (16 bytes per parameter) whatever the number of sites', () => {
    const agg = new FedAvgAggregator();
    const list = sites(50, 1000, 4, 'float32');
    agg.accept(list[0]!.m, { from: list[0]!.from });
    const one = agg.accumulatorBytes;
    for (const s of list.slice(1)) agg.accept(s.m, { from: s.from });
    expect(one).toBe(16 * 1000);
    expect(agg.accumulatorBytes).toBe(one);
  });
});
