import { AggregatorError, type FLModel } from '@flare/core';
import { checkF } from './assumptions.js';
import { BufferedAggregator, type BufferedOptions } from './buffered.js';
import { exactMean } from './exact-sum.js';
import type { TensorExclusion } from './exclusion.js';
import { select } from './select.js';
import { assemble, forEachCoordinate, prepare } from './update-set.js';
import type { WeightedUpdate } from './types.js';

/** Options of {@link trimmedMean}. */
export interface TrimmedMeanOptions {
  /** Fraction trimmed from each end, 0 <= beta < 0.5: int(beta x n) values are cut per side (Flower default 0.2). */
  readonly beta: number;
  /** Faulty contributions to tolerate: refuses (E_AGG_ASSUMPTION) unless int(beta x n) >= f. */
  readonly f?: number;
  readonly exclude?: TensorExclusion;
}

/** Checks beta and returns the count cut from each end, int(beta x n) as in scipy.stats.trim_mean. */
function trimCount(beta: unknown, n: number, f: number | undefined): number {
  if (typeof beta !== 'number' || !(beta >= 0 && beta < 0.5)) throw new RangeError(`trimmedMean: "beta" expected 0 <= beta < 0.5, got ${String(beta)}`);
  // beta < 0.5 keeps at least one value: 2 int(beta n) < n.
  const cut = Math.floor(beta * n);
  if (f !== undefined && cut < checkF(f, 'trimmedMean')) {
    throw new AggregatorError('E_AGG_ASSUMPTION', `trimmedMean with beta = ${beta} cuts ${cut} of ${n} contributions per side, fewer than f = ${f}`);
  }
  return cut;
}

/**
 * Coordinate-wise trimmed mean (Yin et al., ICML 2018; Flower's FedTrimmedAvg, scipy.stats.trim_mean
 * semantics): per coordinate, drop the int(beta x n) smallest and largest values and average the rest
 * (unweighted; summed exactly, so the order of contributions does not matter).
 *
 * Assumptions: at most int(beta x n) faulty contributions (pass `f` to have that checked); then every
 * averaged value lies between two honest values. Memory: as {@link coordinateMedian}. Time O(n x parameters).
 *
 * @throws AggregatorError E_AGG_ASSUMPTION when the cut is below f; the checks of
 *   {@link coordinateMedian}. RangeError for beta outside [0, 0.5).
 */
export function trimmedMean(updates: readonly WeightedUpdate[], opts: TrimmedMeanOptions): FLModel {
  const set = prepare(updates, opts.exclude, 'trimmedMean');
  const n = set.n;
  const cut = trimCount(opts.beta, n, opts.f);
  return assemble(
    set,
    forEachCoordinate(set, (column) => {
      if (cut > 0) {
        select(column, cut, 0, n - 1);
        select(column, n - cut - 1, cut, n - 1);
      }
      return exactMean(column, cut, n - cut);
    }),
  );
}

/** Options of {@link TrimmedMeanAggregator}. */
export interface TrimmedMeanAggregatorOptions extends BufferedOptions {
  /** Fraction trimmed from each end, 0 <= beta < 0.5. */
  readonly beta: number;
  /** Faulty contributions to tolerate: result() refuses (E_AGG_ASSUMPTION) unless int(beta x n) >= f. */
  readonly f?: number;
}

/** {@link trimmedMean} as a streaming aggregator. Memory: the n contributions plus one float64 result. */
export class TrimmedMeanAggregator extends BufferedAggregator {
  readonly method: string = 'trimmed-mean';
  readonly #beta: number;
  readonly #f: number | undefined;

  constructor(options: TrimmedMeanAggregatorOptions) {
    super(options);
    trimCount(options.beta, 1, undefined);
    this.#beta = options.beta;
    this.#f = options.f === undefined ? undefined : checkF(options.f, 'TrimmedMeanAggregator');
  }

  protected compute(updates: readonly WeightedUpdate[], exclude: TensorExclusion | undefined): FLModel {
    return trimmedMean(updates, { beta: this.#beta, ...(this.#f === undefined ? {} : { f: this.#f }), ...(exclude === undefined ? {} : { exclude }) });
  }
}
