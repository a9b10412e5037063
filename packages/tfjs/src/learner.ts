import {
  META,
  MlError,
  silentLogger,
  sub,
  type FLModel,
  type Learner,
  type LearnerContext,
  type Logger,
} from '@flare/core';
import * as tf from '@tensorflow/tfjs-core';
import type { LayersModel } from '@tensorflow/tfjs-layers';
import { checkDpSgd, checkDpSgdNetwork, trainDpSgd, type DpSgdOptions } from './dp-sgd.js';
import { readWeights, writeWeights } from './weights.js';

/** Samples as row-major features and labels, owned by the caller (never sent anywhere). */
export interface Dataset {
  /** `samples x features`, row-major. */
  readonly x: Float32Array;
  /** One label row per sample: `samples x labelWidth` (1 for binary or regression). */
  readonly y: Float32Array;
  readonly features: number;
  /** Label columns per sample (default 1). */
  readonly labelWidth?: number;
}

/** Optimizers the learner can build by name (tfjs-core's `tf.train`). */
export type OptimizerName = 'sgd' | 'adam' | 'rmsprop' | 'adagrad';

/** Options of {@link TfjsLearner}. */
export interface TfjsLearnerOptions {
  /** Builds the network (uncompiled) with fixed layer names; called once, lazily. */
  readonly build: () => LayersModel;
  /** This site's training data. */
  readonly train: Dataset;
  /** This site's validation data (default: the training data). */
  readonly validation?: Dataset;
  /** Local epochs per round (default 1). */
  readonly epochs?: number;
  /** Mini-batch size (default 32). */
  readonly batchSize?: number;
  /** Optimizer and learning rate (default sgd 0.1). A fresh optimizer is made each round. */
  readonly optimizer?: { readonly name: OptimizerName; readonly learningRate: number };
  /** Loss (default binaryCrossentropy). */
  readonly loss?: 'binaryCrossentropy' | 'categoricalCrossentropy' | 'meanSquaredError';
  /** What `train` returns: the weight difference from the global model (default) or full weights. */
  readonly output?: 'diff' | 'full';
  /**
   * Record-level differential privacy: train with DP-SGD (per-example clipping, Poisson subsampling, Gaussian
   * noise) instead of plain mini-batches; `batchSize` is then unused (the expected batch is q x samples). Each
   * round's update carries meta `dp_sgd` ({@link DpSgdReport}) for the site's accountant (@flare/filters-dp's
   * `dp-sgd-budget` filter). Dense networks only.
   */
  readonly dpSgd?: DpSgdOptions;
  readonly logger?: Logger;
}

function checkDataset(d: Dataset, what: string): number {
  const width = d.labelWidth ?? 1;
  if (!Number.isInteger(d.features) || d.features < 1) throw new MlError('E_ML_DATA_SHAPE', `${what}: features must be a positive integer`);
  if (d.x.length === 0 || d.x.length % d.features !== 0) throw new MlError('E_ML_DATA_SHAPE', `${what}: ${d.x.length} values are not a whole number of ${d.features}-feature samples`);
  const n = d.x.length / d.features;
  if (d.y.length !== n * width) throw new MlError('E_ML_DATA_SHAPE', `${what}: ${n} samples but ${d.y.length} label values (width ${width})`);
  return n;
}

function makeOptimizer(o: { readonly name: OptimizerName; readonly learningRate: number }): tf.Optimizer {
  switch (o.name) {
    case 'sgd':
      return tf.train.sgd(o.learningRate);
    case 'adam':
      return tf.train.adam(o.learningRate);
    case 'rmsprop':
      return tf.train.rmsprop(o.learningRate);
    case 'adagrad':
      return tf.train.adagrad(o.learningRate);
  }
}

function positive(name: string, v: number): number {
  if (!Number.isInteger(v) || v < 1) throw new RangeError(`"${name}" expected a positive integer, got ${v}`);
  return v;
}

/**
 * A {@link Learner} that trains a TensorFlow.js LayersModel on local data: `train` loads the global
 * weights, runs E local epochs of mini-batch training with a fresh optimizer, and returns the update
 * (`diff` by default) with meta `NUM_STEPS_CURRENT_ROUND` = epochs x batches (FLARE's FedAvg weight) and
 * metrics `train_loss`; `validate` returns `loss`, `accuracy` and sample count `n` of a model on the validation data.
 * Call {@link selectBackend} before the first round. Not safe for concurrent calls on one instance.
 *
 * @example
 * ```ts
 * await selectBackend({ logger });
 * const learner = new TfjsLearner({ build: buildNet, train: local, epochs: 2, batchSize: 32,
 *   optimizer: { name: 'adam', learningRate: 0.01 } });
 * const update = await learner.train(globalModel, { site: 'site-1', job: 'j1', round: 0 });
 * ```
 */
export class TfjsLearner implements Learner {
  readonly #opts: TfjsLearnerOptions;
  readonly #epochs: number;
  readonly #batchSize: number;
  readonly #trainN: number;
  #net: LayersModel | undefined;

  constructor(options: TfjsLearnerOptions) {
    this.#opts = options;
    this.#epochs = positive('epochs', options.epochs ?? 1);
    this.#batchSize = positive('batchSize', options.batchSize ?? 32);
    this.#trainN = checkDataset(options.train, 'training data');
    if (options.validation !== undefined) checkDataset(options.validation, 'validation data');
    if (options.dpSgd !== undefined) checkDpSgd(options.dpSgd);
    const lr = options.optimizer?.learningRate ?? 0.1;
    if (!(lr > 0) || !Number.isFinite(lr)) throw new RangeError(`"learningRate" expected a positive number, got ${lr}`);
    // A network DP-SGD cannot clip per example is refused now (a site refuses the job at deploy), not at round 1.
    if (options.dpSgd !== undefined) checkDpSgdNetwork(this.network, options.loss ?? 'binaryCrossentropy');
  }

  /** The network, built on first use. */
  get network(): LayersModel {
    this.#net ??= this.#opts.build();
    return this.#net;
  }

  /** Local training steps per round: epochs x ceil(samples / batch size). */
  get stepsPerRound(): number {
    return this.#epochs * Math.ceil(this.#trainN / this.#batchSize);
  }

  async train(global: FLModel, ctx: LearnerContext): Promise<FLModel> {
    if (this.#opts.dpSgd !== undefined) return this.#trainDpSgd(global, ctx, this.#opts.dpSgd);
    const logger = this.#opts.logger ?? silentLogger;
    const net = this.network;
    writeWeights(net, global);
    net.compile({ optimizer: makeOptimizer(this.#opts.optimizer ?? { name: 'sgd', learningRate: 0.1 }), loss: this.#opts.loss ?? 'binaryCrossentropy', metrics: ['accuracy'] });
    const d = this.#opts.train;
    const x = tf.tensor2d(d.x, [this.#trainN, d.features]);
    const y = tf.tensor2d(d.y, [this.#trainN, d.labelWidth ?? 1]);
    const batchesPerEpoch = Math.ceil(this.#trainN / this.#batchSize);
    let batches = 0;
    let lastLoss = Number.NaN;
    try {
      const history = await net.fit(x, y, {
        epochs: this.#epochs,
        batchSize: this.#batchSize,
        shuffle: true,
        verbose: 0,
        callbacks: {
          onBatchEnd: async () => {
            batches += 1;
            ctx.progress?.(Math.min(1, batches / (batchesPerEpoch * this.#epochs)));
            // tfjs checks stopTraining between batches: the abort lands within one batch.
            if (ctx.signal?.aborted === true) net.stopTraining = true;
          },
        },
      });
      const losses = history.history['loss'];
      const last = losses?.[losses.length - 1];
      lastLoss = typeof last === 'number' ? last : Number.NaN;
    } finally {
      x.dispose();
      y.dispose();
    }
    ctx.signal?.throwIfAborted();
    if (!Number.isFinite(lastLoss)) throw new MlError('E_ML_NOT_FINITE', `local training at '${ctx.site}' round ${ctx.round} gave loss ${lastLoss}`);
    logger.debug('local training done', { site: ctx.site, job: ctx.job, round: ctx.round, steps: batches, loss: lastLoss });
    return this.#update(global, ctx, batches, lastLoss, {});
  }

  async #trainDpSgd(global: FLModel, ctx: LearnerContext, dp: DpSgdOptions): Promise<FLModel> {
    const net = this.network;
    writeWeights(net, global);
    const d = this.#opts.train;
    const optimizer = makeOptimizer(this.#opts.optimizer ?? { name: 'sgd', learningRate: 0.1 });
    try {
      const { report, loss } = await trainDpSgd(
        net,
        { x: d.x, y: d.y, features: d.features, labelWidth: d.labelWidth ?? 1, n: this.#trainN },
        {
          ...dp,
          epochs: this.#epochs,
          loss: this.#opts.loss ?? 'binaryCrossentropy',
          optimizer,
          ...(ctx.signal === undefined ? {} : { signal: ctx.signal }),
          ...(ctx.progress === undefined ? {} : { onStep: ctx.progress }),
        },
      );
      (this.#opts.logger ?? silentLogger).debug('DP-SGD local training done', { site: ctx.site, job: ctx.job, round: ctx.round, ...report, loss });
      return this.#update(global, ctx, report.steps, loss, { dp_sgd: { ...report } });
    } finally {
      optimizer.dispose();
    }
  }

  #update(global: FLModel, ctx: LearnerContext, steps: number, loss: number, extra: FLModel['meta']): FLModel {
    const local = readWeights(this.network);
    for (const [name, t] of local.params) {
      if (!(t.data as Float32Array).every(Number.isFinite)) throw new MlError('E_ML_NOT_FINITE', `tensor '${name}' is not finite after local training`);
    }
    const out = this.#opts.output === 'full' ? local : sub(local, global);
    out.kind = this.#opts.output === 'full' ? 'full' : 'diff';
    out.meta = { [META.NUM_STEPS_CURRENT_ROUND]: steps, [META.CURRENT_ROUND]: ctx.round, ...extra };
    out.metrics = Number.isFinite(loss) ? { train_loss: loss } : {};
    return out;
  }

  async validate(global: FLModel, _ctx: LearnerContext): Promise<Record<string, number>> {
    const net = this.network;
    writeWeights(net, global);
    if (!net.optimizer) net.compile({ optimizer: 'sgd', loss: this.#opts.loss ?? 'binaryCrossentropy', metrics: ['accuracy'] });
    const d = this.#opts.validation ?? this.#opts.train;
    return evaluateOn(net, d, this.#opts.loss ?? 'binaryCrossentropy');
  }
}

/**
 * Loss, accuracy and sample count `n` of a network on a data set (binary labels: accuracy at threshold 0.5;
 * one-hot labels: argmax). Used by {@link TfjsLearner.validate} and by a server or admin that evaluates the global model on a
 * held-out split.
 */
export function evaluateOn(
  net: LayersModel,
  d: Dataset,
  loss: 'binaryCrossentropy' | 'categoricalCrossentropy' | 'meanSquaredError' = 'binaryCrossentropy',
): Record<string, number> {
  const n = checkDataset(d, 'evaluation data');
  const width = d.labelWidth ?? 1;
  return tf.tidy(() => {
    const x = tf.tensor2d(d.x, [n, d.features]);
    const y = tf.tensor2d(d.y, [n, width]);
    const p = net.predict(x) as tf.Tensor;
    let l: tf.Tensor;
    let correct: tf.Tensor;
    if (loss === 'categoricalCrossentropy') {
      l = tf.losses.softmaxCrossEntropy(y, tf.log(tf.clipByValue(p, 1e-7, 1)));
      correct = tf.equal(tf.argMax(p, 1), tf.argMax(y, 1));
    } else if (loss === 'meanSquaredError') {
      l = tf.losses.meanSquaredError(y, p);
      correct = tf.equal(tf.round(p), y);
    } else {
      l = tf.losses.sigmoidCrossEntropy(y, tf.log(tf.div(tf.clipByValue(p, 1e-7, 1 - 1e-7), tf.sub(1, tf.clipByValue(p, 1e-7, 1 - 1e-7)))));
      correct = tf.equal(tf.greater(p, 0.5), tf.greater(y, 0.5));
    }
    const accuracy = tf.mean(tf.cast(correct, 'float32')).dataSync()[0] ?? Number.NaN;
    return { loss: l.dataSync()[0] ?? Number.NaN, accuracy, n };
  });
}
