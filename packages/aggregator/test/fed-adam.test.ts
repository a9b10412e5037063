import { describe, expect, it } from 'vitest';
import { FedAdam } from '../src/index.js';
import { values, vec } from './fixtures.js';

const one = (bias: 'none' | 'adam' | 'flower') => values(new FedAdam({ eta: 1, beta1: 0.5, beta2: 0.5, tau: 0, biasCorrection: bias }).step(vec([0], 'full'), vec([2])))[0]!;

describe('FedAdam', () => {
  it('m <- b1 m + (1 - b1) d; v <- b2 v + (1 - b2) d^2; x <- x + eta m / (sqrt(v) + tau) (hand-computed)', () => {
    // m = 1, v = 2: x = 1 / sqrt(2) without bias correction (Reddi et al., Algorithm 2).
    expect(one('none')).toBe(1 / Math.sqrt(2));
  });

  it('bias-corrects like Adam (exponent t) or like Flower (exponent t + 1) when asked', () => {
    // adam: eta sqrt(1 - 0.5) / (1 - 0.5) = sqrt(2), so x = 1; flower: eta sqrt(0.75) / 0.75, x = sqrt(2/3).
    expect(one('adam')).toBeCloseTo(1, 15);
    expect(one('flower')).toBeCloseTo(Math.sqrt(2 / 3), 15);
  });

  it('derived Flower FedAdam two rounds (vectors/agg derived_fedadam_two_rounds, Flower semantics)', () => {
    // Copied from ../shared/vectors/agg/flower_cases.json: eta 0.1, b1 0.9, b2 0.99, tau 1e-3, FedAvg result 1.0 each round.
    const adam = new FedAdam({ eta: 0.1, beta1: 0.9, beta2: 0.99, tau: 0.001, biasCorrection: 'flower' });
    let x = vec([0], 'full');
    const got: number[] = [];
    for (let r = 0; r < 2; r++) {
      x = adam.step(x, vec([1 - values(x)[0]!]));
      got.push(values(x)[0]!);
    }
    expect(got[0]).toBeCloseTo(0.07351087013895721, 12);
    expect(got[1]).toBeCloseTo(0.1583223724147775, 12);
  });

  it('defaults to Flower\'s hyperparameters (eta 0.1, b1 0.9, b2 0.99, tau 1e-3) without bias correction', () => {
    expect(new FedAdam().hyperparameters).toEqual({ eta: 0.1, beta1: 0.9, beta2: 0.99, tau: 0.001, initialAccumulator: 0, biasCorrection: 'none' });
    expect(() => new FedAdam({ biasCorrection: 'other' as never })).toThrow(RangeError);
    expect(() => new FedAdam({ beta2: 1 })).toThrow(RangeError);
  });
});
