import type { FloatArray } from '@flare/core';
import { MomentOptimizer, hyper, type ServerOptimizerName } from './server-optimizer.js';

/** Options of {@link FedAvgM}; the names follow Flower's `server_learning_rate` and `server_momentum`. */
export interface FedAvgMOptions {
  /** Server learning rate eta (default 1: plain FedAvg when momentum is 0). */
  readonly eta?: number | undefined;
  /** Server momentum beta, 0 <= beta < 1 (default 0). */
  readonly momentum?: number | undefined;
}

/**
 * FedAvg with server momentum (Hsu, Qi & Brown, "Measuring the effects of non-identical data distribution
 * for federated visual classification", 2019; Flower's FedAvgM): m <- beta m + delta; x <- x + eta m.
 * State: m, 8 bytes per parameter.
 *
 * @example
 * ```ts
 * const next = new FedAvgM({ eta: 1, momentum: 0.9 }).step(globalModel, avgDiff);
 * ```
 */
export class FedAvgM extends MomentOptimizer {
  readonly name: ServerOptimizerName = 'fedavgm';
  readonly hyperparameters: Readonly<Record<string, number>>;
  protected readonly usesSecondMoment = false;
  readonly #eta: number;
  readonly #beta: number;

  constructor(options: FedAvgMOptions = {}) {
    super();
    this.#eta = hyper('eta', options.eta ?? 1, 0, Number.MAX_VALUE);
    this.#beta = hyper('momentum', options.momentum ?? 0, 0, 1, true);
    this.hyperparameters = Object.freeze({ eta: this.#eta, momentum: this.#beta });
  }

  protected apply(x: FloatArray, d: FloatArray, m: Float64Array, _v: Float64Array | undefined, out: FloatArray): void {
    const eta = this.#eta;
    const beta = this.#beta;
    for (let i = 0; i < x.length; i++) {
      const mi = beta * m[i]! + d[i]!;
      m[i] = mi;
      out[i] = x[i]! + eta * mi;
    }
  }
}
