import type { FLModel } from '@flare/core';
import { checkF, requireAtLeast } from './assumptions.js';
import { BufferedAggregator, type BufferedOptions } from './buffered.js';
import type { TensorExclusion } from './exclusion.js';
import { BLOCK, assemble, prepare, weightedMeanOf, type UpdateSet } from './update-set.js';
import type { WeightedUpdate } from './types.js';

/** Options of {@link krum}. */
export interface KrumOptions {
  /** Faulty contributions to tolerate; refuses (E_AGG_ASSUMPTION) unless n >= 2f + 3. */
  readonly f: number;
  readonly exclude?: TensorExclusion;
}

/** Options of {@link multiKrum}. */
export interface MultiKrumOptions extends KrumOptions {
  /** How many of the best-scored contributions to average: 1 <= m <= n - f. */
  readonly m: number;
}

/**
 * Squared L2 distances between every pair of contributions over all their (non-excluded) tensors, as an
 * n x n row-major matrix. O(n^2 x parameters) time; each pair is summed in coordinate order, so a pair's
 * distance does not depend on the order of the list (internal).
 */
export function pairwiseSquaredDistances(set: UpdateSet): Float64Array {
  const { n } = set;
  const dist = new Float64Array(n * n);
  const rows = new Float64Array(n * BLOCK);
  for (const t of set.tensors) {
    for (let b = 0; b < t.length; b += BLOCK) {
      const len = Math.min(BLOCK, t.length - b);
      for (let j = 0; j < n; j++) rows.set(t.data[j]!.subarray(b, b + len), j * BLOCK);
      for (let i = 0; i < n; i++) {
        const oi = i * BLOCK;
        for (let j = i + 1; j < n; j++) {
          const oj = j * BLOCK;
          // Four partial sums break the add-latency chain (about 3x faster here); the order of additions
          // is fixed, so every pair's distance is still the same bits whatever the order of the list.
          let s0 = 0;
          let s1 = 0;
          let s2 = 0;
          let s3 = 0;
          let c = 0;
          for (; c + 3 < len; c += 4) {
            const d0 = rows[oi + c]! - rows[oj + c]!;
            const d1 = rows[oi + c + 1]! - rows[oj + c + 1]!;
            const d2 = rows[oi + c + 2]! - rows[oj + c + 2]!;
            const d3 = rows[oi + c + 3]! - rows[oj + c + 3]!;
            s0 += d0 * d0;
            s1 += d1 * d1;
            s2 += d2 * d2;
            s3 += d3 * d3;
          }
          for (; c < len; c++) {
            const d = rows[oi + c]! - rows[oj + c]!;
            s0 += d * d;
          }
          dist[i * n + j] = dist[i * n + j]! + (s0 + s1 + (s2 + s3));
        }
      }
    }
  }
  for (let i = 0; i < n; i++) for (let j = i + 1; j < n; j++) dist[j * n + i] = dist[i * n + j]!;
  return dist;
}

/**
 * Krum scores of the contributions `among` (indices into the distance matrix): each one's sum of squared
 * distances to its k = max(1, r - f - 2) nearest others, r = among.length (Blanchard et al., NeurIPS 2017,
 * Section 4; the max(1, ...) clamp is Flower's). Internal.
 */
export function scoresAmong(dist: Float64Array, n: number, among: readonly number[], f: number): Float64Array {
  const r = among.length;
  const k = Math.min(Math.max(1, r - f - 2), r - 1);
  const scores = new Float64Array(r);
  const others = new Float64Array(Math.max(0, r - 1));
  among.forEach((i, a) => {
    let o = 0;
    for (const j of among) if (j !== i) others[o++] = dist[i * n + j]!;
    others.sort();
    let s = 0;
    for (let q = 0; q < k; q++) s += others[q]!;
    scores[a] = s;
  });
  return scores;
}

/** Positions 0..scores.length-1 ordered by score, ties by position (lowest first, as numpy's stable argsort). */
export function rankByScore(scores: Float64Array): number[] {
  return Array.from(scores.keys()).sort((a, b) => scores[a]! - scores[b]! || a - b);
}

/**
 * Krum scores of every contribution (Blanchard et al. 2017; Flower's conventions): the sum of squared L2
 * distances, over all tensors concatenated, to its k = max(1, n - f - 2) nearest other contributions.
 * Lower is more central. This helper does not check n >= 2f + 3 (it exists to inspect and compare
 * selections); {@link krum} and {@link multiKrum} do.
 */
export function krumScores(updates: readonly WeightedUpdate[], opts: KrumOptions): Float64Array {
  const set = prepare(updates, opts.exclude, 'krumScores');
  const f = checkF(opts.f, 'krumScores');
  const all = Array.from({ length: set.n }, (_, i) => i);
  return scoresAmong(pairwiseSquaredDistances(set), set.n, all, f);
}

/**
 * Krum (Blanchard et al., "Machine learning with adversaries: Byzantine tolerant gradient descent",
 * NeurIPS 2017): returns (a copy of) the contribution with the lowest Krum score; ties go to the earliest
 * in the list. Weights are ignored.
 *
 * Assumptions: at most f faulty contributions and n >= 2f + 3 (refused otherwise, E_AGG_ASSUMPTION).
 * Memory: the contributions plus an n x n distance matrix and an n x 1024 scratch block; time
 * O(n^2 x parameters).
 *
 * @example
 * ```ts
 * const chosen = krum(updates, { f: 2 }); // needs at least 7 updates
 * ```
 */
export function krum(updates: readonly WeightedUpdate[], opts: KrumOptions): FLModel {
  return multiKrum(updates, { ...opts, m: 1 });
}

/**
 * Multi-Krum (El Mhamdi et al., ICML 2018; Flower's MultiKrum): the m contributions with the lowest Krum
 * scores (ties to the earliest), averaged with their weights (summed exactly). m = 1 is {@link krum}.
 *
 * Assumptions: n >= 2f + 3 and 1 <= m <= n - f (E_AGG_ASSUMPTION otherwise). Memory and time as Krum.
 */
export function multiKrum(updates: readonly WeightedUpdate[], opts: MultiKrumOptions): FLModel {
  const set = prepare(updates, opts.exclude, 'multiKrum');
  const f = checkF(opts.f, 'multiKrum');
  const { m } = opts;
  if (typeof m !== 'number' || !Number.isSafeInteger(m) || m < 1) throw new RangeError(`multiKrum: "m" expected a positive integer, got ${String(m)}`);
  requireAtLeast(set.n, 2 * f + 3, m === 1 ? 'krum' : 'multiKrum', 'n >= 2f + 3', f);
  requireAtLeast(set.n, m + f, 'multiKrum', `n >= m + f with m = ${m}: n`, f);
  const all = Array.from({ length: set.n }, (_, i) => i);
  const scores = scoresAmong(pairwiseSquaredDistances(set), set.n, all, f);
  const chosen = rankByScore(scores).slice(0, m);
  return assemble(set, weightedMeanOf(set, chosen));
}

/** Options of {@link KrumAggregator}. */
export interface KrumAggregatorOptions extends BufferedOptions {
  /** Faulty contributions to tolerate; result() refuses (E_AGG_ASSUMPTION) unless n >= 2f + 3. */
  readonly f: number;
}

/** Options of {@link MultiKrumAggregator}. */
export interface MultiKrumAggregatorOptions extends KrumAggregatorOptions {
  /** How many best-scored contributions to average (1 <= m <= n - f). */
  readonly m: number;
}

/**
 * {@link krum} as a streaming aggregator; contributions are ordered by site name, so equal scores go to
 * the first name. Memory: the n contributions plus an n x n matrix.
 */
export class KrumAggregator extends BufferedAggregator {
  readonly method: string = 'krum';
  readonly #f: number;

  constructor(options: KrumAggregatorOptions) {
    super(options);
    this.#f = checkF(options.f, 'KrumAggregator');
  }

  protected compute(updates: readonly WeightedUpdate[], exclude: TensorExclusion | undefined): FLModel {
    return krum(updates, { f: this.#f, ...(exclude === undefined ? {} : { exclude }) });
  }
}

/** {@link multiKrum} as a streaming aggregator (weights: `ctx.weight`). Memory as {@link KrumAggregator}. */
export class MultiKrumAggregator extends BufferedAggregator {
  readonly method: string = 'multi-krum';
  readonly #f: number;
  readonly #m: number;

  constructor(options: MultiKrumAggregatorOptions) {
    super(options);
    this.#f = checkF(options.f, 'MultiKrumAggregator');
    if (!Number.isSafeInteger(options.m) || options.m < 1) throw new RangeError(`MultiKrumAggregator: "m" expected a positive integer, got ${String(options.m)}`);
    this.#m = options.m;
  }

  protected compute(updates: readonly WeightedUpdate[], exclude: TensorExclusion | undefined): FLModel {
    return multiKrum(updates, { f: this.#f, m: this.#m, ...(exclude === undefined ? {} : { exclude }) });
  }
}
