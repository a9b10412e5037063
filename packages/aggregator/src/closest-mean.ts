import { AggregatorError, ModelError, type FLModel } from '@flare/core';
import type { TensorExclusion } from './exclusion.js';
import { select } from './select.js';
import { numericData, sameShape, shapeText } from './tensors.js';
import { assemble, prepare, BLOCK } from './update-set.js';
import type { WeightedUpdate } from './types.js';

/**
 * Reusable buffers for {@link meanOfClosest} (internal): distances, a copy to select on, ties.
 */
export class ClosestScratch {
  readonly dist: Float64Array;
  readonly work: Float64Array;
  readonly ties: Float64Array;
  constructor(n: number) {
    this.dist = new Float64Array(n);
    this.work = new Float64Array(n);
    this.ties = new Float64Array(n);
  }
}

/**
 * The mean of the `beta` values of values[0..count) closest to `ref` (|v - ref| in float64), summed exactly.
 * Equal distances on both sides of `ref` are broken towards the smaller value, so the result depends only on
 * the multiset of values, never on their order (Flower breaks them by list position). Internal.
 */
export function meanOfClosest(values: Float64Array, count: number, ref: number, beta: number, s: ClosestScratch): number {
  const { dist, work, ties } = s;
  for (let j = 0; j < count; j++) {
    const d = Math.abs(values[j]! - ref);
    dist[j] = d;
    work[j] = d;
  }
  const limit = beta === count ? Number.POSITIVE_INFINITY : select(work, beta - 1, 0, count - 1);
  let hi = 0;
  let lo = 0;
  let taken = 0;
  let tied = 0;
  const add = (v: number) => {
    const t = hi + v;
    const bb = t - hi;
    lo += hi - (t - bb) + (v - bb);
    hi = t;
    taken++;
  };
  for (let j = 0; j < count; j++) {
    const d = dist[j]!;
    if (d < limit) add(values[j]!);
    else if (d === limit) ties[tied++] = values[j]!;
  }
  if (taken < beta) {
    if (limit === 0) {
      // Ties at distance 0 all equal the reference (frozen or sparse coordinates): no sort needed.
      while (taken < beta) add(ref);
    } else {
      const t = ties.subarray(0, tied).sort();
      for (let q = 0; taken < beta; q++) add(t[q]!);
    }
  }
  return (hi + lo) / beta;
}

/** Options of {@link closestMean}. */
export interface ClosestMeanOptions {
  /** How many values closest to the reference to average per coordinate: 1 <= beta <= n. */
  readonly beta: number;
  readonly exclude?: TensorExclusion;
}

/**
 * Bulyan's second phase as a building block (El Mhamdi et al., ICML 2018, Section 4; Flower's
 * `aggregate_n_closest_weights`): per coordinate, the mean of the `beta` contributions' values closest to
 * `reference`'s value. Equal distances on both sides go to the smaller value (order-independent).
 *
 * @throws AggregatorError E_AGG_ASSUMPTION when beta exceeds the number of contributions; ModelError
 *   E_MODEL_MISMATCH when `reference` lacks a tensor or differs in shape.
 */
export function closestMean(updates: readonly WeightedUpdate[], reference: FLModel, opts: ClosestMeanOptions): FLModel {
  const set = prepare(updates, opts.exclude, 'closestMean');
  const { beta } = opts;
  if (typeof beta !== 'number' || !Number.isSafeInteger(beta) || beta < 1) throw new RangeError(`closestMean: "beta" expected a positive integer, got ${String(beta)}`);
  if (beta > set.n) throw new AggregatorError('E_AGG_ASSUMPTION', `closestMean: beta = ${beta} exceeds the ${set.n} contributions`);
  const refs = set.tensors.map((t) => {
    const r = reference.params.get(t.name);
    if (r === undefined) throw new ModelError('E_MODEL_MISMATCH', `closestMean: the reference has no tensor "${t.name}"`);
    if (!sameShape(r.shape, t.shape)) throw new ModelError('E_MODEL_MISMATCH', `closestMean: reference tensor "${t.name}" is ${shapeText(r.shape)}, contributions ${shapeText(t.shape)}`);
    return numericData(t.name, r);
  });
  const scratch = new ClosestScratch(set.n);
  const column = new Float64Array(set.n);
  const rows = new Float64Array(set.n * BLOCK);
  const out = set.tensors.map((t, ti) => {
    const values = new Float64Array(t.length);
    const ref = refs[ti]!;
    for (let b = 0; b < t.length; b += BLOCK) {
      const len = Math.min(BLOCK, t.length - b);
      for (let j = 0; j < set.n; j++) rows.set(t.data[j]!.subarray(b, b + len), j * BLOCK);
      for (let c = 0; c < len; c++) {
        for (let j = 0; j < set.n; j++) column[j] = rows[j * BLOCK + c]!;
        values[b + c] = meanOfClosest(column, set.n, ref[b + c]!, beta, scratch);
      }
    }
    return values;
  });
  return assemble(set, out);
}
