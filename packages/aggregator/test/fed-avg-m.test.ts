import { describe, expect, it } from 'vitest';
import { FedAvgM, ServerOptAggregator } from '../src/index.js';
import { values, vec } from './fixtures.js';

describe('FedAvgM', () => {
  it('m <- beta m + delta; x <- x + eta m (hand-computed: eta 0.5, beta 0.9)', () => {
    const opt = new FedAvgM({ eta: 0.5, momentum: 0.9 });
    let x = vec([1], 'full');
    x = opt.step(x, vec([2]));
    expect(values(x)).toEqual([2]); // m = 2
    x = opt.step(x, vec([-1]));
    expect(values(x)).toEqual([2.4]); // m = 0.9 * 2 - 1 = 0.8
    expect(opt.steps).toBe(2);
  });

  it('with eta 1 and no momentum is plain FedAvg', () => {
    expect(values(new FedAvgM().step(vec([1, 2], 'full'), vec([0.5, -2])))).toEqual([1.5, 0]);
  });

  it('Flower fedavgm_test.py test_aggregate_fit_using_near_one_server_lr_and_no_momentum (adap/flower@fdef7afb)', () => {
    // Copied from ../shared/vectors/agg/flower_cases.json, case fedavgm_lr1_nomomentum (decimal = 5).
    const layer = (v: number[]) => vec(v, 'full');
    const agg = new ServerOptAggregator({ optimizer: new FedAvgM({ eta: 1.000000001, momentum: 0 }), global: layer([0, 0, 0, 0, 0, 0]), kind: 'full' });
    agg.accept(layer([1, 2, 3, 4, 5, 6]), { from: 'c0', weight: 1 });
    agg.accept(layer([29, 23, 19, 17, 13, 11]), { from: 'c1', weight: 2 });
    const want = [19.666666666666668, 16.0, 13.666666666666666, 12.666666666666666, 10.333333333333334, 9.333333333333334];
    values(agg.result()).forEach((v, i) => expect(Math.abs(v - want[i]!)).toBeLessThan(1.5e-5));
  });

  it('refuses momentum outside [0, 1) and a negative learning rate (RangeError)', () => {
    expect(() => new FedAvgM({ momentum: 1 })).toThrow(RangeError);
    expect(() => new FedAvgM({ eta: -1 })).toThrow(RangeError);
    expect(new FedAvgM({ eta: 2, momentum: 0.5 }).hyperparameters).toEqual({ eta: 2, momentum: 0.5 });
  });
});
