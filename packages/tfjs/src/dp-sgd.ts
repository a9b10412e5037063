import { randomFillSync } from 'node:crypto';
import { MlError } from '@flare/core';
import * as tf from '@tensorflow/tfjs-core';
import type { LayersModel } from '@tensorflow/tfjs-layers';

// Record-level differential privacy at a site: DP-SGD (Abadi et al., CCS 2016, Algorithm 1) with Poisson
// subsampling, the sampling scheme the RDP accountant of the subsampled Gaussian mechanism assumes (Mironov,
// Talwar, Zhang 2019). The unit of privacy is one training example of this site.

/**
 * The Gaussian mechanism: adds N(0, sigma^2) noise to every value of `values`, in place. Inject a CSPRNG-backed
 * sampler whose outputs carry no floating-point artefacts (Mironov, CCS 2012), such as @flare/filters-dp's
 * `gaussianMechanism()`, which replaces each value by a discrete Gaussian on a grid centred at that value: noise
 * drawn separately and then added in floating point would let the sum's low-order bits show through. The
 * learner never draws noise itself.
 */
export type GaussianMechanism = (values: Float32Array, sigma: number) => void;

/** Fills `out` with uniformly random 32-bit words (default: node:crypto's CSPRNG; tests inject a seeded one). */
export type RandomWords = (out: Uint32Array) => void;

/** Record-level DP-SGD settings of {@link TfjsLearner}. */
export interface DpSgdOptions {
  /** C: every example's gradient is clipped to this L2 norm (over all trainable variables). */
  readonly clipNorm: number;
  /** z: the noise added to the sum of clipped gradients has standard deviation z·C per coordinate. */
  readonly noiseMultiplier: number;
  /** q: each example joins each step's batch independently with this probability. Steps per epoch: round(1/q). */
  readonly samplingRate: number;
  /** The Gaussian mechanism applied to each step's sum of clipped gradients (CSPRNG, no floating-point artefacts). */
  readonly noise: GaussianMechanism;
  /** Source of the Poisson sampling decisions (default node:crypto). */
  readonly random?: RandomWords;
}

/** What a DP-SGD round did, for the site's accountant (`meta.dp_sgd`). */
export interface DpSgdReport {
  readonly noise_multiplier: number;
  readonly sampling_rate: number;
  readonly clip_norm: number;
  /** Noisy steps taken this round: each is one release of the subsampled Gaussian mechanism. */
  readonly steps: number;
}

type Activation = 'relu' | 'sigmoid' | 'softmax' | 'tanh' | 'linear';
type Loss = 'binaryCrossentropy' | 'categoricalCrossentropy' | 'meanSquaredError';

interface DenseVars {
  readonly kernel: tf.Variable;
  readonly bias: tf.Variable;
  readonly activation: Activation;
}

/** Checks DP-SGD settings; programmer errors are RangeErrors. */
export function checkDpSgd(o: DpSgdOptions): void {
  const finitePositive = (name: string, v: number) => {
    if (!(typeof v === 'number' && v > 0 && Number.isFinite(v))) throw new RangeError(`"${name}" expected a finite number > 0, got ${v}`);
  };
  finitePositive('clipNorm', o.clipNorm);
  finitePositive('noiseMultiplier', o.noiseMultiplier);
  finitePositive('samplingRate', o.samplingRate);
  if (o.samplingRate > 1) throw new RangeError(`"samplingRate" expected at most 1, got ${o.samplingRate}`);
  if (typeof o.noise !== 'function') throw new TypeError('"noise" expected a Gaussian mechanism function');
}

const ACTIVATIONS = new Set<string>(['relu', 'sigmoid', 'softmax', 'tanh', 'linear']);

/** The network's dense layers and their variables, or E_ML_DP_UNSUPPORTED. */
function denseLayers(net: LayersModel, loss: Loss): DenseVars[] {
  const out: DenseVars[] = [];
  for (const layer of net.layers) {
    const config = layer.getConfig();
    const activation = String(config['activation'] ?? 'linear');
    const weights = layer.trainableWeights;
    if (layer.getClassName() !== 'Dense' || weights.length !== 2 || !ACTIVATIONS.has(activation)) {
      throw new MlError('E_ML_DP_UNSUPPORTED', `layer '${layer.name}' (${layer.getClassName()}, ${activation}) cannot be clipped per example`);
    }
    const [kernel, bias] = weights.map((w) => w.read() as tf.Variable);
    out.push({ kernel: kernel!, bias: bias!, activation: activation as Activation });
  }
  if (out.length === 0) throw new MlError('E_ML_DP_UNSUPPORTED', 'the network has no dense layer');
  const last = out[out.length - 1]!.activation;
  const fits = (loss === 'binaryCrossentropy' && last === 'sigmoid') || (loss === 'categoricalCrossentropy' && last === 'softmax') || (loss === 'meanSquaredError' && last === 'linear');
  if (!fits || out.slice(0, -1).some((l) => l.activation === 'softmax')) {
    throw new MlError('E_ML_DP_UNSUPPORTED', `loss ${loss} with a ${last} output layer is not supported for DP-SGD`);
  }
  return out;
}

/**
 * Checks that DP-SGD can train `net` with `loss` (a sequence of dense layers with supported activations and an
 * output that fits the loss), so that a learner asked for DP-SGD on another network is refused when it is made.
 *
 * @throws MlError E_ML_DP_UNSUPPORTED naming the layer or the loss.
 */
export function checkDpSgdNetwork(net: LayersModel, loss: Loss): void {
  denseLayers(net, loss);
}

function activate(z: tf.Tensor, a: Activation): tf.Tensor {
  switch (a) {
    case 'relu':
      return tf.relu(z);
    case 'sigmoid':
      return tf.sigmoid(z);
    case 'tanh':
      return tf.tanh(z);
    case 'softmax':
      return tf.softmax(z);
    case 'linear':
      return z;
  }
}

/** Per-example losses from the last layer's pre-activations (numerically stable forms). */
function perExampleLoss(z: tf.Tensor, y: tf.Tensor, loss: Loss): tf.Tensor {
  switch (loss) {
    case 'binaryCrossentropy': // log(1 + e^z) - y z, summed over outputs
      return tf.sum(tf.sub(tf.softplus(z), tf.mul(y, z)), 1);
    case 'categoricalCrossentropy': // logsumexp(z) - sum(y z)
      return tf.sub(tf.logSumExp(z, 1), tf.sum(tf.mul(y, z), 1));
    case 'meanSquaredError':
      return tf.mean(tf.square(tf.sub(z, y)), 1);
  }
}

/**
 * Sums of per-example gradients, each clipped to `clipNorm`, for one batch of a dense network, in one forward
 * and one backward pass. A dense layer's per-example kernel gradient is the outer product a_{l-1,i} δ_{l,i}^T,
 * whose squared Frobenius norm is |a_{l-1,i}|² |δ_{l,i}|² (Goodfellow 2015, "Efficient per-example gradient
 * computations"); δ_l comes from differentiating the summed loss with respect to zero "probes" added to each
 * layer's pre-activation, since each example's loss depends only on its own row.
 *
 * Returns one tensor per variable, in `layers` order (kernel, bias, kernel, bias, ...), and the per-example norms.
 */
export function clippedGradientSum(
  layers: readonly DenseVars[],
  x: tf.Tensor2D,
  y: tf.Tensor2D,
  loss: Loss,
  clipNorm: number,
): { readonly grads: tf.Tensor[]; readonly norms: tf.Tensor1D } {
  return tf.tidy(() => {
    const batch = x.shape[0];
    // Each layer's input a_{l-1} (the forward values do not depend on the zero probes).
    const inputs: tf.Tensor[] = [];
    let a: tf.Tensor = x;
    layers.forEach((l, i) => {
      inputs.push(a);
      if (i < layers.length - 1) a = activate(tf.add(tf.matMul(a, l.kernel), l.bias), l.activation);
    });
    const probes = layers.map((l) => tf.zeros([batch, l.kernel.shape[1]!]));
    const summedLoss = (...ps: tf.Tensor[]): tf.Scalar => {
      let h: tf.Tensor = x;
      let z: tf.Tensor = x;
      layers.forEach((l, i) => {
        z = tf.add(tf.add(tf.matMul(h, l.kernel), l.bias), ps[i]!);
        if (i < layers.length - 1) h = activate(z, l.activation);
      });
      return tf.sum(perExampleLoss(z, y, loss));
    };
    const deltas = tf.grads(summedLoss)(probes);
    let squared: tf.Tensor = tf.zeros([batch]);
    layers.forEach((_, i) => {
      const a = inputs[i]!;
      const d = deltas[i]!;
      squared = tf.add(squared, tf.mul(tf.add(tf.sum(tf.square(a), 1), 1), tf.sum(tf.square(d), 1)));
    });
    const norms = tf.sqrt(squared) as tf.Tensor1D;
    const factors = tf.reshape(tf.minimum(1, tf.div(clipNorm, tf.maximum(norms, 1e-12))), [batch, 1]);
    const grads: tf.Tensor[] = [];
    layers.forEach((_, i) => {
      const scaled = tf.mul(deltas[i]!, factors);
      grads.push(tf.matMul(inputs[i]!, scaled, true, false), tf.sum(scaled, 0));
    });
    return { grads, norms };
  });
}

const cryptoWords: RandomWords = (out) => {
  randomFillSync(out);
};

/**
 * Runs `epochs` epochs of DP-SGD on a dense network: each step samples every example with probability q
 * (from the CSPRNG), sums the per-example gradients clipped to C, adds N(0, (zC)²) noise to every coordinate,
 * divides by the expected batch size qN and lets `optimizer` apply it (any optimizer is post-processing of the
 * noisy gradient). Returns the steps taken (the accountant's count) and the mean loss of the last epoch's
 * sampled examples.
 */
export async function trainDpSgd(
  net: LayersModel,
  data: { readonly x: Float32Array; readonly y: Float32Array; readonly features: number; readonly labelWidth: number; readonly n: number },
  o: DpSgdOptions & { readonly epochs: number; readonly loss: Loss; readonly optimizer: tf.Optimizer; readonly signal?: AbortSignal; readonly onStep?: (fraction: number) => void },
): Promise<{ readonly report: DpSgdReport; readonly loss: number }> {
  checkDpSgd(o);
  const layers = denseLayers(net, o.loss);
  const stepsPerEpoch = Math.max(1, Math.round(1 / o.samplingRate));
  const total = stepsPerEpoch * o.epochs;
  // Sampling threshold: u < floor(q·2^32) happens with probability at most q, so the accountant's q is an upper
  // bound on the real rate (a smaller rate only amplifies privacy more).
  const threshold = Math.floor(o.samplingRate * 2 ** 32);
  const words = new Uint32Array(data.n);
  const random = o.random ?? cryptoWords;
  const xAll = tf.tensor2d(data.x, [data.n, data.features]);
  const yAll = tf.tensor2d(data.y, [data.n, data.labelWidth]);
  const variables = layers.flatMap((l) => [l.kernel, l.bias]);
  const sigma = o.noiseMultiplier * o.clipNorm;
  const denominator = o.samplingRate * data.n;
  let lossSum = 0;
  let lossCount = 0;
  try {
    for (let step = 0; step < total; step++) {
      o.signal?.throwIfAborted();
      random(words);
      const picked: number[] = [];
      for (let i = 0; i < data.n; i++) if (words[i]! < threshold) picked.push(i);
      const epochEnd = step >= total - stepsPerEpoch;
      // The clipped sums leave tfjs as plain arrays: the mechanism perturbs exactly those values.
      const sums = tf.tidy(() => {
        if (picked.length === 0) return variables.map((v) => new Float32Array(v.size));
        const idx = tf.tensor1d(picked, 'int32');
        const xb = tf.gather(xAll, idx) as tf.Tensor2D;
        const yb = tf.gather(yAll, idx) as tf.Tensor2D;
        if (epochEnd) {
          const z = layers.reduce<tf.Tensor>((a, l, i) => {
            const pre = tf.add(tf.matMul(a, l.kernel), l.bias);
            return i < layers.length - 1 ? activate(pre, l.activation) : pre;
          }, xb);
          lossSum += tf.sum(perExampleLoss(z, yb, o.loss)).dataSync()[0]!;
          lossCount += picked.length;
        }
        return clippedGradientSum(layers, xb, yb, o.loss, o.clipNorm).grads.map((g) => Float32Array.from(g.dataSync() as Float32Array));
      });
      const named: tf.NamedTensorMap = {};
      variables.forEach((v, i) => {
        const noisy = sums[i]!;
        o.noise(noisy, sigma);
        if (noisy.length !== v.size) throw new RangeError('the Gaussian mechanism changed the buffer length');
        named[v.name] = tf.tidy(() => tf.div(tf.tensor(noisy, v.shape), denominator));
      });
      o.optimizer.applyGradients(named);
      tf.dispose(Object.values(named));
      o.onStep?.((step + 1) / total);
      if ((step & 7) === 7) await new Promise<void>((resolve) => setImmediate(resolve));
    }
  } finally {
    xAll.dispose();
    yAll.dispose();
  }
  return {
    report: { noise_multiplier: o.noiseMultiplier, sampling_rate: o.samplingRate, clip_norm: o.clipNorm, steps: total },
    loss: lossCount > 0 ? lossSum / lossCount : Number.NaN,
  };
}
