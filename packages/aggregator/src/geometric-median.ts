import type { FLModel } from '@flare/core';
import { checkF, requireAtLeast } from './assumptions.js';
import { BufferedAggregator, type BufferedOptions } from './buffered.js';
import { ExactSum, addScaled } from './exact-sum.js';
import type { TensorExclusion } from './exclusion.js';
import { assemble, overflow, prepare, weightedMeanOf, type UpdateSet } from './update-set.js';
import type { WeightedUpdate } from './types.js';

/** Options of {@link geometricMedian}. */
export interface GeometricMedianOptions {
  /** Upper bound on Weiszfeld iterations (default 100). */
  readonly maxIterations?: number;
  /** Stop when a step moves the estimate by less than this fraction of its norm (default 1e-6). */
  readonly tolerance?: number;
  /** RFA's smoothing nu: distances below it count as nu, so no division by zero (default 1e-6). */
  readonly smoothing?: number;
  /** Faulty contributions to tolerate: refuses (E_AGG_ASSUMPTION) unless n >= 2f + 1. */
  readonly f?: number;
  readonly exclude?: TensorExclusion;
}

/** ||v - x_j|| for every contribution j, over all tensors in order. */
function distances(set: UpdateSet, v: readonly Float64Array[]): Float64Array {
  const out = new Float64Array(set.n);
  for (let j = 0; j < set.n; j++) {
    let s = 0;
    set.tensors.forEach((t, ti) => {
      const x = t.data[j]!;
      const c = v[ti]!;
      for (let i = 0; i < t.length; i++) {
        const d = c[i]! - x[i]!;
        s += d * d;
      }
    });
    out[j] = Math.sqrt(s);
  }
  return out;
}

/** ||a - b||^2 over all tensors (||a||^2 without b). */
function squaredDistance(a: readonly Float64Array[], b?: readonly Float64Array[]): number {
  let s = 0;
  a.forEach((x, ti) => {
    const y = b?.[ti];
    for (let i = 0; i < x.length; i++) {
      const d = y === undefined ? x[i]! : x[i]! - y[i]!;
      s += d * d;
    }
  });
  return s;
}

function weightedObjective(set: UpdateSet, dist: Float64Array): number {
  const s = new ExactSum();
  for (let j = 0; j < set.n; j++) s.add(set.weights[j]! * dist[j]!);
  return s.value;
}

/**
 * Geometric median by RFA's smoothed Weiszfeld algorithm (Pillutla, Kakade & Harchaoui, "Robust aggregation
 * for federated learning", IEEE TSP 2022, Algorithm 2; Weiszfeld 1937): starting from the weighted mean,
 * repeat v <- sum(b_j x_j) / sum(b_j) with b_j = w_j / max(nu, ||v - x_j||), until a step moves v by less
 * than `tolerance` x ||v||, the weighted sum of distances stops decreasing, or `maxIterations` is reached.
 * Weights count. The result's meta records `geometric_median_iterations`.
 * Sums are exact, so the result does not depend on the order of contributions.
 *
 * Assumptions: the faulty contributions carry less than half the total weight (breakdown point 1/2).
 * Memory: the contributions plus four float64 models (the estimate and the next one as exact pairs); time O(iterations x n x parameters).
 */
export function geometricMedian(updates: readonly WeightedUpdate[], opts: GeometricMedianOptions = {}): FLModel {
  const set = prepare(updates, opts.exclude, 'geometricMedian');
  const maxIterations = opts.maxIterations ?? 100;
  const tolerance = opts.tolerance ?? 1e-6;
  const nu = opts.smoothing ?? 1e-6;
  if (!Number.isSafeInteger(maxIterations) || maxIterations < 1) throw new RangeError(`geometricMedian: "maxIterations" expected a positive integer, got ${String(maxIterations)}`);
  if (!(tolerance >= 0 && Number.isFinite(tolerance))) throw new RangeError(`geometricMedian: "tolerance" expected a finite number >= 0, got ${String(tolerance)}`);
  if (!(nu > 0 && Number.isFinite(nu))) throw new RangeError(`geometricMedian: "smoothing" expected a finite number > 0, got ${String(nu)}`);
  if (opts.f !== undefined) requireAtLeast(set.n, 2 * checkF(opts.f, 'geometricMedian') + 1, 'geometricMedian', 'n >= 2f + 1', opts.f);

  const all = Array.from({ length: set.n }, (_, i) => i);
  let v = weightedMeanOf(set, all);
  let dist = distances(set, v);
  let objective = weightedObjective(set, dist);
  const beta = new Float64Array(set.n);
  let iterations = 0;
  for (let it = 0; it < maxIterations; it++) {
    const sum = new ExactSum();
    for (let j = 0; j < set.n; j++) {
      beta[j] = set.weights[j]! / Math.max(nu, dist[j]!);
      sum.add(beta[j]!);
    }
    const total = sum.value;
    const next = set.tensors.map((t) => {
      const hi = new Float64Array(t.length);
      const lo = new Float64Array(t.length);
      for (let j = 0; j < set.n; j++) if (addScaled(hi, lo, t.data[j]!, beta[j]!) >= 0) throw overflow(t.name);
      for (let i = 0; i < t.length; i++) hi[i] = (hi[i]! + lo[i]!) / total;
      return hi;
    });
    const nextDist = distances(set, next);
    const nextObjective = weightedObjective(set, nextDist);
    // Weiszfeld never increases the objective in exact arithmetic; stop at a plateau or on rounding noise.
    if (!(nextObjective < objective)) break;
    const moved = Math.sqrt(squaredDistance(next, v));
    v = next;
    dist = nextDist;
    objective = nextObjective;
    iterations = it + 1;
    if (moved <= tolerance * Math.sqrt(squaredDistance(v))) break;
  }
  const out = assemble(set, v);
  out.meta = { geometric_median_iterations: iterations };
  return out;
}

/** Options of {@link GeometricMedianAggregator}. */
export interface GeometricMedianAggregatorOptions extends BufferedOptions {
  readonly maxIterations?: number;
  readonly tolerance?: number;
  readonly smoothing?: number;
  readonly f?: number;
}

/**
 * {@link geometricMedian} as a streaming aggregator (weights: `ctx.weight`). Memory: the n contributions
 * plus four float64 models.
 */
export class GeometricMedianAggregator extends BufferedAggregator {
  readonly method: string = 'geometric-median';
  readonly #opts: GeometricMedianOptions;

  constructor(options: GeometricMedianAggregatorOptions = {}) {
    super(options);
    const { maxIterations, tolerance, smoothing, f } = options;
    this.#opts = {
      ...(maxIterations === undefined ? {} : { maxIterations }),
      ...(tolerance === undefined ? {} : { tolerance }),
      ...(smoothing === undefined ? {} : { smoothing }),
      ...(f === undefined ? {} : { f: checkF(f, 'GeometricMedianAggregator') }),
    };
  }

  protected compute(updates: readonly WeightedUpdate[], exclude: TensorExclusion | undefined): FLModel {
    return geometricMedian(updates, { ...this.#opts, ...(exclude === undefined ? {} : { exclude }) });
  }
}
