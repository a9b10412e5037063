import type { FloatArray } from '@flare/core';
import { MomentOptimizer, hyper, type ServerOptimizerName } from './server-optimizer.js';

/** Options of {@link FedYogi}. */
export interface FedYogiOptions {
  /** Server learning rate eta (default 0.01). */
  readonly eta?: number | undefined;
  /** First-moment decay beta1 (default 0.9). */
  readonly beta1?: number | undefined;
  /** Second-moment decay beta2 (default 0.99). */
  readonly beta2?: number | undefined;
  /** Adaptivity tau (default 1e-3). */
  readonly tau?: number | undefined;
  /** Initial second moment v_-1 (default 0). */
  readonly initialAccumulator?: number | undefined;
}

/**
 * FedYogi (Reddi et al., "Adaptive federated optimization", ICLR 2021, Algorithm 2; Zaheer et al. 2018):
 * m <- beta1 m + (1 - beta1) delta; v <- v - (1 - beta2) delta^2 sign(v - delta^2);
 * x <- x + eta m / (sqrt(v) + tau). State: m and v, 16 bytes per parameter.
 */
export class FedYogi extends MomentOptimizer {
  readonly name: ServerOptimizerName = 'fedyogi';
  readonly hyperparameters: Readonly<Record<string, number>>;
  protected readonly usesSecondMoment = true;
  protected override readonly initialV: number;
  readonly #eta: number;
  readonly #beta1: number;
  readonly #beta2: number;
  readonly #tau: number;

  constructor(options: FedYogiOptions = {}) {
    super();
    this.#eta = hyper('eta', options.eta ?? 0.01, 0, Number.MAX_VALUE);
    this.#beta1 = hyper('beta1', options.beta1 ?? 0.9, 0, 1, true);
    this.#beta2 = hyper('beta2', options.beta2 ?? 0.99, 0, 1, true);
    this.#tau = hyper('tau', options.tau ?? 1e-3, 0, Number.MAX_VALUE);
    this.initialV = hyper('initialAccumulator', options.initialAccumulator ?? 0, 0, Number.MAX_VALUE);
    this.hyperparameters = Object.freeze({ eta: this.#eta, beta1: this.#beta1, beta2: this.#beta2, tau: this.#tau, initialAccumulator: this.initialV });
  }

  protected apply(x: FloatArray, d: FloatArray, m: Float64Array, v: Float64Array | undefined, out: FloatArray): void {
    const vv = v!;
    const eta = this.#eta;
    const b1 = this.#beta1;
    const b2 = this.#beta2;
    const tau = this.#tau;
    for (let i = 0; i < x.length; i++) {
      const di = d[i]!;
      const d2 = di * di;
      const mi = b1 * m[i]! + (1 - b1) * di;
      const vi = vv[i]! - (1 - b2) * d2 * Math.sign(vv[i]! - d2);
      m[i] = mi;
      vv[i] = vi;
      out[i] = x[i]! + (eta * mi) / (Math.sqrt(vi) + tau);
    }
  }
}
