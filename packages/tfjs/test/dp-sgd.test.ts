import { isFlareError } from '@flare/core';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { beforeAll, describe, expect, it } from 'vitest';
import { selectBackend } from '../src/backend.js';
import { clippedGradientSum, trainDpSgd, type GaussianMechanism } from '../src/dp-sgd.js';
import { TfjsLearner } from '../src/learner.js';
import { denseNetwork } from '../src/network.js';
import { readWeights } from '../src/weights.js';

function lcg(seed: number): () => number {
  let s = seed;
  return () => {
    s = (s * 48271) % 2147483647;
    return s / 2147483647;
  };
}

/** A test-only mechanism (Box-Muller on a seeded generator); the learner never draws noise itself. */
function seededGaussian(seed: number): GaussianMechanism {
  const r = lcg(seed);
  return (values, sigma) => {
    for (let i = 0; i < values.length; i++) values[i] = values[i]! + sigma * Math.sqrt(-2 * Math.log(r() + 1e-12)) * Math.cos(2 * Math.PI * r());
  };
}
const noNoise: GaussianMechanism = () => {};

function data(n: number, features: number, seed: number, width = 1): { x: Float32Array; y: Float32Array } {
  const r = lcg(seed);
  const x = Float32Array.from({ length: n * features }, () => 2 * r() - 1);
  const y = new Float32Array(n * width);
  for (let i = 0; i < n; i++) {
    let s = 0;
    for (let j = 0; j < features; j++) s += x[i * features + j]!;
    if (width === 1) y[i] = s > 0 ? 1 : 0;
    else y[i * width + (s > 0 ? 1 : 0)] = 1;
  }
  return { x, y };
}

function layersOf(net: tfl.LayersModel) {
  return net.layers.map((l) => {
    const [kernel, bias] = l.trainableWeights.map((w) => w.read() as tf.Variable);
    return { kernel: kernel!, bias: bias!, activation: String(l.getConfig()['activation']) as 'relu' | 'sigmoid' | 'softmax' | 'linear' | 'tanh' };
  });
}

/** Per-example gradients the slow way: one example at a time, loss written on probabilities (independent form). */
function naive(net: tfl.LayersModel, x: Float32Array, y: Float32Array, features: number, width: number, loss: string): Float32Array[] {
  const n = x.length / features;
  const out: Float32Array[] = [];
  for (let i = 0; i < n; i++) {
    const g = tf.tidy(() => {
      const xi = tf.tensor2d(x.subarray(i * features, (i + 1) * features), [1, features]);
      const yi = tf.tensor2d(y.subarray(i * width, (i + 1) * width), [1, width]);
      const vars = net.trainableWeights.map((w) => w.read() as tf.Variable);
      const { grads } = tf.variableGrads(() => {
        const p = net.apply(xi) as tf.Tensor;
        if (loss === 'bce') return tf.neg(tf.sum(tf.add(tf.mul(yi, tf.log(p)), tf.mul(tf.sub(1, yi), tf.log(tf.sub(1, p)))))) as tf.Scalar;
        if (loss === 'cce') return tf.neg(tf.sum(tf.mul(yi, tf.log(p)))) as tf.Scalar;
        return tf.mean(tf.square(tf.sub(p, yi))) as tf.Scalar;
      }, vars);
      return vars.map((v) => grads[v.name]!);
    });
    out.push(Float32Array.from(g.flatMap((t) => [...(t.dataSync() as Float32Array)])));
    tf.dispose(g);
  }
  return out;
}

const norm = (v: Float32Array) => Math.sqrt(v.reduce((s, x) => s + x * x, 0));

beforeAll(async () => {
  await selectBackend({ prefer: 'cpu' });
});

describe('clippedGradientSum (batched per-example clipping)', () => {
  const cases = [
    ['relu MLP, sigmoid output, binary cross-entropy', [{ name: 'h', units: 5, activation: 'relu' }, { name: 'o', units: 1, activation: 'sigmoid' }], 'binaryCrossentropy', 'bce', 1],
    ['tanh MLP, softmax output, categorical cross-entropy', [{ name: 'h', units: 4, activation: 'tanh' }, { name: 'o', units: 2, activation: 'softmax' }], 'categoricalCrossentropy', 'cce', 2],
    ['logistic regression', [{ name: 'o', units: 1, activation: 'sigmoid' }], 'binaryCrossentropy', 'bce', 1],
    ['linear regression, mean squared error', [{ name: 'o', units: 1, activation: 'linear' }], 'meanSquaredError', 'mse', 1],
  ] as const;

  it.each(cases)('%s: norms and clipped sums equal the one-example-at-a-time computation', (_t, spec, loss, naiveLoss, width) => {
    const features = 6;
    const net = denseNetwork(features, spec, 3);
    const { x, y } = data(12, features, 5, width);
    const per = naive(net, x, y, features, width, naiveLoss);
    const clip = 0.5 * Math.min(...per.map(norm)) + 0.5 * Math.max(...per.map(norm)); // some clipped, some not
    const { grads, norms } = tf.tidy(() => clippedGradientSum(layersOf(net), tf.tensor2d(x, [12, features]), tf.tensor2d(y, [12, width]), loss, clip));
    const got = Float32Array.from(grads.flatMap((t) => [...(t.dataSync() as Float32Array)]));
    const expected = new Float32Array(got.length);
    per.forEach((g, i) => {
      expect(norms.dataSync()[i]).toBeCloseTo(norm(g), 4);
      const f = Math.min(1, clip / norm(g));
      g.forEach((v, j) => (expected[j] = expected[j]! + f * v));
    });
    got.forEach((v, j) => expect(v).toBeCloseTo(expected[j]!, 4));
    tf.dispose([...grads, norms]);
  });

  it('bounds any one example\'s contribution by the clip norm (sensitivity), however extreme the example', () => {
    const features = 6;
    const net = denseNetwork(features, [{ name: 'h', units: 5, activation: 'relu' }, { name: 'o', units: 1, activation: 'sigmoid' }], 3);
    const { x, y } = data(10, features, 9);
    const xPlus = new Float32Array([...x, ...new Float32Array(features).fill(1e4)]);
    const yPlus = new Float32Array([...y, 0]);
    const sum = (xs: Float32Array, ys: Float32Array, n: number) =>
      tf.tidy(() => {
        const { grads } = clippedGradientSum(layersOf(net), tf.tensor2d(xs, [n, features]), tf.tensor2d(ys, [n, 1]), 'binaryCrossentropy', 1);
        return Float32Array.from(grads.flatMap((t) => [...(t.dataSync() as Float32Array)]));
      });
    const a = sum(x, y, 10);
    const b = sum(xPlus, yPlus, 11);
    expect(norm(b.map((v, i) => v - a[i]!))).toBeLessThanOrEqual(1 + 1e-4);
  });
});

describe('trainDpSgd', () => {
  it('applies -lr x mechanism(clipped sum) / (q N) each step, calling the mechanism with sigma = z C on every variable', async () => {
    const features = 4;
    const net = denseNetwork(features, [{ name: 'o', units: 1, activation: 'sigmoid' }], 1);
    const { x, y } = data(8, features, 2);
    const before = readWeights(net);
    const expected = tf.tidy(() => {
      const { grads } = clippedGradientSum(layersOf(net), tf.tensor2d(x, [8, features]), tf.tensor2d(y, [8, 1]), 'binaryCrossentropy', 0.3);
      return grads.map((g) => Float32Array.from(g.dataSync() as Float32Array));
    });
    const sigmas: number[] = [];
    const noise: GaussianMechanism = (out, sigma) => {
      sigmas.push(sigma);
      noNoise(out, sigma);
    };
    const optimizer = tf.train.sgd(0.5);
    // q = 1: every word is below floor(2^32), every example is in the batch
    const { report } = await trainDpSgd(net, { x, y, features, labelWidth: 1, n: 8 }, { clipNorm: 0.3, noiseMultiplier: 2, samplingRate: 1, noise, epochs: 1, loss: 'binaryCrossentropy', optimizer });
    expect(report).toEqual({ noise_multiplier: 2, sampling_rate: 1, clip_norm: 0.3, steps: 1 });
    expect(sigmas).toEqual([0.6, 0.6]);
    const after = readWeights(net);
    const k0 = before.params.get('o/kernel')!.data as Float32Array;
    const k1 = after.params.get('o/kernel')!.data as Float32Array;
    k1.forEach((v, j) => expect(v).toBeCloseTo(k0[j]! - (0.5 * expected[0]![j]!) / 8, 6));
    optimizer.dispose();
  });

  it('samples each example with probability q: round(1/q) steps per epoch, an empty batch still adds noise', async () => {
    const features = 3;
    const net = denseNetwork(features, [{ name: 'o', units: 1, activation: 'sigmoid' }], 1);
    const { x, y } = data(20, features, 4);
    let calls = 0;
    const allHigh = (out: Uint32Array) => out.fill(0xffffffff); // no example is ever sampled
    const noise: GaussianMechanism = (values, sigma) => {
      calls++;
      for (let i = 0; i < values.length; i++) values[i] = values[i]! + sigma;
    };
    const optimizer = tf.train.sgd(1);
    const { report } = await trainDpSgd(net, { x, y, features, labelWidth: 1, n: 20 }, { clipNorm: 1, noiseMultiplier: 1, samplingRate: 0.25, noise, random: allHigh, epochs: 2, loss: 'binaryCrossentropy', optimizer });
    expect(report.steps).toBe(8);
    expect(calls).toBe(16);
    // only noise moved the weights: 8 steps of -1 x (sigma 1) / (0.25 x 20) = -1.6 per coordinate
    const before = readWeights(denseNetwork(features, [{ name: 'o', units: 1, activation: 'sigmoid' }], 1)).params.get('o/bias')!.data[0]!;
    expect(readWeights(net).params.get('o/bias')!.data[0]).toBeCloseTo(Number(before) - 1.6, 5);
    optimizer.dispose();
  });

  it('refuses networks and losses it cannot clip per example (E_ML_DP_UNSUPPORTED)', async () => {
    const conv = tfl.sequential({ layers: [tfl.layers.dense({ units: 2, inputShape: [3] }), tfl.layers.dropout({ rate: 0.1 }), tfl.layers.dense({ units: 1, activation: 'sigmoid' })] });
    const bceSoftmax = denseNetwork(3, [{ name: 'o', units: 2, activation: 'softmax' }]);
    const { x, y } = data(4, 3, 1);
    for (const net of [conv, bceSoftmax]) {
      const optimizer = tf.train.sgd(0.1);
      await expect(trainDpSgd(net, { x, y, features: 3, labelWidth: 1, n: 4 }, { clipNorm: 1, noiseMultiplier: 1, samplingRate: 0.5, noise: noNoise, epochs: 1, loss: 'binaryCrossentropy', optimizer })).rejects.toSatisfy((e) => isFlareError(e, 'E_ML_DP_UNSUPPORTED'));
      optimizer.dispose();
    }
  });

  it('a learner asked for DP-SGD on a network it cannot clip is refused when it is made (E_ML_DP_UNSUPPORTED)', () => {
    const train = { x: new Float32Array(4 * 16), y: new Float32Array(4), features: 16 };
    const dpSgd = { clipNorm: 1, noiseMultiplier: 1, samplingRate: 0.5, noise: noNoise };
    // A convolutional network: any LayersModel trains without DP, but DP-SGD clips dense stacks only.
    const conv = () =>
      tfl.sequential({ layers: [tfl.layers.reshape({ targetShape: [4, 4, 1], inputShape: [16] }), tfl.layers.conv2d({ name: 'conv', filters: 2, kernelSize: 3 }), tfl.layers.flatten(), tfl.layers.dense({ name: 'out', units: 1, activation: 'sigmoid' })] });
    expect(() => new TfjsLearner({ build: conv, train, dpSgd })).toThrow(expect.objectContaining({ code: 'E_ML_DP_UNSUPPORTED', message: expect.stringContaining('Reshape') }));
    const softmaxOut = () => denseNetwork(16, [{ name: 'o', units: 1, activation: 'softmax' }]);
    expect(() => new TfjsLearner({ build: softmaxOut, train, dpSgd })).toThrow(expect.objectContaining({ code: 'E_ML_DP_UNSUPPORTED' }));
    expect(() => new TfjsLearner({ build: () => denseNetwork(16, [{ name: 'o', units: 1, activation: 'sigmoid' }]), train, dpSgd })).not.toThrow();
  });

  it('refuses nonsense settings with a RangeError', () => {
    const train = { x: new Float32Array(4), y: new Float32Array(2), features: 2 };
    const build = () => denseNetwork(2, [{ name: 'o', units: 1, activation: 'sigmoid' }]);
    for (const bad of [{ clipNorm: 0 }, { noiseMultiplier: -1 }, { samplingRate: 1.5 }, { samplingRate: Number.NaN }]) {
      expect(() => new TfjsLearner({ build, train, dpSgd: { clipNorm: 1, noiseMultiplier: 1, samplingRate: 0.1, noise: noNoise, ...bad } })).toThrow(RangeError);
    }
  });
});

describe('TfjsLearner with dpSgd', () => {
  it('learns separable data under real noise and reports what the accountant needs in meta.dp_sgd', async () => {
    const features = 8;
    const build = () => denseNetwork(features, [{ name: 'o', units: 1, activation: 'sigmoid' }], 11);
    const train = { ...data(400, features, 21), features };
    const validation = { ...data(400, features, 77), features };
    const learner = new TfjsLearner({ build, train, validation, epochs: 1, optimizer: { name: 'sgd', learningRate: 1 }, dpSgd: { clipNorm: 1, noiseMultiplier: 1, samplingRate: 0.1, noise: seededGaussian(3) } });
    let global = readWeights(build());
    const initial = await learner.validate(global, { site: 's', job: 'j', round: 0 });
    for (let round = 0; round < 5; round++) {
      const update = await learner.train(global, { site: 's', job: 'j', round });
      expect(update.meta['dp_sgd']).toEqual({ noise_multiplier: 1, sampling_rate: 0.1, clip_norm: 1, steps: 10 });
      expect(update.meta['NUM_STEPS_CURRENT_ROUND']).toBe(10);
      const next = readWeights(learner.network);
      global = next;
    }
    const { accuracy } = await learner.validate(global, { site: 's', job: 'j', round: 5 });
    expect(initial['accuracy']).toBeLessThan(0.7);
    expect(accuracy).toBeGreaterThan(0.9);
  });
});
