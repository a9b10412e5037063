import { ModelError } from './errors/areas.js';

/** Element types a tensor may have. 16-bit floats are held as float32 data with their dtype recorded. */
export type DType = 'float32' | 'float64' | 'int32' | 'int64' | 'uint8' | 'bool' | 'float16' | 'bfloat16';

/** The typed arrays tensor data may live in. */
export type TypedArray = Float32Array | Float64Array | Int32Array | BigInt64Array | Uint8Array;

/** Typed-array data of the float dtypes (the ones arithmetic applies to). */
export type FloatArray = Float32Array | Float64Array;

/**
 * A dense tensor: row-major `data` of `shape`'s element count.
 * `float16` and `bfloat16` tensors hold Float32Array data (the codec converts on the wire); `bool` holds 0/1 bytes.
 */
export interface Tensor {
  readonly dtype: DType;
  readonly shape: readonly number[];
  readonly data: TypedArray;
}

/** Every dtype, in a stable order. */
export const DTYPES: readonly DType[] = ['float32', 'float64', 'int32', 'int64', 'uint8', 'bool', 'float16', 'bfloat16'];

/** Bytes per element of each dtype on the wire (safetensors); in memory 16-bit floats take 4. */
export const WIRE_BYTES: Readonly<Record<DType, number>> = {
  float32: 4,
  float64: 8,
  int32: 4,
  int64: 8,
  uint8: 1,
  bool: 1,
  float16: 2,
  bfloat16: 2,
};

/** The number of elements a shape holds (1 for a scalar shape `[]`). */
export function elementCount(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** The typed-array constructor that holds a dtype's data in memory. */
export function arrayTypeOf(dtype: DType) {
  switch (dtype) {
    case 'float32':
    case 'float16':
    case 'bfloat16':
      return Float32Array;
    case 'float64':
      return Float64Array;
    case 'int32':
      return Int32Array;
    case 'int64':
      return BigInt64Array;
    case 'uint8':
    case 'bool':
      return Uint8Array;
  }
}

/** True for dtypes whose data is a Float32Array or Float64Array. */
export function isFloatDType(dtype: DType): boolean {
  return dtype === 'float32' || dtype === 'float64' || dtype === 'float16' || dtype === 'bfloat16';
}

function dtypeOfArray(data: TypedArray): DType {
  if (data instanceof Float32Array) return 'float32';
  if (data instanceof Float64Array) return 'float64';
  if (data instanceof Int32Array) return 'int32';
  if (data instanceof BigInt64Array) return 'int64';
  return 'uint8';
}

/**
 * Makes a tensor over `data` (not copied). The dtype follows the array type unless given
 * (pass `'bool'`, `'float16'` or `'bfloat16'` to record those). `shape` defaults to `[data.length]`.
 *
 * @throws RangeError when the shape's element count differs from `data.length` or the dtype does not fit the array.
 * @example
 * ```ts
 * const w = tensor(new Float32Array([1, 2, 3, 4]), [2, 2]);
 * ```
 */
export function tensor(data: TypedArray, shape: readonly number[] = [data.length], dtype?: DType): Tensor {
  for (const d of shape) {
    if (!Number.isSafeInteger(d) || d < 0) throw new RangeError(`"shape" expected non-negative integers, got [${shape.join(', ')}]`);
  }
  if (elementCount(shape) !== data.length) {
    throw new RangeError(`"shape" [${shape.join(', ')}] holds ${elementCount(shape)} elements but data has ${data.length}`);
  }
  const kind = dtype ?? dtypeOfArray(data);
  if (!(data instanceof arrayTypeOf(kind))) {
    throw new RangeError(`dtype ${kind} cannot hold data of type ${data.constructor.name}`);
  }
  return { dtype: kind, shape: Object.freeze([...shape]), data };
}

/** A float view of a tensor's data, or a ModelError (E_MODEL_DTYPE) for non-float tensors. */
export function floatData(name: string, t: Tensor): FloatArray {
  if (t.data instanceof Float32Array || t.data instanceof Float64Array) return t.data;
  throw new ModelError('E_MODEL_DTYPE', `tensor "${name}" has dtype ${t.dtype}; this operation needs a float tensor`);
}
