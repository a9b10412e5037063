import type { FLModel } from '@flare/core';
import { checkF, requireAtLeast } from './assumptions.js';
import { BufferedAggregator, type BufferedOptions } from './buffered.js';
import { ClosestScratch, meanOfClosest } from './closest-mean.js';
import type { TensorExclusion } from './exclusion.js';
import { pairwiseSquaredDistances, rankByScore, scoresAmong } from './krum.js';
import { medianOf } from './select.js';
import { BLOCK, assemble, prepare } from './update-set.js';
import type { WeightedUpdate } from './types.js';

/** Options of {@link bulyan}. */
export interface BulyanOptions {
  /** Faulty contributions to tolerate; refuses (E_AGG_ASSUMPTION) unless n >= 4f + 3. */
  readonly f: number;
  /**
   * How the theta = n - 2f contributions are chosen: `'iterative-krum'` (the paper, and Flower's legacy
   * strategy: Krum re-run on the remaining set, theta times; default) or `'multi-krum'` (Flower's current
   * strategy: the theta best Krum scores of one pass).
   */
  readonly selection?: 'iterative-krum' | 'multi-krum';
  readonly exclude?: TensorExclusion;
}

/**
 * Bulyan (El Mhamdi, Guerraoui & Rouault, "The hidden vulnerability of distributed learning in Byzantium",
 * ICML 2018): select theta = n - 2f contributions with Krum, then per coordinate average the
 * beta = theta - 2f selected values closest to the selected values' median (numpy.median). Weights are
 * ignored. Equal Krum scores go to the earliest contribution; equal distances to the median to the smaller
 * value.
 *
 * Assumptions: at most f faulty contributions and n >= 4f + 3 (E_AGG_ASSUMPTION otherwise). Memory: the
 * contributions plus an n x n distance matrix and an n x 1024 scratch block; time O(n^2 x parameters).
 *
 * @example
 * ```ts
 * const robust = bulyan(updates, { f: 1 }); // needs at least 7 updates
 * ```
 */
export function bulyan(updates: readonly WeightedUpdate[], opts: BulyanOptions): FLModel {
  const set = prepare(updates, opts.exclude, 'bulyan');
  const f = checkF(opts.f, 'bulyan');
  const selection = opts.selection ?? 'iterative-krum';
  if (selection !== 'iterative-krum' && selection !== 'multi-krum') throw new RangeError(`bulyan: unknown "selection" ${String(selection)}`);
  const { n } = set;
  requireAtLeast(n, 4 * f + 3, 'bulyan', 'n >= 4f + 3', f);
  const theta = n - 2 * f;
  const beta = theta - 2 * f;
  const dist = pairwiseSquaredDistances(set);
  let chosen: number[];
  if (selection === 'multi-krum') {
    const all = Array.from({ length: n }, (_, i) => i);
    chosen = rankByScore(scoresAmong(dist, n, all, f)).slice(0, theta);
  } else {
    const remaining = Array.from({ length: n }, (_, i) => i);
    chosen = [];
    while (chosen.length < theta) {
      const best = rankByScore(scoresAmong(dist, n, remaining, f))[0]!;
      chosen.push(remaining[best]!);
      remaining.splice(best, 1);
    }
  }
  chosen.sort((a, b) => a - b);
  const scratch = new ClosestScratch(theta);
  const column = new Float64Array(theta);
  const sorted = new Float64Array(theta);
  const rows = new Float64Array(theta * BLOCK);
  const out = set.tensors.map((t) => {
    const values = new Float64Array(t.length);
    for (let b = 0; b < t.length; b += BLOCK) {
      const len = Math.min(BLOCK, t.length - b);
      chosen.forEach((j, r) => rows.set(t.data[j]!.subarray(b, b + len), r * BLOCK));
      for (let c = 0; c < len; c++) {
        for (let r = 0; r < theta; r++) column[r] = rows[r * BLOCK + c]!;
        sorted.set(column);
        values[b + c] = meanOfClosest(column, theta, medianOf(sorted), beta, scratch);
      }
    }
    return values;
  });
  return assemble(set, out);
}

/** Options of {@link BulyanAggregator}. */
export interface BulyanAggregatorOptions extends BufferedOptions {
  /** Faulty contributions to tolerate; result() refuses (E_AGG_ASSUMPTION) unless n >= 4f + 3. */
  readonly f: number;
  readonly selection?: BulyanOptions['selection'];
}

/** {@link bulyan} as a streaming aggregator. Memory: the n contributions plus an n x n matrix. */
export class BulyanAggregator extends BufferedAggregator {
  readonly method: string = 'bulyan';
  readonly #f: number;
  readonly #selection: BulyanOptions['selection'];

  constructor(options: BulyanAggregatorOptions) {
    super(options);
    this.#f = checkF(options.f, 'BulyanAggregator');
    this.#selection = options.selection;
  }

  protected compute(updates: readonly WeightedUpdate[], exclude: TensorExclusion | undefined): FLModel {
    return bulyan(updates, {
      f: this.#f,
      ...(this.#selection === undefined ? {} : { selection: this.#selection }),
      ...(exclude === undefined ? {} : { exclude }),
    });
  }
}
