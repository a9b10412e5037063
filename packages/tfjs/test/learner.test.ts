import { META, add, cloneModel, isFlareError, type FLModel } from '@flare/core';
import * as tfl from '@tensorflow/tfjs-layers';
import { beforeAll, describe, expect, it } from 'vitest';
import { selectBackend } from '../src/backend.js';
import { TfjsLearner, evaluateOn, type Dataset } from '../src/learner.js';
import { readWeights } from '../src/weights.js';

// A fixed-seed linear generator (Park-Miller) so the data, and so the expected accuracy, are reproducible.
function lcg(seed: number): () => number {
  let s = seed;
  return () => {
    s = (s * 48271) % 2147483647;
    return s / 2147483647;
  };
}

/** Two Gaussian-ish blobs in 8 dimensions, separable by the sign of the feature sum. */
function blobs(n: number, seed: number): Dataset {
  const r = lcg(seed);
  const features = 8;
  const x = new Float32Array(n * features);
  const y = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const label = i % 2;
    y[i] = label;
    for (let j = 0; j < features; j++) x[i * features + j] = (label === 1 ? 0.5 : -0.5) + (r() - 0.5);
  }
  return { x, y, features };
}

function logistic(): tfl.LayersModel {
  const m = tfl.sequential();
  m.add(tfl.layers.dense({ name: 'logit', units: 1, inputShape: [8], activation: 'sigmoid', kernelInitializer: 'zeros' }));
  return m;
}

const ctx = { site: 'site-1', job: 'job-1', round: 0 };

beforeAll(async () => {
  await selectBackend({ prefer: 'cpu' });
});

/** A small convolutional network on the 8 features seen as a 2x4 image: any LayersModel with named weights trains. */
function convNet(): tfl.LayersModel {
  return tfl.sequential({
    layers: [
      tfl.layers.reshape({ name: 'image', targetShape: [2, 4, 1], inputShape: [8] }),
      tfl.layers.conv2d({ name: 'conv', filters: 4, kernelSize: 2, activation: 'relu', kernelInitializer: 'glorotUniform' }),
      tfl.layers.flatten({ name: 'flat' }),
      tfl.layers.dense({ name: 'out', units: 1, activation: 'sigmoid' }),
    ],
  });
}

describe('TfjsLearner', () => {
  it('trains any LayersModel with named weights, a convolutional one too: the update has its tensor names and shapes', async () => {
    const learner = new TfjsLearner({ build: convNet, train: blobs(200, 3), validation: blobs(100, 4), epochs: 3, batchSize: 16, optimizer: { name: 'adam', learningRate: 0.05 } });
    const global = readWeights(convNet());
    expect([...global.params.keys()].sort()).toEqual(['conv/bias', 'conv/kernel', 'out/bias', 'out/kernel']);
    const update = await learner.train(cloneModel(global), ctx);
    expect(update.kind).toBe('diff');
    for (const [name, t] of global.params) expect(update.params.get(name)?.shape).toEqual(t.shape);
    const metrics = await learner.validate(add(cloneModel(global), update), ctx);
    expect(metrics['accuracy']).toBeGreaterThan(0.8);
  });


  it('train returns a diff weighted by NUM_STEPS_CURRENT_ROUND = epochs x batches, and global + diff = local', async () => {
    const learner = new TfjsLearner({ build: logistic, train: blobs(100, 1), epochs: 2, batchSize: 32 });
    const global = readWeights(logistic());
    const update = await learner.train(cloneModel(global), ctx);
    expect(update.kind).toBe('diff');
    expect(update.meta[META.NUM_STEPS_CURRENT_ROUND]).toBe(2 * 4);
    expect(learner.stepsPerRound).toBe(8);
    expect(update.metrics?.['train_loss']).toBeGreaterThan(0);
    const local = add(cloneModel(global), update);
    expect(Array.from(local.params.get('logit/kernel')!.data as Float32Array)).toEqual(Array.from(readWeights(learner.network).params.get('logit/kernel')!.data as Float32Array));
  });

  it('learns: validation accuracy on held-out data rises above 0.95 within three rounds of FedAvg-style updates', async () => {
    const learner = new TfjsLearner({
      build: logistic,
      train: blobs(200, 7),
      validation: blobs(200, 99),
      optimizer: { name: 'adam', learningRate: 0.05 },
    });
    let global: FLModel = readWeights(logistic());
    const before = await learner.validate(global, ctx);
    expect(before['accuracy']).toBeLessThan(0.6);
    for (let round = 0; round < 3; round++) {
      const update = await learner.train(cloneModel(global), { ...ctx, round });
      global = add(global, update);
    }
    const after = await learner.validate(global, ctx);
    expect(after['accuracy']).toBeGreaterThan(0.95);
    expect(after['loss']).toBeLessThan(before['loss']!);
  });

  it("output 'full' returns full weights", async () => {
    const learner = new TfjsLearner({ build: logistic, train: blobs(40, 3), output: 'full' });
    const update = await learner.train(readWeights(logistic()), ctx);
    expect(update.kind).toBe('full');
  });

  it('reports progress and stops within a batch when the task is aborted', async () => {
    const learner = new TfjsLearner({ build: logistic, train: blobs(400, 5), epochs: 5, batchSize: 8 });
    const ac = new AbortController();
    const seen: number[] = [];
    const err = await learner
      .train(readWeights(logistic()), {
        ...ctx,
        signal: ac.signal,
        progress: (f) => {
          seen.push(f);
          if (seen.length === 3) ac.abort(new Error('cancelled'));
        },
      })
      .catch((e: unknown) => e);
    expect((err as Error).message).toBe('cancelled');
    expect(seen.length).toBeLessThan(10);
    expect(seen[0]).toBeCloseTo(1 / 250);
  });

  it('refuses data whose labels do not match the samples (E_ML_DATA_SHAPE)', () => {
    const d = blobs(10, 1);
    expect(() => new TfjsLearner({ build: logistic, train: { ...d, y: d.y.subarray(1) } })).toThrow(expect.objectContaining({ code: 'E_ML_DATA_SHAPE' }));
    expect(() => new TfjsLearner({ build: logistic, train: { ...d, x: d.x.subarray(1) } })).toThrow(expect.objectContaining({ code: 'E_ML_DATA_SHAPE' }));
    expect(() => new TfjsLearner({ build: logistic, train: { x: new Float32Array(0), y: new Float32Array(0), features: 8 } })).toThrow(
      expect.objectContaining({ code: 'E_ML_DATA_SHAPE' }),
    );
  });

  it('rejects programmer misuse with RangeError', () => {
    expect(() => new TfjsLearner({ build: logistic, train: blobs(10, 1), epochs: 0 })).toThrow(RangeError);
    expect(() => new TfjsLearner({ build: logistic, train: blobs(10, 1), optimizer: { name: 'sgd', learningRate: -1 } })).toThrow(RangeError);
  });

  it('refuses to return an update when training diverges to NaN (E_ML_NOT_FINITE)', async () => {
    const d = blobs(20, 1);
    d.x[3] = Number.NaN;
    const learner = new TfjsLearner({ build: logistic, train: d });
    const err = await learner.train(readWeights(logistic()), ctx).catch((e: unknown) => e);
    expect(isFlareError(err, 'E_ML_NOT_FINITE')).toBe(true);
  });

  it('evaluateOn gives binary cross-entropy ln 2 and chance accuracy for an all-zero logistic model', () => {
    const net = logistic();
    const r = evaluateOn(net, blobs(50, 2));
    expect(r['loss']).toBeCloseTo(Math.LN2, 5);
    // sigmoid(0) = 0.5 is not > 0.5: everything is predicted 0, so accuracy is the share of 0 labels.
    expect(r['accuracy']).toBeCloseTo(0.5, 5);
  });
});
