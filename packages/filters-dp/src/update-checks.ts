import { DpError, META, isFloatDType, type FilterContext, type FloatArray, type FLModel, type Tensor } from '@flare/core';

// Checks and small numerics shared by the filters. Internal.

/** FLARE's NUM_STEPS_CURRENT_ROUND (default 1 when absent); E_DP_BAD_META when present but not a positive finite number. */
export function numSteps(m: FLModel, filter: string): number {
  const v = m.meta[META.NUM_STEPS_CURRENT_ROUND];
  if (v === undefined || v === null) return 1;
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) {
    throw new DpError('E_DP_BAD_META', `${filter}: ${META.NUM_STEPS_CURRENT_ROUND} must be a positive number`);
  }
  return v;
}

/** The model's tensors with float data, in the Map's order; E_DP_UNSUPPORTED_DTYPE names the first other one. */
export function floatTensors(m: FLModel, filter: string): Array<[string, Tensor & { readonly data: FloatArray }]> {
  const out: Array<[string, Tensor & { readonly data: FloatArray }]> = [];
  for (const [name, t] of m.params) {
    if (!isFloatDType(t.dtype) || !(t.data instanceof Float32Array || t.data instanceof Float64Array)) {
      throw new DpError('E_DP_UNSUPPORTED_DTYPE', `${filter}: tensor "${name}" has dtype ${t.dtype}; only float tensors can be protected`);
    }
    out.push([name, t as Tensor & { readonly data: FloatArray }]);
  }
  return out;
}

/** E_DP_ABORTED when the task's signal fired. */
export function checkAborted(ctx: FilterContext, filter: string): void {
  if (ctx.signal?.aborted === true) throw new DpError('E_DP_ABORTED', `${filter}: the task was cancelled; nothing was released`);
}

/**
 * Σ x² in float64, summed in blocks of 4096 so the rounding error stays near (4096 + n/4096)·2^-53 relative
 * instead of n·2^-53; NaN or Infinity in, NaN or Infinity out.
 */
export function sumOfSquares(data: FloatArray): number {
  let total = 0;
  for (let start = 0; start < data.length; start += 4096) {
    const end = Math.min(start + 4096, data.length);
    // Four independent accumulators let the additions overlap (about 1.2x faster here).
    let a0 = 0;
    let a1 = 0;
    let a2 = 0;
    let a3 = 0;
    let i = start;
    for (; i + 3 < end; i += 4) {
      const p = data[i]!;
      const q = data[i + 1]!;
      const r = data[i + 2]!;
      const u = data[i + 3]!;
      a0 += p * p;
      a1 += q * q;
      a2 += r * r;
      a3 += u * u;
    }
    for (; i < end; i++) {
      const v = data[i]!;
      a0 += v * v;
    }
    total += a0 + a1 + (a2 + a3);
  }
  return total;
}

/** A new typed array of the same class and length. */
export function sameKind(data: FloatArray): FloatArray {
  return data instanceof Float32Array ? new Float32Array(data.length) : new Float64Array(data.length);
}
