import { ModelError } from './errors/areas.js';
import type { FLModel } from './model.js';
import { elementCount, type DType, type Tensor, type TypedArray } from './tensor.js';

/** Where one tensor lives in a flattened vector. */
export interface FlatEntry {
  readonly name: string;
  readonly dtype: DType;
  readonly shape: readonly number[];
  /** First element of this tensor in the vector. */
  readonly offset: number;
}

/** What {@link unflatten} needs to rebuild the tensors: entries in vector order, the model kind. */
export interface FlatIndex {
  readonly kind: FLModel['kind'];
  readonly length: number;
  readonly entries: readonly FlatEntry[];
}

/** Options for {@link flatten}. */
export interface FlattenOptions {
  /** Element type of the vector. Default: float64 if any selected tensor is float64, int32 or int64, else float32. */
  readonly dtype?: 'float32' | 'float64';
  /** Which tensors to include (default all). Tensors keep the model's iteration order. */
  readonly select?: (name: string, t: Tensor) => boolean;
}

/**
 * Concatenates a model's tensors (or the selected ones) into one vector, with an index to rebuild them.
 * Non-float tensors are converted to numbers (int64 through Number, exact up to 2^53).
 */
export function flatten(
  m: FLModel,
  { dtype, select }: FlattenOptions = {},
): { vector: Float32Array | Float64Array; index: FlatIndex } {
  const chosen = [...m.params].filter(([name, t]) => select === undefined || select(name, t));
  const wide = chosen.some(([, t]) => t.dtype === 'float64' || t.dtype === 'int32' || t.dtype === 'int64');
  const Out = (dtype ?? (wide ? 'float64' : 'float32')) === 'float64' ? Float64Array : Float32Array;
  let length = 0;
  const entries: FlatEntry[] = [];
  for (const [name, t] of chosen) {
    entries.push({ name, dtype: t.dtype, shape: t.shape, offset: length });
    length += t.data.length;
  }
  const vector = new Out(length);
  for (const [i, [, t]] of chosen.entries()) {
    const offset = entries[i]!.offset;
    if (t.data instanceof BigInt64Array) {
      for (let j = 0; j < t.data.length; j++) vector[offset + j] = Number(t.data[j]);
    } else {
      vector.set(t.data, offset);
    }
  }
  return { vector, index: { kind: m.kind, length, entries } };
}

/**
 * Rebuilds the model {@link flatten} took apart: new tensors with the original names, shapes and dtypes
 * (integers rounded, booleans as value != 0). Meta is empty: the caller carries it.
 *
 * @throws ModelError E_MODEL_MISMATCH when the vector's length differs from the index's.
 */
export function unflatten(vector: Float32Array | Float64Array, index: FlatIndex): FLModel {
  if (vector.length !== index.length) {
    throw new ModelError('E_MODEL_MISMATCH', `unflatten: vector has ${vector.length} values, index expects ${index.length}`);
  }
  const params = new Map<string, Tensor>();
  for (const { name, dtype, shape, offset } of index.entries) {
    const n = elementCount(shape);
    const src = vector.subarray(offset, offset + n);
    params.set(name, { dtype, shape, data: fromNumbers(dtype, src) });
  }
  return { params, kind: index.kind, meta: {} };
}

function fromNumbers(dtype: DType, src: Float32Array | Float64Array): TypedArray {
  switch (dtype) {
    case 'int64':
      return BigInt64Array.from(src, (x) => BigInt(Math.round(x)));
    case 'bool':
      return Uint8Array.from(src, (x) => (x !== 0 ? 1 : 0));
    case 'uint8':
      return Uint8Array.from(src, (x) => Math.min(255, Math.max(0, Math.round(x))));
    case 'int32':
      return Int32Array.from(src, (x) => Math.round(x));
    case 'float64':
      return Float64Array.from(src);
    default:
      return Float32Array.from(src);
  }
}
