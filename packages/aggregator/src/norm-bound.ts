import { AggregatorError, ModelError, type AcceptContext, type FLModel, type FloatArray, type Tensor } from '@flare/core';
import { excluder, type TensorExclusion } from './exclusion.js';
import { checkSize, sameShape, shapeText } from './tensors.js';
import type { RoundAggregator } from './types.js';
import { WrappingAggregator } from './wrapper.js';

/** Options of {@link normBound}. */
export interface NormBoundOptions {
  /** The largest L2 norm an update may have (over all its float tensors, concatenated). */
  readonly maxNorm: number;
  /**
   * The global model the update was trained from; required for `'full'` updates, whose update is
   * `model - reference` (Flower's `compute_clip_model_update`). Ignored for `'diff'` updates.
   */
  readonly reference?: FLModel;
  /** Tensors neither counted in the norm nor scaled. */
  readonly exclude?: TensorExclusion;
}

function isFloat(t: Tensor): t is Tensor & { data: FloatArray } {
  return t.data instanceof Float32Array || t.data instanceof Float64Array;
}

/**
 * Norm bounding, server side (Sun et al., "Can you really backdoor federated learning?", 2019): scales an
 * update so that its L2 norm over all float tensors is at most `maxNorm`: u <- u x min(1, maxNorm / ||u||).
 * For a `'full'` model the update is `model - reference` and the result is `reference + clipped update`.
 * Integer and excluded tensors are left as they are.
 *
 * Does not modify its input: returns the input itself when it is within the bound, else a new model whose
 * unscaled tensors are shared with the input. The norm is accumulated in float64.
 *
 * @throws AggregatorError E_AGG_NONFINITE when the norm is not finite; ModelError E_MODEL_MISMATCH when the
 *   reference lacks a tensor or differs in shape; TypeError for a `'full'` model without a reference.
 * @example
 * ```ts
 * const safe = normBound(update, { maxNorm: 5 }); // a 'diff' update
 * ```
 */
export function normBound(update: FLModel, opts: NormBoundOptions): FLModel {
  const { maxNorm } = opts;
  if (typeof maxNorm !== 'number' || !(maxNorm > 0) || !Number.isFinite(maxNorm)) {
    throw new RangeError(`normBound: "maxNorm" expected a finite number > 0, got ${String(maxNorm)}`);
  }
  const measured = measureUpdate(update, opts.reference, excluder(opts.exclude));
  return clipUpdate(update, measured, maxNorm);
}

/** An update's L2 norm and the float tensors it was taken over (internal: measured once, clipped later). */
export interface MeasuredUpdate {
  readonly norm: number;
  readonly tensors: ReadonlyArray<readonly [string, FloatArray, FloatArray | undefined]>;
}

/**
 * The L2 norm of an update over its non-excluded float tensors, in float64 (for a `'full'` model, of
 * `model - reference`).
 *
 * @throws AggregatorError E_AGG_NONFINITE for a non-finite norm; ModelError E_MODEL_MISMATCH when the
 *   reference lacks a tensor or differs in shape; TypeError for a `'full'` model without a reference.
 */
export function measureUpdate(update: FLModel, reference: FLModel | undefined, excluded: (name: string) => boolean): MeasuredUpdate {
  const full = update.kind === 'full';
  if (full && reference === undefined) throw new TypeError('normBound: a full model needs the global model as "reference"');
  if (!(update.params instanceof Map)) throw new TypeError('"update.params" expected a Map of tensors');
  const tensors: Array<[string, FloatArray, FloatArray | undefined]> = [];
  let sum = 0;
  for (const [name, t] of update.params) {
    if (excluded(name) || !isFloat(t)) continue;
    checkSize(name, t);
    let ref: FloatArray | undefined;
    if (full) {
      const r = reference!.params.get(name);
      if (r === undefined || !isFloat(r)) throw new ModelError('E_MODEL_MISMATCH', `normBound: the reference has no float tensor "${name}"`);
      if (!sameShape(r.shape, t.shape) || r.data.length !== t.data.length) {
        throw new ModelError('E_MODEL_MISMATCH', `normBound: tensor "${name}" is ${shapeText(t.shape)}, the reference's ${shapeText(r.shape)}`);
      }
      ref = r.data;
    }
    const x = t.data;
    if (ref === undefined) {
      for (let i = 0; i < x.length; i++) sum += x[i]! * x[i]!;
    } else {
      for (let i = 0; i < x.length; i++) {
        const d = x[i]! - ref[i]!;
        sum += d * d;
      }
    }
    tensors.push([name, x, ref]);
  }
  const norm = Math.sqrt(sum);
  if (!Number.isFinite(norm)) throw new AggregatorError('E_AGG_NONFINITE', 'normBound: the update has a non-finite norm');
  return { norm, tensors };
}

/**
 * The update scaled to norm `maxNorm` (>= 0) when its measured norm is above it; else the update itself. New
 * buffers for the scaled tensors; the others are shared with the input.
 */
export function clipUpdate(update: FLModel, measured: MeasuredUpdate, maxNorm: number): FLModel {
  const { norm } = measured;
  if (norm <= maxNorm) return update;
  const s = maxNorm / norm;
  const params = new Map(update.params);
  for (const [name, x, ref] of measured.tensors) {
    const t = update.params.get(name)!;
    const out = x instanceof Float32Array ? new Float32Array(x.length) : new Float64Array(x.length);
    // (u x maxNorm) / norm rounds once where u x (maxNorm / norm) rounds twice ([3, 4] -> [0.6, 0.8] exactly);
    // the product can only overflow for |u| near 1e308 / maxNorm, where the scaled form is used instead.
    const scaled = (u: number) => {
      const v = (u * maxNorm) / norm;
      return Number.isFinite(v) ? v : u * s;
    };
    if (ref === undefined) for (let i = 0; i < x.length; i++) out[i] = scaled(x[i]!);
    else for (let i = 0; i < x.length; i++) out[i] = ref[i]! + scaled(x[i]! - ref[i]!);
    params.set(name, { dtype: t.dtype, shape: t.shape, data: out });
  }
  const clipped: FLModel = { params, kind: update.kind, meta: update.meta };
  if (update.metrics !== undefined) clipped.metrics = update.metrics;
  return clipped;
}

/** Options of {@link NormBoundAggregator}. */
export interface NormBoundAggregatorOptions {
  readonly maxNorm: number;
  /** For `'full'` contributions: the round's global model, or a function returning it (it changes every round). */
  readonly reference?: FLModel | (() => FLModel);
  readonly exclude?: TensorExclusion;
}

/**
 * Wraps a streaming aggregator so that every contribution is norm-bounded ({@link normBound}) before the
 * inner aggregator sees it. Memory: the inner aggregator's, plus one transient copy of a clipped contribution.
 *
 * @example
 * ```ts
 * const agg = new NormBoundAggregator(new FedAvgAggregator({ kind: 'diff' }), { maxNorm: 10 });
 * ```
 */
export class NormBoundAggregator extends WrappingAggregator {
  readonly #opts: NormBoundAggregatorOptions;

  constructor(inner: RoundAggregator, opts: NormBoundAggregatorOptions) {
    if (!(opts.maxNorm > 0) || !Number.isFinite(opts.maxNorm)) throw new RangeError(`NormBoundAggregator: "maxNorm" expected a finite number > 0, got ${String(opts.maxNorm)}`);
    if (inner.kind === 'full' && opts.reference === undefined) throw new TypeError('NormBoundAggregator: full contributions need the global model as "reference"');
    super(inner);
    this.#opts = opts;
  }

  accept(update: FLModel, ctx: AcceptContext): void {
    // A contribution of the wrong kind goes straight to the inner aggregator, which refuses it (E_AGG_KIND).
    if (update.kind !== this.inner.kind) return this.inner.accept(update, ctx);
    const r = this.#opts.reference;
    const reference = typeof r === 'function' ? r() : r;
    const bound: NormBoundOptions = { maxNorm: this.#opts.maxNorm };
    this.inner.accept(
      normBound(update, {
        ...bound,
        ...(reference === undefined ? {} : { reference }),
        ...(this.#opts.exclude === undefined ? {} : { exclude: this.#opts.exclude }),
      }),
      ctx,
    );
  }
}
