// Exact (order-independent) accumulation. A sum is kept as an unevaluated pair hi + lo of doubles: each
// addition uses Knuth's TwoSum (TAOCP vol. 2, 4.2.2, Theorem B; Ogita, Rump & Oishi, "Accurate sum and dot
// product", SIAM J. Sci. Comput. 26(6), 2005, Algorithm 3.1), which splits a + b into the rounded sum s and its
// exact rounding error e. hi collects s, lo collects e. While lo's own additions are exact, hi + lo is the
// exact sum of the addends, so fl(hi + lo) is its correctly rounded value: the same bits for every order in
// which the addends arrive. lo's additions are exact unless, in one coordinate, the addends span more than
// about 2^(106 - log2 n) in magnitude (for example 1 next to 1e-32); even then the error is below 2^-104 of
// the sum, far under float32 and float64 output precision.
//
// FedAvg runs these kernels in WebAssembly with SIMD (accumulators.ts, wasm/exact-sum.wat), where they give
// the same bits at about 3x the speed; the functions here are the reference and the fallback.

import type { FloatArray } from '@flare/core';

/**
 * Adds `w * x[i]` into the pair (hi[i], lo[i]) for i < end. Returns -1, or the index of the first group of
 * four (or the first element of the tail) holding a weighted value or running sum that is not finite:
 * nothing from there on was written, everything before was. Unrolled by four with one check per group
 * (measured 5-10% faster here than a check per element); two monomorphic copies (float32, float64 data)
 * keep V8's element loads specialised.
 */
function addScaledF32(hi: Float64Array, lo: Float64Array, x: Float32Array, w: number, end: number): number {
  let i = 0;
  for (; i + 3 < end; i += 4) {
    const p0 = w * x[i]!;
    const p1 = w * x[i + 1]!;
    const p2 = w * x[i + 2]!;
    const p3 = w * x[i + 3]!;
    const a0 = hi[i]!;
    const a1 = hi[i + 1]!;
    const a2 = hi[i + 2]!;
    const a3 = hi[i + 3]!;
    const s0 = a0 + p0;
    const s1 = a1 + p1;
    const s2 = a2 + p2;
    const s3 = a3 + p3;
    // NaN propagates through the sum and inf - inf is NaN: one test covers the four values.
    if (s0 - s0 + (s1 - s1) + (s2 - s2 + (s3 - s3)) !== 0) return i;
    const b0 = s0 - a0;
    const b1 = s1 - a1;
    const b2 = s2 - a2;
    const b3 = s3 - a3;
    lo[i] = lo[i]! + (a0 - (s0 - b0) + (p0 - b0));
    lo[i + 1] = lo[i + 1]! + (a1 - (s1 - b1) + (p1 - b1));
    lo[i + 2] = lo[i + 2]! + (a2 - (s2 - b2) + (p2 - b2));
    lo[i + 3] = lo[i + 3]! + (a3 - (s3 - b3) + (p3 - b3));
    hi[i] = s0;
    hi[i + 1] = s1;
    hi[i + 2] = s2;
    hi[i + 3] = s3;
  }
  for (; i < end; i++) {
    const p = w * x[i]!;
    const a = hi[i]!;
    const s = a + p;
    if (s - s !== 0) return i;
    const bb = s - a;
    lo[i] = lo[i]! + (a - (s - bb) + (p - bb));
    hi[i] = s;
  }
  return -1;
}

/** {@link addScaledF32} for float64 data. */
function addScaledF64(hi: Float64Array, lo: Float64Array, x: Float64Array, w: number, end: number): number {
  let i = 0;
  for (; i + 3 < end; i += 4) {
    const p0 = w * x[i]!;
    const p1 = w * x[i + 1]!;
    const p2 = w * x[i + 2]!;
    const p3 = w * x[i + 3]!;
    const a0 = hi[i]!;
    const a1 = hi[i + 1]!;
    const a2 = hi[i + 2]!;
    const a3 = hi[i + 3]!;
    const s0 = a0 + p0;
    const s1 = a1 + p1;
    const s2 = a2 + p2;
    const s3 = a3 + p3;
    if (s0 - s0 + (s1 - s1) + (s2 - s2 + (s3 - s3)) !== 0) return i;
    const b0 = s0 - a0;
    const b1 = s1 - a1;
    const b2 = s2 - a2;
    const b3 = s3 - a3;
    lo[i] = lo[i]! + (a0 - (s0 - b0) + (p0 - b0));
    lo[i + 1] = lo[i + 1]! + (a1 - (s1 - b1) + (p1 - b1));
    lo[i + 2] = lo[i + 2]! + (a2 - (s2 - b2) + (p2 - b2));
    lo[i + 3] = lo[i + 3]! + (a3 - (s3 - b3) + (p3 - b3));
    hi[i] = s0;
    hi[i + 1] = s1;
    hi[i + 2] = s2;
    hi[i + 3] = s3;
  }
  for (; i < end; i++) {
    const p = w * x[i]!;
    const a = hi[i]!;
    const s = a + p;
    if (s - s !== 0) return i;
    const bb = s - a;
    lo[i] = lo[i]! + (a - (s - bb) + (p - bb));
    hi[i] = s;
  }
  return -1;
}

/** Adds `w * x[i]` for i < end; returns -1 or the first non-finite index (see {@link addScaledF32}). */
export function addScaled(hi: Float64Array, lo: Float64Array, x: FloatArray, w: number, end: number = x.length): number {
  return x instanceof Float32Array ? addScaledF32(hi, lo, x, w, end) : addScaledF64(hi, lo, x, w, end);
}

/** A scalar exact sum (weights, metrics, the terms of a robust mean). */
export class ExactSum {
  hi = 0;
  lo = 0;

  add(v: number): void {
    const a = this.hi;
    const s = a + v;
    const bb = s - a;
    this.lo += a - (s - bb) + (v - bb);
    this.hi = s;
  }

  /** The correctly rounded sum (see the file comment for when it is exact). */
  get value(): number {
    return this.hi + this.lo;
  }
}

/** The mean of `values[0..count)`, summed exactly and rounded once, so the order of the values does not matter. */
export function exactMean(values: Float64Array, from: number, to: number): number {
  let hi = 0;
  let lo = 0;
  for (let i = from; i < to; i++) {
    const v = values[i]!;
    const s = hi + v;
    const bb = s - hi;
    lo += hi - (s - bb) + (v - bb);
    hi = s;
  }
  return (hi + lo) / (to - from);
}
