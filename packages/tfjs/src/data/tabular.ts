import { MlError } from '@flare/core';
import type { Dataset } from '../learner.js';

/** What a label means to the learner: a class index (softmax over `classes` outputs) or a number to regress. */
export type LabelTask = 'classification' | 'regression';

/**
 * Rows read from a site's data source: features row-major and one label per row (a class index for
 * classification, the target value for regression). Owned by the site; never sent anywhere.
 */
export interface TabularData {
  /** `n x features`, row-major. */
  readonly x: Float32Array;
  /** One label per row. */
  readonly labels: Float32Array;
  readonly features: number;
  readonly n: number;
  /** Classification: the name of each class index, in the order the indices were given (absent for numeric labels). */
  readonly classes?: readonly string[];
}

/** Largest number of float values a loader allocates for one source (1 GiB of float32). */
export const MAX_DATA_VALUES = 2 ** 28;

/**
 * A seeded uniform generator on [0, 1) (mulberry32): the same seed gives every process the same split.
 * Not for anything secret: DP noise and sampling use node:crypto.
 */
export function seededRandom(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The indices 0..n-1 in a seeded random order (Fisher-Yates over {@link seededRandom}). */
export function seededPermutation(n: number, seed: number): number[] {
  const order = Array.from({ length: n }, (_, i) => i);
  const rand = seededRandom(seed);
  for (let i = order.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  return order;
}

/** The rows of `data` at `rows`, in that order (a copy). */
export function selectRows(data: TabularData, rows: readonly number[]): TabularData {
  const f = data.features;
  const x = new Float32Array(rows.length * f);
  const labels = new Float32Array(rows.length);
  rows.forEach((r, i) => {
    x.set(data.x.subarray(r * f, (r + 1) * f), i * f);
    labels[i] = data.labels[r]!;
  });
  return { x, labels, features: f, n: rows.length, ...(data.classes === undefined ? {} : { classes: data.classes }) };
}

/**
 * Splits rows into training and validation with a seeded shuffle: `round(fraction x n)` rows validate (at least
 * one, and at least one row left to train on).
 *
 * @throws MlError E_ML_DATA_SHAPE when there are too few rows for the split.
 */
export function splitValidation(data: TabularData, fraction: number, seed: number, source = 'the data'): { train: TabularData; validation: TabularData } {
  if (!(fraction > 0 && fraction < 1)) throw new RangeError(`"fraction" expected a number in (0, 1), got ${fraction}`);
  const nVal = Math.max(1, Math.round(fraction * data.n));
  if (nVal >= data.n) throw new MlError('E_ML_DATA_SHAPE', `${source}: ${data.n} rows are too few for a validation split of ${fraction}`);
  const order = seededPermutation(data.n, seed);
  return { validation: selectRows(data, order.slice(0, nVal)), train: selectRows(data, order.slice(nVal)) };
}

/**
 * The learner's view of rows: features as they are, labels one-hot over `classes` outputs (classification) or
 * one column (regression).
 *
 * @throws MlError E_ML_DATA_LABEL when a class index is not an integer in [0, classes); E_ML_DATA_SHAPE for no rows.
 */
export function toDataset(data: TabularData, o: { readonly task: LabelTask; readonly classes?: number }, source = 'the data'): Dataset {
  if (data.n === 0) throw new MlError('E_ML_DATA_SHAPE', `${source} has no rows`);
  if (o.task === 'regression') return { x: data.x, y: data.labels, features: data.features, labelWidth: 1 };
  const k = o.classes ?? 0;
  if (!Number.isInteger(k) || k < 2) throw new RangeError(`"classes" expected an integer >= 2 for classification, got ${o.classes}`);
  const y = new Float32Array(data.n * k);
  for (let i = 0; i < data.n; i++) {
    const c = data.labels[i]!;
    if (!Number.isInteger(c) || c < 0 || c >= k) {
      throw new MlError('E_ML_DATA_LABEL', `${source}: row ${i + 1} has a class index outside 0..${k - 1}: the job's model has ${k} classes`);
    }
    y[i * k + c] = 1;
  }
  return { x: data.x, y, features: data.features, labelWidth: k };
}
