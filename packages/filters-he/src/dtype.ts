import type { Tensor } from '@flare/core';

/** Float64 values as the typed array of `dtype` (integers rounded, uint8 clamped, booleans as >= 0.5). */
export function toDtype(values: Float64Array, dtype: Tensor['dtype']): Tensor['data'] {
  switch (dtype) {
    case 'int64':
      return BigInt64Array.from(values, (x) => BigInt(Math.round(x)));
    case 'int32':
      return Int32Array.from(values, (x) => Math.round(x));
    case 'uint8':
      return Uint8Array.from(values, (x) => Math.min(255, Math.max(0, Math.round(x))));
    case 'bool':
      return Uint8Array.from(values, (x) => (x >= 0.5 ? 1 : 0));
    case 'float64':
      return values;
    default:
      return Float32Array.from(values);
  }
}
