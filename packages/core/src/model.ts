import type { JsonValue } from './json.js';
import { arrayTypeOf, type Tensor } from './tensor.js';

/**
 * A model as it moves through a federation (FLARE's FLModel / DXO).
 * `kind: 'full'` carries weights, `'diff'` carries weight differences from the round's global model.
 * `params` is a Map so that names from the wire never touch an object prototype.
 */
export interface FLModel {
  params: Map<string, Tensor>;
  kind: 'full' | 'diff';
  meta: Record<string, JsonValue>;
  metrics?: Record<string, number>;
}

/** Meta keys shared with FLARE (FLModel / DXO meta). */
export const META = {
  /** Local training steps this round: FedAvg weighs an update by aggregation weight x this. */
  NUM_STEPS_CURRENT_ROUND: 'NUM_STEPS_CURRENT_ROUND',
  /** The round this model belongs to. */
  CURRENT_ROUND: 'current_round',
} as const;

/**
 * Makes a model from tensors (the Map and tensors are not copied).
 * @example
 * ```ts
 * const m = model({ w: tensor(new Float32Array(4), [2, 2]) }, 'diff', { [META.NUM_STEPS_CURRENT_ROUND]: 10 });
 * ```
 */
export function model(
  params: Map<string, Tensor> | Iterable<readonly [string, Tensor]> | Record<string, Tensor>,
  kind: FLModel['kind'] = 'full',
  meta: Record<string, JsonValue> = {},
): FLModel {
  const map =
    params instanceof Map
      ? params
      : new Map(Symbol.iterator in params ? (params as Iterable<readonly [string, Tensor]>) : Object.entries(params));
  return { params: map, kind, meta };
}

/** A deep copy: new typed arrays, new Map, structured-cloned meta and metrics. */
export function cloneModel(m: FLModel): FLModel {
  const params = new Map<string, Tensor>();
  // new Ctor(data) always copies (a Buffer's .slice() would return a view).
  for (const [name, t] of m.params) params.set(name, { dtype: t.dtype, shape: t.shape, data: copyOf(t) });
  const out: FLModel = { params, kind: m.kind, meta: structuredClone(m.meta) };
  if (m.metrics !== undefined) out.metrics = { ...m.metrics };
  return out;
}

/** Total element count over all tensors. */
export function parameterCount(m: FLModel): number {
  let n = 0;
  for (const t of m.params.values()) n += t.data.length;
  return n;
}

function copyOf(t: Tensor): Tensor['data'] {
  const Data = arrayTypeOf(t.dtype);
  return Data === BigInt64Array ? new BigInt64Array(t.data as BigInt64Array) : new (Data as Float32ArrayConstructor)(t.data as Float32Array);
}
