// Validation and column access for the aggregators that need every contribution at once (internal).

import { AggregatorError, ModelError, type DType, type FLModel, type FloatArray, type ModelManifest, type Tensor } from '@flare/core';
import { addScaled } from './exact-sum.js';
import { excluder, type TensorExclusion } from './exclusion.js';
import { checkSize, firstNonFinite, numericData, sameShape, shapeText, tensorFrom } from './tensors.js';
import type { WeightedUpdate } from './types.js';
import { checkWeight, contextOf } from './weights.js';

/** One tensor across all contributions. */
interface TensorColumn {
  readonly name: string;
  readonly dtype: DType;
  readonly shape: readonly number[];
  readonly length: number;
  /** The tensor's values in each contribution, in contribution order. */
  readonly data: readonly FloatArray[];
}

/** Contributions checked for a robust aggregator: same kind, same tensors (sorted by name), finite, weighted. */
export interface UpdateSet {
  readonly n: number;
  readonly kind: FLModel['kind'];
  readonly tensors: readonly TensorColumn[];
  readonly weights: Float64Array;
  readonly names: readonly string[];
  /** Total parameter count of one contribution. */
  readonly size: number;
}

/** The template the first contribution sets: which tensors, with which dtype and shape. */
export type Layout = ReadonlyMap<string, { readonly dtype: DType; readonly shape: readonly number[] }>;

/** The layout of a manifest's non-excluded tensors. */
function layoutOfManifest(manifest: ModelManifest, excluded: (name: string) => boolean): Layout {
  if (!(manifest instanceof Map)) throw new TypeError('"manifest" expected a Map of tensor names to { dtype, shape } (core\'s manifestOf)');
  const out = new Map<string, { dtype: DType; shape: readonly number[] }>();
  for (const [name, e] of manifest) if (!excluded(name)) out.set(name, { dtype: e.dtype, shape: e.shape });
  return out;
}

/** The layout fixed by options: the manifest, else the template model's, else none (the first contribution sets it). */
export function fixedLayout(options: { readonly manifest?: ModelManifest; readonly template?: FLModel }, excluded: (name: string) => boolean): Layout | undefined {
  if (options.manifest !== undefined) return layoutOfManifest(options.manifest, excluded);
  return options.template === undefined ? undefined : layoutOf(options.template, excluded);
}

/** The layout of a model's non-excluded tensors. */
export function layoutOf(m: FLModel, excluded: (name: string) => boolean): Map<string, { dtype: DType; shape: readonly number[] }> {
  const out = new Map<string, { dtype: DType; shape: readonly number[] }>();
  for (const [name, t] of m.params) if (!excluded(name)) out.set(name, { dtype: t.dtype, shape: t.shape });
  return out;
}

/**
 * Checks one contribution against a layout: the same tensor names, dtypes and shapes (E_MODEL_MISMATCH),
 * no booleans (E_MODEL_DTYPE), finite values (E_AGG_NONFINITE). Returns the numeric data by name.
 */
export function checkAgainst(m: FLModel, layout: Layout, excluded: (name: string) => boolean, from: string): Map<string, FloatArray> {
  if (!(m.params instanceof Map)) throw new TypeError('"model.params" expected a Map of tensors');
  const data = new Map<string, FloatArray>();
  for (const [name, t] of m.params) {
    if (excluded(name)) continue;
    const want = layout.get(name);
    if (want === undefined) throw new ModelError('E_MODEL_MISMATCH', `tensor "${name}" from "${from}" is not in the other contributions`);
    checkSize(name, t);
    if (want.dtype !== t.dtype || !sameShape(want.shape, t.shape)) {
      throw new ModelError('E_MODEL_MISMATCH', `tensor "${name}" from "${from}" is ${t.dtype} ${shapeText(t.shape)}; expected ${want.dtype} ${shapeText(want.shape)}`);
    }
    const values = numericData(name, t);
    const bad = firstNonFinite(values);
    if (bad >= 0) throw new AggregatorError('E_AGG_NONFINITE', `tensor "${name}" from "${from}" has a non-finite value at index ${bad}`);
    data.set(name, values);
  }
  for (const name of layout.keys()) {
    if (!data.has(name)) throw new ModelError('E_MODEL_MISMATCH', `tensor "${name}" is missing from "${from}"`);
  }
  return data;
}

/**
 * Validates a list of contributions for a robust aggregator: at least one (E_AGG_EMPTY), one kind
 * (E_AGG_KIND), no site twice (E_AGG_DUPLICATE), weights finite and > 0 (E_AGG_WEIGHT), the same
 * tensors everywhere, finite.
 */
export function prepare(updates: readonly WeightedUpdate[], exclude: TensorExclusion | undefined, method: string): UpdateSet {
  if (!Array.isArray(updates)) throw new TypeError(`${method}: "updates" expected an array`);
  const first = updates[0];
  if (first === undefined) throw new AggregatorError('E_AGG_EMPTY', `${method}: no updates`);
  const excluded = excluder(exclude);
  const layout = layoutOf(first.model, excluded);
  const names = [...layout.keys()].sort();
  const kind = first.model.kind;
  const seen = new Set<string>();
  const weights = new Float64Array(updates.length);
  const perUpdate: Array<Map<string, FloatArray>> = [];
  updates.forEach((u, i) => {
    const { from } = contextOf(u, i);
    if (seen.has(from)) throw new AggregatorError('E_AGG_DUPLICATE', `${method}: "${from}" appears twice`);
    seen.add(from);
    if (u.model.kind !== kind) throw new AggregatorError('E_AGG_KIND', `${method}: "${from}" is of kind "${String(u.model.kind)}", the first update of "${kind}"`);
    weights[i] = checkWeight(u.weight ?? 1, from);
    perUpdate.push(checkAgainst(u.model, layout, excluded, from));
  });
  let size = 0;
  const tensors = names.map((name) => {
    const { dtype, shape } = layout.get(name)!;
    const data = perUpdate.map((m) => m.get(name)!);
    const length = data[0]!.length;
    size += length;
    return { name, dtype, shape, length, data };
  });
  return { n: updates.length, kind, tensors, weights, names, size };
}

/** Assembles a result model from float64 values per tensor (converted back to each tensor's dtype); E_AGG_NONFINITE on overflow. */
export function assemble(set: UpdateSet, values: readonly Float64Array[]): FLModel {
  const params = new Map<string, Tensor>();
  set.tensors.forEach((t, i) => {
    // Inputs are finite, but a mean of values near the float64 limit can overflow: refuse, never return inf.
    if (firstNonFinite(values[i]!) >= 0) throw overflow(t.name);
    params.set(t.name, tensorFrom(t.dtype, t.shape, values[i]!));
  });
  return { params, kind: set.kind, meta: {} };
}

/** Coordinates processed per block: the block of every contribution (n x 1024 doubles) stays in L2 cache. */
export const BLOCK = 1024;

/**
 * Calls `fn(column, t, i)` for every coordinate i of every tensor t with that coordinate's n values
 * (contribution order) in `column`, which `fn` may reorder. Blocks of coordinates are first copied row by
 * row (TypedArray.set converts float32 natively), so the strided reads hit cache.
 */
export function forEachCoordinate(set: UpdateSet, fn: (column: Float64Array, tensor: number, index: number) => number): Float64Array[] {
  const { n } = set;
  const rows = new Float64Array(n * BLOCK);
  const column = new Float64Array(n);
  return set.tensors.map((t, ti) => {
    const out = new Float64Array(t.length);
    for (let b = 0; b < t.length; b += BLOCK) {
      const len = Math.min(BLOCK, t.length - b);
      for (let j = 0; j < n; j++) rows.set(t.data[j]!.subarray(b, b + len), j * BLOCK);
      for (let c = 0; c < len; c++) {
        for (let j = 0; j < n; j++) column[j] = rows[j * BLOCK + c]!;
        out[b + c] = fn(column, ti, b + c);
      }
    }
    return out;
  });
}

/** The exact weighted mean of the chosen contributions, per tensor (order of `indices` does not matter). */
export function weightedMeanOf(set: UpdateSet, indices: readonly number[]): Float64Array[] {
  let total = 0;
  {
    let lo = 0;
    for (const j of indices) {
      const v = set.weights[j]!;
      const s = total + v;
      const bb = s - total;
      lo += total - (s - bb) + (v - bb);
      total = s;
    }
    total += lo;
  }
  const only = indices.length === 1 ? indices[0]! : -1;
  return set.tensors.map((t) => {
    // One contribution: its exact values (w * x / w may differ from x in the last float64 bit).
    if (only >= 0) return Float64Array.from(t.data[only]!);
    const hi = new Float64Array(t.length);
    const lo = new Float64Array(t.length);
    for (const j of indices) {
      // Values and weights are finite; only float64 values near 1e308 can overflow when summed.
      if (addScaled(hi, lo, t.data[j]!, set.weights[j]!) >= 0) throw overflow(t.name);
    }
    for (let i = 0; i < t.length; i++) hi[i] = (hi[i]! + lo[i]!) / total;
    return hi;
  });
}

/** E_AGG_NONFINITE for finite values whose weighted sum overflows (float64 values near 1e308). */
export function overflow(name: string): AggregatorError {
  return new AggregatorError('E_AGG_NONFINITE', `the weighted sum of tensor "${name}" overflows`);
}
