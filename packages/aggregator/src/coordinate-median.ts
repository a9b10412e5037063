import type { FLModel } from '@flare/core';
import { checkF, requireAtLeast } from './assumptions.js';
import { BufferedAggregator, type BufferedOptions } from './buffered.js';
import type { TensorExclusion } from './exclusion.js';
import { medianOf } from './select.js';
import { assemble, forEachCoordinate, prepare } from './update-set.js';
import type { WeightedUpdate } from './types.js';

/** Options of {@link coordinateMedian}. */
export interface CoordinateMedianOptions {
  /** Faulty contributions to tolerate: refuses (E_AGG_ASSUMPTION) unless n >= 2f + 1. */
  readonly f?: number;
  readonly exclude?: TensorExclusion;
}

/**
 * Coordinate-wise median (Yin et al., "Byzantine-robust distributed learning: towards optimal statistical
 * rates", ICML 2018; Flower's FedMedian): each coordinate of the result is the median of that coordinate
 * over the contributions (numpy.median: the mean of the two middle values for an even count). Weights are
 * ignored, as in Flower.
 *
 * Assumptions: fewer than half the contributions are faulty (f < n/2); then every coordinate of the result
 * lies between two honest values. Memory: the contributions (held by the caller) plus one float64 result
 * and an n x 1024 scratch block. Time O(n x parameters).
 *
 * @throws AggregatorError E_AGG_EMPTY, E_AGG_KIND, E_AGG_DUPLICATE, E_AGG_WEIGHT, E_AGG_NONFINITE,
 *   E_AGG_ASSUMPTION; ModelError E_MODEL_MISMATCH when tensors differ between contributions.
 * @example
 * ```ts
 * const robust = coordinateMedian(updates.map((model) => ({ model })));
 * ```
 */
export function coordinateMedian(updates: readonly WeightedUpdate[], opts: CoordinateMedianOptions = {}): FLModel {
  const set = prepare(updates, opts.exclude, 'coordinateMedian');
  if (opts.f !== undefined) requireAtLeast(set.n, 2 * checkF(opts.f, 'coordinateMedian') + 1, 'coordinateMedian', 'n >= 2f + 1', opts.f);
  return assemble(set, forEachCoordinate(set, (column) => medianOf(column)));
}

/** Options of {@link CoordinateMedianAggregator}. */
export interface CoordinateMedianAggregatorOptions extends BufferedOptions {
  /** Faulty contributions to tolerate: result() refuses (E_AGG_ASSUMPTION) unless n >= 2f + 1. */
  readonly f?: number;
}

/**
 * {@link coordinateMedian} as a streaming aggregator (contributions kept until `result()`; see
 * BufferedOptions for the admission rules). Memory: the n contributions plus one float64 result.
 */
export class CoordinateMedianAggregator extends BufferedAggregator {
  readonly method: string = 'median';
  readonly #f: number | undefined;

  constructor(options: CoordinateMedianAggregatorOptions = {}) {
    super(options);
    this.#f = options.f === undefined ? undefined : checkF(options.f, 'CoordinateMedianAggregator');
  }

  protected compute(updates: readonly WeightedUpdate[], exclude: TensorExclusion | undefined): FLModel {
    return coordinateMedian(updates, { ...(this.#f === undefined ? {} : { f: this.#f }), ...(exclude === undefined ? {} : { exclude }) });
  }
}
