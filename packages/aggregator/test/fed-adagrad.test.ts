import { describe, expect, it } from 'vitest';
import { FedAdagrad, ServerOptAggregator } from '../src/index.js';
import { values, vec } from './fixtures.js';

describe('FedAdagrad', () => {
  it('v <- v + delta^2; x <- x + eta m / (sqrt(v) + tau) (hand-computed: eta 1, tau 0, beta1 0)', () => {
    const opt = new FedAdagrad({ eta: 1, tau: 0 });
    let x = vec([10], 'full');
    x = opt.step(x, vec([3])); // v = 9: + 3 / 3
    expect(values(x)).toEqual([11]);
    x = opt.step(x, vec([4])); // v = 25: + 4 / 5
    expect(values(x)).toEqual([11.8]);
  });

  it('keeps a first moment when beta1 > 0 and starts v at initialAccumulator', () => {
    const opt = new FedAdagrad({ eta: 1, tau: 0, beta1: 0.5, initialAccumulator: 16 });
    // m = 0.5 * 0 + 0.5 * 3 = 1.5; v = 16 + 9 = 25; x = 0 + 1.5 / 5.
    expect(values(opt.step(vec([0], 'full'), vec([3])))).toEqual([0.3]);
  });

  it('Flower fedadagrad_test.py test_aggregate_fit (adap/flower@fdef7afb): 0.1 -> 0.15', () => {
    // Copied from ../shared/vectors/agg/flower_cases.json, case fedadagrad_one_round (eta 0.1, tau 0.5).
    const agg = new ServerOptAggregator({ optimizer: new FedAdagrad({ eta: 0.1, tau: 0.5 }), global: vec([0.1, 0.1, 0.1, 0.1], 'full'), kind: 'full' });
    agg.accept(vec([0.2, 0.2, 0.2, 0.2], 'full'), { from: 'c0', weight: 5 });
    agg.accept(vec([1.0, 1.0, 1.0, 1.0], 'full'), { from: 'c1', weight: 5 });
    for (const v of values(agg.result())) expect(v).toBeCloseTo(0.15, 7);
  });

  it('refuses out-of-range hyperparameters (RangeError)', () => {
    expect(() => new FedAdagrad({ beta1: 1 })).toThrow(RangeError);
    expect(() => new FedAdagrad({ tau: -1 })).toThrow(RangeError);
    expect(() => new FedAdagrad({ eta: Number.NaN })).toThrow(RangeError);
  });
});
