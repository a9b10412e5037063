import type { FloatArray } from '@flare/core';
import { MomentOptimizer, hyper, type ServerOptimizerName } from './server-optimizer.js';

/** Options of {@link FedAdam}. */
export interface FedAdamOptions {
  /** Server learning rate eta (default 0.1). */
  readonly eta?: number | undefined;
  /** First-moment decay beta1 (default 0.9). */
  readonly beta1?: number | undefined;
  /** Second-moment decay beta2 (default 0.99). */
  readonly beta2?: number | undefined;
  /** Adaptivity tau (default 1e-3). */
  readonly tau?: number | undefined;
  /** Initial second moment v_-1 (default 0). */
  readonly initialAccumulator?: number | undefined;
  /**
   * Bias correction of the step size: `'none'` (Reddi et al.'s Algorithm 2; default), `'adam'` (Kingma & Ba:
   * eta sqrt(1 - beta2^t) / (1 - beta1^t), t = steps so far including this one), or `'flower'` (Flower's
   * FedAdam, which uses the exponent t + 1).
   */
  readonly biasCorrection?: 'none' | 'adam' | 'flower' | undefined;
}

/**
 * FedAdam (Reddi et al., "Adaptive federated optimization", ICLR 2021, Algorithm 2):
 * m <- beta1 m + (1 - beta1) delta; v <- beta2 v + (1 - beta2) delta^2; x <- x + eta_t m / (sqrt(v) + tau).
 * State: m and v, 16 bytes per parameter.
 *
 * @example
 * ```ts
 * const adam = new FedAdam({ eta: 0.01 });
 * globalModel = adam.step(globalModel, avgDiff);
 * checkpoint.write(adam.saveState());
 * ```
 */
export class FedAdam extends MomentOptimizer {
  readonly name: ServerOptimizerName = 'fedadam';
  readonly hyperparameters: Readonly<Record<string, number | string>>;
  protected readonly usesSecondMoment = true;
  protected override readonly initialV: number;
  readonly #eta: number;
  readonly #beta1: number;
  readonly #beta2: number;
  readonly #tau: number;
  readonly #bias: 'none' | 'adam' | 'flower';

  constructor(options: FedAdamOptions = {}) {
    super();
    this.#eta = hyper('eta', options.eta ?? 0.1, 0, Number.MAX_VALUE);
    this.#beta1 = hyper('beta1', options.beta1 ?? 0.9, 0, 1, true);
    this.#beta2 = hyper('beta2', options.beta2 ?? 0.99, 0, 1, true);
    this.#tau = hyper('tau', options.tau ?? 1e-3, 0, Number.MAX_VALUE);
    this.initialV = hyper('initialAccumulator', options.initialAccumulator ?? 0, 0, Number.MAX_VALUE);
    const bias = options.biasCorrection ?? 'none';
    if (bias !== 'none' && bias !== 'adam' && bias !== 'flower') throw new RangeError(`"biasCorrection" expected 'none', 'adam' or 'flower', got ${String(bias)}`);
    this.#bias = bias;
    this.hyperparameters = Object.freeze({
      eta: this.#eta,
      beta1: this.#beta1,
      beta2: this.#beta2,
      tau: this.#tau,
      initialAccumulator: this.initialV,
      biasCorrection: bias,
    });
  }

  /** The step size at step t (1-based). */
  #stepSize(t: number): number {
    if (this.#bias === 'none') return this.#eta;
    // Kingma & Ba 2015, Section 2 (the line before 2.1): alpha_t = alpha sqrt(1 - beta2^t) / (1 - beta1^t).
    const e = this.#bias === 'adam' ? t : t + 1;
    return (this.#eta * Math.sqrt(1 - this.#beta2 ** e)) / (1 - this.#beta1 ** e);
  }

  protected apply(x: FloatArray, d: FloatArray, m: Float64Array, v: Float64Array | undefined, out: FloatArray, t: number): void {
    const vv = v!;
    const eta = this.#stepSize(t);
    const b1 = this.#beta1;
    const b2 = this.#beta2;
    const tau = this.#tau;
    for (let i = 0; i < x.length; i++) {
      const di = d[i]!;
      const mi = b1 * m[i]! + (1 - b1) * di;
      const vi = b2 * vv[i]! + (1 - b2) * di * di;
      m[i] = mi;
      vv[i] = vi;
      out[i] = x[i]! + (eta * mi) / (Math.sqrt(vi) + tau);
    }
  }
}
