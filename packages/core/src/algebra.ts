import { ModelError } from './errors/areas.js';
import type { FLModel } from './model.js';
import { floatData, type FloatArray, type Tensor } from './tensor.js';

// In-place arithmetic over whole models, tensor by tensor. Each function checks that both models have the same
// tensor names and sizes before it writes anything, so a mismatch never leaves a half-updated model.

function pairs(target: FLModel, other: FLModel, op: string): Array<[FloatArray, FloatArray]> {
  if (target.params.size !== other.params.size) {
    throw new ModelError('E_MODEL_MISMATCH', `${op}: models have ${target.params.size} and ${other.params.size} tensors`);
  }
  const out: Array<[FloatArray, FloatArray]> = [];
  for (const [name, t] of target.params) {
    const o = other.params.get(name);
    if (o === undefined) throw new ModelError('E_MODEL_MISMATCH', `${op}: tensor "${name}" is missing from the second model`);
    if (o.data.length !== t.data.length || !sameShape(t, o)) {
      throw new ModelError(
        'E_MODEL_MISMATCH',
        `${op}: tensor "${name}" has shape [${t.shape.join(', ')}] and [${o.shape.join(', ')}]`,
      );
    }
    out.push([floatData(name, t), floatData(name, o)]);
  }
  return out;
}

function sameShape(a: Tensor, b: Tensor): boolean {
  return a.shape.length === b.shape.length && a.shape.every((d, i) => d === b.shape[i]);
}

/** `target += other`, tensor by tensor. Returns `target`. */
export function add(target: FLModel, other: FLModel): FLModel {
  for (const [y, x] of pairs(target, other, 'add')) for (let i = 0; i < y.length; i++) y[i] = y[i]! + x[i]!;
  return target;
}

/** `target -= other`, tensor by tensor (e.g. local weights minus global weights gives a diff). Returns `target`. */
export function sub(target: FLModel, other: FLModel): FLModel {
  for (const [y, x] of pairs(target, other, 'sub')) for (let i = 0; i < y.length; i++) y[i] = y[i]! - x[i]!;
  return target;
}

/** `target *= factor` for every float tensor. Returns `target`. */
export function scale(target: FLModel, factor: number): FLModel {
  const arrays = [...target.params].map(([name, t]) => floatData(name, t));
  for (const y of arrays) for (let i = 0; i < y.length; i++) y[i] = y[i]! * factor;
  return target;
}

/** `y += alpha * x` (BLAS axpy), tensor by tensor. Returns `y`. */
export function axpy(alpha: number, x: FLModel, y: FLModel): FLModel {
  for (const [yy, xx] of pairs(y, x, 'axpy')) for (let i = 0; i < yy.length; i++) yy[i] = yy[i]! + alpha * xx[i]!;
  return y;
}

/** The global L2 norm over every float tensor, accumulated in float64. */
export function l2norm(m: FLModel): number {
  let sum = 0;
  for (const [name, t] of m.params) {
    const d = floatData(name, t);
    for (let i = 0; i < d.length; i++) sum += d[i]! * d[i]!;
  }
  return Math.sqrt(sum);
}

/** Tolerances for {@link allClose}, numpy's semantics: |a - b| <= atol + rtol * |b|. */
export interface CloseOptions {
  /** Relative tolerance (default 1e-5). */
  readonly rtol?: number;
  /** Absolute tolerance (default 1e-8). */
  readonly atol?: number;
}

/**
 * True when both models have the same tensor names, dtypes and shapes and every element pair is close
 * (numpy.allclose semantics; NaN is never close). Never throws on mismatch: it answers false.
 */
export function allClose(a: FLModel, b: FLModel, { rtol = 1e-5, atol = 1e-8 }: CloseOptions = {}): boolean {
  if (a.params.size !== b.params.size) return false;
  for (const [name, t] of a.params) {
    const o = b.params.get(name);
    if (o === undefined || o.dtype !== t.dtype || !sameShape(t, o)) return false;
    for (let i = 0; i < t.data.length; i++) {
      const x = Number(t.data[i]);
      const y = Number(o.data[i]);
      if (!(Math.abs(x - y) <= atol + rtol * Math.abs(y))) return false;
    }
  }
  return true;
}
