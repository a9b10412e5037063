import { describe, expect, it } from 'vitest';
import { manifestOf } from '@flare/core';
import {
  AGGREGATOR_NAMES,
  AdaptiveNormBoundAggregator,
  DEFAULT_AGGREGATOR_SPEC,
  BulyanAggregator,
  CoordinateMedianAggregator,
  FedAvgAggregator,
  GeometricMedianAggregator,
  KrumAggregator,
  MultiKrumAggregator,
  NormBoundAggregator,
  ServerOptAggregator,
  TrimmedMeanAggregator,
  createAggregator,
  parseAggregatorSpec,
} from '../src/index.js';
import { FedAdam } from '../src/index.js';
import { expectFlareCode } from '@flare/core/testing';
import { f32, values, vec } from './fixtures.js';

const global = () => f32({ w: [0, 0] }, 'full');

describe('parseAggregatorSpec / AggregatorSpecSchema', () => {
  it('accepts every registered name with valid arguments', () => {
    const specs: unknown[] = [
      { name: 'fedavg' },
      { name: 'fedavg', args: { kind: 'full', exclude: ['bn.running_mean'], excludePattern: 'num_batches_tracked$', useSteps: false, maxSteps: 1000 } },
      { name: 'fedavgm', args: { eta: 1, momentum: 0.9 } },
      { name: 'fedadagrad', args: { eta: 0.1, tau: 1e-3 } },
      { name: 'fedadam', args: { eta: 0.01, beta1: 0.9, beta2: 0.99, biasCorrection: 'flower' } },
      { name: 'fedyogi', args: { eta: 0.01 } },
      { name: 'median', args: { f: 2 } },
      { name: 'trimmed-mean', args: { beta: 0.2 }, serverOptimizer: { name: 'fedadam' } },
      { name: 'krum', args: { f: 1 } },
      { name: 'multi-krum', args: { f: 1, m: 3 } },
      { name: 'bulyan', args: { f: 1, selection: 'multi-krum', normBound: { maxNorm: 10 } } },
      { name: 'geometric-median', args: { maxIterations: 20, tolerance: 1e-8, smoothing: 1e-6 } },
      { name: 'fedavg', args: { normBound: 'adaptive' } },
      { name: 'fedavg', args: { normBound: { adaptive: { multiple: 2, capSteps: false, initialMaxNorm: 5 } } } },
      { name: 'norm-bound', args: 'adaptive', aggregator: { name: 'krum', args: { f: 1 } } },
      { name: 'norm-bound', args: { maxNorm: 3 } },
    ];
    for (const s of specs) expect(parseAggregatorSpec(s)).toEqual(s);
    expect(new Set(specs.map((s) => (s as { name: string }).name))).toEqual(new Set(AGGREGATOR_NAMES));
  });

  it('refuses unknown names, unknown arguments and out-of-range values (E_AGG_SPEC)', () => {
    const bad: unknown[] = [
      { name: 'fedsgd' },
      { name: 'fedavg', args: { kind: 'weights' } },
      { name: 'fedavg', args: { unknown: 1 } },
      { name: 'fedavg', extra: true },
      { name: 'fedadam', args: { beta1: 1 } },
      { name: 'fedavgm', serverOptimizer: { name: 'fedadam' } },
      { name: 'trimmed-mean', args: { beta: 0.5 } },
      { name: 'trimmed-mean' },
      { name: 'krum', args: { f: -1 } },
      { name: 'krum', args: { f: 1.5 } },
      { name: 'multi-krum', args: { f: 1, m: 0 } },
      { name: 'bulyan', args: { f: 1, selection: 'best' } },
      { name: 'median', args: { normBound: { maxNorm: 0 } } },
      { name: 'median', serverOptimizer: { name: 'sgd' } },
      { name: 'fedavg', args: { excludePattern: '(' } },
      { name: 'fedavg', args: { excludePattern: '(a)\\1' } },
      { name: 'fedavg', args: { excludePattern: '(?=x)y' } },
      JSON.parse('{"name": "fedavg", "args": {"aggregationWeights": {"__proto__": 2}}}'),
      JSON.parse('{"name": "fedavg", "args": {"aggregationWeights": {"constructor": 2}}}'),
      { name: 'fedavg', args: { aggregationWeights: { a: -1 } } },
      { name: 'fedavg', args: { aggregationWeights: [1, 2] } },
      { name: 'fedavg', args: { exclude: [''] } },
      { name: 'norm-bound' },
      { name: 'norm-bound', args: 'adaptive', aggregator: { name: 'norm-bound', args: 'adaptive' } },
      { name: 'norm-bound', args: { maxNorm: 1 }, aggregator: { name: 'fedavg', args: { normBound: 'adaptive' } } },
      { name: 'norm-bound', args: 'adaptive', aggregator: { name: 'fedavg', args: { excludePattern: '(' } } },
      { name: 'fedavg', args: { normBound: { adaptive: { multiple: 0.5 } } } },
      { name: 'fedavg', args: { normBound: 'fixed' } },
      { name: 'fedavg', args: { normBound: { maxNorm: 1, adaptive: {} } } },
      'fedavg',
      null,
    ];
    for (const s of bad) expect(() => parseAggregatorSpec(s), JSON.stringify(s)).toThrow(expect.objectContaining({ code: 'E_AGG_SPEC' }));
  });

  it('matches job patterns in linear time: (a+)+$ against a 100,000-character name does not stall (a backtracking engine would)', () => {
    const agg = createAggregator({ name: 'fedavg', args: { excludePattern: '(a+)+$' } });
    const name = `${'a'.repeat(100_000)}!`;
    agg.accept(f32({ [name]: [1], kept: [2], aaa: [5] }), { from: 's' });
    const out = agg.result();
    expect([...out.params.keys()].sort()).toEqual([name, 'kept'].sort());
  });

  it('names the invalid field in the message', () => {
    expect(() => parseAggregatorSpec({ name: 'krum', args: { f: 'two' } })).toThrow(/args\.f/);
  });
});

describe('createAggregator', () => {
  it('builds the streaming aggregator each name stands for', () => {
    expect(createAggregator({ name: 'fedavg' })).toBeInstanceOf(FedAvgAggregator);
    expect(createAggregator({ name: 'median' })).toBeInstanceOf(CoordinateMedianAggregator);
    expect(createAggregator({ name: 'trimmed-mean', args: { beta: 0.1 } })).toBeInstanceOf(TrimmedMeanAggregator);
    expect(createAggregator({ name: 'krum', args: { f: 1 } })).toBeInstanceOf(KrumAggregator);
    expect(createAggregator({ name: 'multi-krum', args: { f: 1, m: 2 } })).toBeInstanceOf(MultiKrumAggregator);
    expect(createAggregator({ name: 'bulyan', args: { f: 1 } })).toBeInstanceOf(BulyanAggregator);
    expect(createAggregator({ name: 'geometric-median' })).toBeInstanceOf(GeometricMedianAggregator);
    expect(createAggregator({ name: 'fedadam' }, { global: global() })).toBeInstanceOf(ServerOptAggregator);
    expect(createAggregator({ name: 'fedavg', args: { normBound: { maxNorm: 1 } } })).toBeInstanceOf(NormBoundAggregator);
    expect(createAggregator({ name: 'norm-bound', args: { maxNorm: 1 } })).toBeInstanceOf(NormBoundAggregator);
    expect(createAggregator(DEFAULT_AGGREGATOR_SPEC)).toBeInstanceOf(AdaptiveNormBoundAggregator);
    const wrapped = createAggregator({ name: 'norm-bound', args: 'adaptive', aggregator: { name: 'krum', args: { f: 1 } } });
    expect(wrapped).toBeInstanceOf(AdaptiveNormBoundAggregator);
    expect((wrapped as AdaptiveNormBoundAggregator).inner).toBeInstanceOf(KrumAggregator);
    expect(wrapped.method).toBe('krum');
  });

  it('with a manifest, a wrong first update cannot become the template: it alone is refused (every name)', () => {
    const g = f32({ w: [0, 0] }, 'full');
    for (const name of AGGREGATOR_NAMES) {
      const spec = name === 'trimmed-mean' ? { name, args: { beta: 0.2 } } : name === 'krum' || name === 'bulyan' ? { name, args: { f: 0 } } : name === 'multi-krum' ? { name, args: { f: 0, m: 1 } } : name === 'norm-bound' ? { name, args: 'adaptive' } : { name };
      const agg = createAggregator(spec, { global: g, manifest: manifestOf(g) });
      expect(() => agg.accept(vec([1, 1]), { from: 'float64-first' }), name).toThrow(expect.objectContaining({ code: 'E_MODEL_MISMATCH' }));
      expect(() => agg.accept(f32({ w: [1, 1], extra: [1] }), { from: 'extra-tensor' }), name).toThrow(expect.objectContaining({ code: 'E_MODEL_MISMATCH' }));
      expect(() => agg.accept(f32({ w: [1, 1, 1] }), { from: 'wrong-shape' }), name).toThrow(expect.objectContaining({ code: 'E_MODEL_MISMATCH' }));
      for (const site of ['a', 'b', 'c']) agg.accept(f32({ w: [1, 1] }), { from: site });
      expect(agg.contributors(), name).toEqual(['a', 'b', 'c']);
      expect(agg.result().params.get('w')!.dtype, name).toBe('float32');
    }
  });

  it('passes a per-site step cap (siteMaxSteps) to the FedAvg family', () => {
    const agg = createAggregator({ name: 'fedavg' }, { siteMaxSteps: (site) => (site === 'a' ? 1 : undefined) });
    agg.accept(vec([0], 'diff', { NUM_STEPS_CURRENT_ROUND: 1e9 }), { from: 'a' });
    agg.accept(vec([3], 'diff', { NUM_STEPS_CURRENT_ROUND: 2 }), { from: 'b' });
    expect(values(agg.result())).toEqual([2]);
  });

  it('passes FLARE aggregation_weights through as a Map', () => {
    const agg = createAggregator(JSON.parse('{"name": "fedavg", "args": {"aggregationWeights": {"site-1": 3, "site-2": 1}}}'));
    agg.accept(vec([0]), { from: 'site-1' });
    agg.accept(vec([4]), { from: 'site-2' });
    expect(values(agg.result())).toEqual([1]);
  });

  it('passes kind, round, exclusions and steps rules through', () => {
    const agg = createAggregator({ name: 'fedavg', args: { kind: 'diff', exclude: ['skip'], excludePattern: '^bn\\.', useSteps: false } }, { round: 4 });
    expect(agg.round).toBe(4);
    expectFlareCode(() => agg.accept(f32({ w: [1] }), { from: 'a', round: 3 }), 'E_AGG_ROUND');
    agg.accept(f32({ w: [1], skip: [5], 'bn.mean': [3] }, 'diff', { NUM_STEPS_CURRENT_ROUND: 9 }), { from: 'a', round: 4 });
    agg.accept(f32({ w: [3] }), { from: 'b', round: 4 });
    const out = agg.result();
    expect([...out.params.keys()]).toEqual(['w']);
    expect(values(out)).toEqual([2]);
  });

  it('builds FedOpt aggregators from the global model and resumes them from a saved state', () => {
    const spec = { name: 'fedadam', args: { eta: 0.5, tau: 0 } };
    const agg = createAggregator(spec, { global: global() }) as ServerOptAggregator;
    agg.accept(f32({ w: [1, -1] }), { from: 'a' });
    const next = agg.result();
    const state = agg.optimizer.saveState();
    const resumed = createAggregator(spec, { global: next, optimizerState: state }) as ServerOptAggregator;
    expect(resumed.optimizer.steps).toBe(1);
    const json = createAggregator(spec, { global: next, optimizerState: agg.optimizer.stateToJSON() }) as ServerOptAggregator;
    expect(json.optimizer.steps).toBe(1);
    expectFlareCode(() => createAggregator({ name: 'fedyogi' }, { global: next, optimizerState: state }), 'E_AGG_STATE');
    expect(() => createAggregator(spec)).toThrow(TypeError);
    expect(resumed.optimizer).toBeInstanceOf(FedAdam);
  });

  it('chains a server optimizer after a robust aggregator', () => {
    const agg = createAggregator({ name: 'median', serverOptimizer: { name: 'fedavgm', args: { eta: 2 } } }, { global: vec([1], 'full') });
    [0.5, 1, 100].forEach((v, i) => agg.accept(vec([v]), { from: `s${i}` }));
    expect(values(agg.result())).toEqual([3]); // 1 + 2 x median(0.5, 1, 100)
    expect(agg.method).toBe('median+fedavgm');
  });

  it('norm-bounds full contributions around the current global model', () => {
    let current = vec([0], 'full');
    const agg = createAggregator({ name: 'fedavg', args: { kind: 'full', normBound: { maxNorm: 1 } } }, { global: () => current });
    agg.accept(vec([5], 'full'), { from: 'a' });
    expect(values(agg.result())).toEqual([1]);
    current = vec([1], 'full');
    agg.reset();
    agg.accept(vec([5], 'full'), { from: 'a' });
    expect(values(agg.result())).toEqual([2]);
    expect(() => createAggregator({ name: 'fedavg', args: { kind: 'full', normBound: { maxNorm: 1 } } })).toThrow(TypeError);
  });
});
