import type { FloatArray } from '@flare/core';
import { MomentOptimizer, hyper, type ServerOptimizerName } from './server-optimizer.js';

/** Options of {@link FedAdagrad}. */
export interface FedAdagradOptions {
  /** Server learning rate eta (default 0.1). */
  readonly eta?: number | undefined;
  /** First-moment decay beta1 (default 0, as Flower's FedAdagrad). */
  readonly beta1?: number | undefined;
  /** Adaptivity tau (default 1e-3). */
  readonly tau?: number | undefined;
  /** Initial second moment v_-1 (default 0 as Flower; Reddi et al. allow any v_-1 >= tau^2). */
  readonly initialAccumulator?: number | undefined;
}

/**
 * FedAdagrad (Reddi et al., "Adaptive federated optimization", ICLR 2021, Algorithm 2):
 * m <- beta1 m + (1 - beta1) delta; v <- v + delta^2; x <- x + eta m / (sqrt(v) + tau).
 * State: m and v, 16 bytes per parameter.
 */
export class FedAdagrad extends MomentOptimizer {
  readonly name: ServerOptimizerName = 'fedadagrad';
  readonly hyperparameters: Readonly<Record<string, number>>;
  protected readonly usesSecondMoment = true;
  protected override readonly initialV: number;
  readonly #eta: number;
  readonly #beta1: number;
  readonly #tau: number;

  constructor(options: FedAdagradOptions = {}) {
    super();
    this.#eta = hyper('eta', options.eta ?? 0.1, 0, Number.MAX_VALUE);
    this.#beta1 = hyper('beta1', options.beta1 ?? 0, 0, 1, true);
    this.#tau = hyper('tau', options.tau ?? 1e-3, 0, Number.MAX_VALUE);
    this.initialV = hyper('initialAccumulator', options.initialAccumulator ?? 0, 0, Number.MAX_VALUE);
    this.hyperparameters = Object.freeze({ eta: this.#eta, beta1: this.#beta1, tau: this.#tau, initialAccumulator: this.initialV });
  }

  protected apply(x: FloatArray, d: FloatArray, m: Float64Array, v: Float64Array | undefined, out: FloatArray): void {
    const vv = v!;
    const { eta, b1, tau } = { eta: this.#eta, b1: this.#beta1, tau: this.#tau };
    for (let i = 0; i < x.length; i++) {
      const di = d[i]!;
      const mi = b1 * m[i]! + (1 - b1) * di;
      const vi = vv[i]! + di * di;
      m[i] = mi;
      vv[i] = vi;
      out[i] = x[i]! + (eta * mi) / (Math.sqrt(vi) + tau);
    }
  }
}
