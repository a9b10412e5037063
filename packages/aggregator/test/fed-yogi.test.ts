import { describe, expect, it } from 'vitest';
import { FedYogi } from '../src/index.js';
import { values, vec } from './fixtures.js';

describe('FedYogi', () => {
  it('v <- v - (1 - b2) d^2 sign(v - d^2) (hand-computed: b1 0, b2 0.5, eta 1, tau 0)', () => {
    const opt = new FedYogi({ eta: 1, beta1: 0, beta2: 0.5, tau: 0 });
    let x = vec([0], 'full');
    x = opt.step(x, vec([2])); // v = 0 - 0.5 * 4 * sign(-4) = 2; x = 2 / sqrt(2)
    expect(values(x)).toEqual([2 / Math.sqrt(2)]);
    x = opt.step(x, vec([1])); // v = 2 - 0.5 * 1 * sign(1) = 1.5; x += 1 / sqrt(1.5)
    expect(values(x)).toEqual([2 / Math.sqrt(2) + 1 / Math.sqrt(1.5)]);
  });

  it('derived Flower FedYogi two rounds (vectors/agg derived_fedyogi_two_rounds)', () => {
    // Copied from ../shared/vectors/agg/flower_cases.json: eta 0.01, b1 0.9, b2 0.99, tau 1e-3, FedAvg result 1.0.
    const yogi = new FedYogi({ eta: 0.01, beta1: 0.9, beta2: 0.99, tau: 0.001 });
    let x = vec([0], 'full');
    x = yogi.step(x, vec([1]));
    expect(values(x)[0]).toBeCloseTo(0.009900990099009894, 12);
    x = yogi.step(x, vec([1 - values(x)[0]!]));
    expect(values(x)[0]).toBeCloseTo(0.023237562961602457, 12);
  });

  it('refuses out-of-range hyperparameters (RangeError)', () => {
    expect(() => new FedYogi({ beta2: -0.1 })).toThrow(RangeError);
    expect(new FedYogi().hyperparameters).toEqual({ eta: 0.01, beta1: 0.9, beta2: 0.99, tau: 0.001, initialAccumulator: 0 });
  });
});
