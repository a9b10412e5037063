// Tensor plumbing shared by every aggregator (internal): numeric views of tensor data, output tensors in the
// input's dtype, shape checks, finiteness scans.

import { ModelError, elementCount, type DType, type FloatArray, type Tensor, type TypedArray } from '@flare/core';

/**
 * The tensor's values as floats: float tensors are returned as they are (no copy); int32, int64 and uint8
 * tensors (e.g. PyTorch's `num_batches_tracked`) are converted to a new Float64Array (int64 through Number,
 * exact up to 2^53). Booleans have no meaningful average: E_MODEL_DTYPE (exclude them instead).
 */
export function numericData(name: string, t: Tensor): FloatArray {
  const d = t.data;
  if (d instanceof Float32Array || d instanceof Float64Array) return d;
  if (t.dtype === 'bool') {
    throw new ModelError('E_MODEL_DTYPE', `tensor "${name}" is boolean and cannot be aggregated; exclude it`);
  }
  if (d instanceof BigInt64Array) return Float64Array.from(d, (v) => Number(v));
  return Float64Array.from(d);
}

/** Round half to even: the unbiased rounding for integer tensors (numpy.rint semantics). */
function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** A typed array of `dtype` holding `values` (rounded to float32, or half-to-even to integers and clamped for uint8). */
export function fromFloat64(dtype: DType, values: Float64Array): TypedArray {
  switch (dtype) {
    case 'float64':
      return values;
    case 'float32':
    case 'float16':
    case 'bfloat16':
      return Float32Array.from(values);
    case 'int32':
      return Int32Array.from(values, roundHalfEven);
    case 'int64':
      return BigInt64Array.from(values, (v) => BigInt(roundHalfEven(v)));
    case 'uint8':
    case 'bool':
      return Uint8Array.from(values, (v) => Math.min(255, Math.max(0, roundHalfEven(v))));
  }
}

/** Builds a tensor of `dtype` and `shape` from float64 values (see {@link fromFloat64}). */
export function tensorFrom(dtype: DType, shape: readonly number[], values: Float64Array): Tensor {
  return { dtype, shape: Object.freeze([...shape]), data: fromFloat64(dtype, values) };
}

/** True when both shapes have the same dimensions. */
export function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/** Refuses a tensor whose data does not hold its shape's element count (a hand-built, inconsistent tensor). */
export function checkSize(name: string, t: Tensor): void {
  if (t.data.length !== elementCount(t.shape)) {
    throw new ModelError('E_MODEL_MISMATCH', `tensor "${name}" has shape [${t.shape.join(', ')}] but ${t.data.length} values`);
  }
}

/** The index of the first NaN or infinite value, or -1. */
export function firstNonFinite(x: FloatArray): number {
  for (let i = 0; i < x.length; i++) {
    const v = x[i]!;
    if (v - v !== 0) return i;
  }
  return -1;
}

/** `[a, b]` as text for messages. */
export function shapeText(shape: readonly number[]): string {
  return `[${shape.join(', ')}]`;
}
