import { MlError, model, type FLModel, type Tensor } from '@flare/core';
import * as tf from '@tensorflow/tfjs-core';
import type { LayersModel } from '@tensorflow/tfjs-layers';

// tfjs uniquifies variable names per process (`dense/kernel_1` for the second model built), so the name a
// site and the server agree on is the variable's originalName: the layer name and weight name as written.
function nameOf(v: LayersModel['weights'][number]): string {
  return v.originalName;
}

/**
 * Reads a LayersModel's weights into an FLModel (`kind: 'full'`), keyed by variable name
 * (`<layer>/<weight>`, e.g. `hidden/kernel`). The tensors are copies: later training does not change them.
 *
 * @example
 * ```ts
 * const initial = readWeights(buildModel()); // send as the job's initial global model
 * ```
 */
export function readWeights(net: LayersModel): FLModel {
  const params = new Map<string, Tensor>();
  for (const v of net.weights) {
    const value = v.read();
    if (value.dtype !== 'float32') throw new MlError('E_ML_WEIGHTS_MISMATCH', `variable '${nameOf(v)}' is ${value.dtype}, only float32 is supported`);
    params.set(nameOf(v), { dtype: 'float32', shape: [...value.shape], data: Float32Array.from(value.dataSync() as Float32Array) });
  }
  return model(params, 'full');
}

/**
 * Writes an FLModel's tensors into a LayersModel's variables by name. Every variable must be present with
 * the same shape, and no extra tensor may be left over (a mismatch means the job and the site disagree on
 * the network, which must not be trained on silently).
 *
 * @throws MlError E_ML_NOT_FULL_MODEL for a `diff`; E_ML_WEIGHTS_MISMATCH for a missing, extra or
 * differently shaped tensor.
 */
export function writeWeights(net: LayersModel, weights: FLModel): void {
  if (weights.kind !== 'full') throw new MlError('E_ML_NOT_FULL_MODEL', 'writeWeights needs full weights, got a diff');
  const seen = new Set<string>();
  const pending: Array<[LayersModel['weights'][number], tf.Tensor]> = [];
  try {
    for (const v of net.weights) {
      const name = nameOf(v);
      const t = weights.params.get(name);
      if (t === undefined) throw new MlError('E_ML_WEIGHTS_MISMATCH', `the model has no tensor '${name}'`);
      const same = t.shape.length === v.shape.length && t.shape.every((d, i) => d === v.shape[i]);
      if (!same) throw new MlError('E_ML_WEIGHTS_MISMATCH', `tensor '${name}' has shape [${t.shape.join(',')}], the network needs [${v.shape.join(',')}]`);
      if (t.dtype !== 'float32' && t.dtype !== 'float64') throw new MlError('E_ML_WEIGHTS_MISMATCH', `tensor '${name}' is ${t.dtype}, a float type is needed`);
      seen.add(name);
      pending.push([v, tf.tensor(t.dtype === 'float32' ? (t.data as Float32Array) : Float32Array.from(t.data as Float64Array), [...t.shape], 'float32')]);
    }
    for (const name of weights.params.keys()) {
      if (!seen.has(name)) throw new MlError('E_ML_WEIGHTS_MISMATCH', `tensor '${name.slice(0, 80)}' is not a variable of the network`);
    }
    // Only write once everything matched: a refused model leaves the network unchanged.
    for (const [v, value] of pending) v.write(value);
  } finally {
    for (const [, value] of pending) value.dispose();
  }
}
