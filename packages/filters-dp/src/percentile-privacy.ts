import { DpError, tensor, type Filter, type FilterContext, type FLModel, type FloatArray, type Tensor } from '@flare/core';
import { checkAborted, floatTensors, numSteps, sameKind } from './update-checks.js';

/** Options of {@link percentilePrivacy}; defaults are FLARE's (PercentilePrivacy(percentile=10, gamma=0.01)). */
export interface PercentilePrivacyOptions {
  /** Values whose magnitude is below this percentile of all magnitudes are zeroed, in [0, 100]. Default 10. */
  readonly percentile?: number;
  /** The rest are clipped to ±gamma, > 0. Default 0.01. */
  readonly gamma?: number;
  /** FLARE's data_kinds: the model kinds to filter; others pass unchanged. Default both. */
  readonly kinds?: ReadonlyArray<FLModel['kind']>;
}

/**
 * numpy.percentile's default ('linear', Hyndman & Fan type 7) of `values`, which it reorders. numpy's lerp:
 * a + (b - a)·t, or b - (b - a)·(1 - t) when t >= 0.5 (numpy/lib/_function_base_impl.py `_lerp`). With `f32`
 * every step rounds to float32, as numpy does on float32 arrays. Internal.
 */
export function numpyPercentile(values: FloatArray, percentile: number, f32: boolean): number {
  const r = f32 ? Math.fround : (x: number) => x;
  const n = values.length;
  const index = (percentile / 100) * (n - 1); // numpy's order of operations: q = p/100, then q·(n - 1)
  const lo = Math.floor(index);
  const t = index - lo;
  const a = select(values, lo);
  let b = a;
  if (lo + 1 < n) {
    // After selecting the lo-th smallest, everything from lo + 1 on is >= it: the next is their minimum.
    b = values[lo + 1]!;
    for (let i = lo + 2; i < n; i++) if (values[i]! < b) b = values[i]!;
  }
  const diff = r(b - a);
  return t >= 0.5 ? r(b - r(diff * (1 - t))) : r(a + r(diff * t));
}

/** Hoare quickselect with median-of-three pivots, falling back to a sort of the rest if it degrades; in place. */
function select(v: FloatArray, k: number): number {
  let lo = 0;
  let hi = v.length - 1;
  let budget = 4 * Math.ceil(Math.log2(v.length + 1)) + 8;
  while (hi > lo) {
    if (budget-- === 0) {
      const rest = v.subarray(lo, hi + 1).sort();
      return rest[k - lo]!;
    }
    const mid = lo + ((hi - lo) >> 1);
    const x = v[lo]!;
    const y = v[mid]!;
    const z = v[hi]!;
    const pivot = x < y ? (y < z ? y : x < z ? z : x) : x < z ? x : y < z ? z : y;
    let i = lo;
    let j = hi;
    while (i <= j) {
      while (v[i]! < pivot) i++;
      while (v[j]! > pivot) j--;
      if (i <= j) {
        const tmp = v[i]!;
        v[i] = v[j]!;
        v[j] = tmp;
        i++;
        j--;
      }
    }
    if (k <= j) hi = j;
    else if (k >= i) lo = i;
    else return v[k]!;
  }
  return v[k]!;
}

/**
 * FLARE's PercentilePrivacy ("largest percentile to share", Shokri & Shmatikov, CCS 2015): divide by the local
 * steps (NUM_STEPS_CURRENT_ROUND), zero every value whose magnitude is below the given percentile of all
 * magnitudes (strictly: -cutoff < w < cutoff), clip the rest to ±gamma, multiply back. Scalar tensors (shape [])
 * count in the percentile and pass unchanged, as in FLARE.
 *
 * A HEURISTIC, NOT DIFFERENTIAL PRIVACY: no noise is added and the cutoff itself depends on every value; it
 * reduces what one update shows, with no formal bound. Use gaussian-dp where a guarantee is needed.
 *
 * The input is not mutated. Unlike FLARE, invalid arguments are refused (FLARE passes the update unfiltered).
 *
 * @throws DpError E_DP_UNSUPPORTED_DTYPE, E_DP_NON_FINITE, E_DP_BAD_META, E_DP_ABORTED (from `apply`);
 * RangeError for bad options.
 * @example
 * ```ts
 * const filter = percentilePrivacy({ percentile: 10, gamma: 0.01 });
 * ```
 */
export function percentilePrivacy(options: PercentilePrivacyOptions = {}): Filter {
  const percentile = options.percentile ?? 10;
  const gamma = options.gamma ?? 0.01;
  const kinds = new Set(options.kinds ?? ['diff', 'full']);
  if (!(percentile >= 0 && percentile <= 100)) throw new RangeError(`"percentile" expected a number in [0, 100], got ${percentile}`);
  if (!(gamma > 0 && Number.isFinite(gamma))) throw new RangeError(`"gamma" expected a finite number > 0, got ${gamma}`);

  function apply(m: FLModel, ctx: FilterContext): FLModel {
    if (!kinds.has(m.kind)) return m;
    const tensors = floatTensors(m, 'percentile-privacy');
    const steps = numSteps(m, 'percentile-privacy');
    checkAborted(ctx, 'percentile-privacy');
    let total = 0;
    let f32 = true;
    for (const [, t] of tensors) {
      total += t.data.length;
      if (!(t.data instanceof Float32Array)) f32 = false;
    }
    const r = f32 ? Math.fround : (x: number) => x;
    const params = new Map<string, Tensor>();
    if (total === 0) {
      for (const [name, t] of tensors) params.set(name, tensor(t.data.slice(), t.shape, t.dtype));
      return { params, kind: m.kind, meta: structuredClone(m.meta), ...(m.metrics === undefined ? {} : { metrics: { ...m.metrics } }) };
    }
    const magnitudes = f32 ? new Float32Array(total) : new Float64Array(total);
    let o = 0;
    for (const [name, t] of tensors) {
      for (let i = 0; i < t.data.length; i++) {
        const w = r(t.data[i]! / steps);
        if (!Number.isFinite(w)) throw new DpError('E_DP_NON_FINITE', `percentile-privacy: tensor "${name}" holds NaN or infinite values`);
        magnitudes[o++] = Math.abs(w);
      }
    }
    const cutoff = numpyPercentile(magnitudes, percentile, f32);
    const g = r(gamma); // numpy casts the Python float to the array's dtype (NEP 50)
    for (const [name, t] of tensors) {
      if (t.shape.length === 0) {
        params.set(name, tensor(t.data.slice(), t.shape, t.dtype));
        continue;
      }
      const out = sameKind(t.data);
      for (let i = 0; i < t.data.length; i++) {
        const w = r(t.data[i]! / steps);
        const kept = w > -cutoff && w < cutoff ? 0 : Math.min(g, Math.max(-g, w));
        out[i] = r(kept * steps);
      }
      params.set(name, tensor(out, t.shape, t.dtype));
    }
    ctx.audit?.({
      action: 'dp_percentile_applied',
      job: ctx.job,
      msg: `percentile-privacy: zeroed magnitudes below the ${percentile}th percentile and clipped to ±${gamma} (heuristic, no DP guarantee)`,
      data: { filter: 'percentile-privacy', round: ctx.round, percentile, gamma },
    });
    return { params, kind: m.kind, meta: structuredClone(m.meta), ...(m.metrics === undefined ? {} : { metrics: { ...m.metrics } }) };
  }

  return Object.freeze({ name: 'percentile-privacy', apply });
}
