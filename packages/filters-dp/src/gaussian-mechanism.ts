import { DpError, type FloatArray } from '@flare/core';
import { discreteGaussianInto, GAUSSIAN_GRID_STEPS } from './discrete-gaussian.js';
import { cryptoRandomSource, WordStream, type DpRandomSource } from './random-source.js';

/** Adds N(0, sigma^2) noise to every value in place (see {@link gaussianMechanism}). */
export type GaussianNoise = (values: FloatArray, sigma: number) => void;

/**
 * The Gaussian mechanism for code that computes its own sums, such as a DP-SGD learner: each value x is replaced
 * by g·K with K drawn from the discrete Gaussian centred at x/g (g = sigma/128), the same construction and the
 * same documented error as gaussian-dp (README, "How the noise is drawn"). Because the output depends on K alone,
 * no low-order bit of x shows through (Mironov 2012), which noise drawn on its own and then added in floating
 * point would not guarantee. Randomness comes from the CSPRNG.
 *
 * Accounting: each noised value counts SAMPLER_EPSILON_PER_COORDINATE into ε and SAMPLER_TV_PER_COORDINATE into
 * δ, as the `dp-sgd` accountant does for the steps a learner reports.
 *
 * @throws DpError E_DP_NON_FINITE when a value is NaN or infinite (its noised version would carry no guarantee).
 * @example
 * ```ts
 * const learner = new TfjsLearner({ ..., dpSgd: { clipNorm: 1, noiseMultiplier: 1.1, samplingRate: 0.02, noise: gaussianMechanism() } });
 * ```
 */
export function gaussianMechanism(random: DpRandomSource = cryptoRandomSource): GaussianNoise {
  const stream = new WordStream(random);
  return (values, sigma) => {
    if (!(typeof sigma === 'number' && sigma > 0 && Number.isFinite(sigma))) throw new RangeError(`"sigma" expected a finite number > 0, got ${sigma}`);
    for (let i = 0; i < values.length; i++) {
      if (!Number.isFinite(values[i]!)) throw new DpError('E_DP_NON_FINITE', `gaussian mechanism: value ${i} is NaN or infinite`);
    }
    const g = sigma / GAUSSIAN_GRID_STEPS;
    discreteGaussianInto(values, 1 / g, g, values, stream);
  };
}
