import { DpError } from '@flare/core';
import { logAdd, logErfc, logSub } from './log-math.js';

// Rényi differential privacy (RDP) of the Poisson-subsampled Gaussian mechanism, after Mironov, Talwar and
// Zhang, "Rényi Differential Privacy of the Sampled Gaussian Mechanism" (2019), Section 3: A_α is computed
// exactly, at integer orders by the binomial expansion (their Eq. 3.3 / Corollary 7) and at fractional orders by
// the two-sided series of Section 3.3, both in log space so that large orders and tiny sampling rates neither
// overflow nor lose the result. This follows the exact computation of Opacus and TensorFlow Privacy (signed
// series at fractional orders), not dp_accounting's conservative one (since 2024 it sums |terms|).

/**
 * Opacus's default RDP orders: 1.1, 1.2, ..., 10.9 and 12, 13, ..., 63
 * (opacus/accountants/rdp.py DEFAULT_ALPHAS).
 */
export const DEFAULT_ORDERS: readonly number[] = Object.freeze([
  ...Array.from({ length: 99 }, (_, i) => 1 + (i + 1) / 10),
  ...Array.from({ length: 52 }, (_, i) => 12 + i),
]);

/** Parameters of {@link rdp}. */
export interface RdpOptions {
  /** Standard deviation of the noise divided by the L2 sensitivity (z, also written σ). Must be >= 0. */
  readonly noiseMultiplier: number;
  /** Poisson sampling probability q of each record (for a site: of the site taking part in a round), in [0, 1]. */
  readonly samplingRate: number;
  /** The RDP orders α, each > 1 (Infinity allowed). */
  readonly orders: readonly number[];
}

// The fractional-order series stops when both new terms fall below e^-30 (Opacus's rule); the loop is also
// bounded so that a pathological input cannot spin: past the bound the order is answered conservatively.
const FRAC_TERM_FLOOR = -30;
const FRAC_MAX_TERMS = 200_000;

function logAInt(q: number, sigma: number, alpha: number): number {
  // A_α = Σ_i C(α, i) q^i (1-q)^(α-i) exp((i² - i) / (2σ²)). The binomial weights sum to 1 and the i = 0, 1
  // terms have exponent 0, so A_α - 1 = Σ_{i>=2} C(α, i) q^i (1-q)^(α-i) expm1((i² - i) / (2σ²)): every term is
  // positive and nothing cancels, which keeps full relative precision when A_α is close to 1 (tiny q, large σ).
  const logQ = Math.log(q);
  const log1mQ = Math.log1p(-q);
  const inv2s2 = 1 / (2 * sigma * sigma);
  let logAm1 = -Infinity;
  let logCoef = Math.log(alpha); // ln C(α, 1)
  for (let i = 2; i <= alpha; i++) {
    logCoef += Math.log((alpha - i + 1) / i);
    const x = (i * i - i) * inv2s2;
    // ln expm1(x): for large x expm1 overflows, and ln expm1(x) = x + ln(1 - e^-x) there.
    const logExpm1 = x > 30 ? x + Math.log1p(-Math.exp(-x)) : Math.log(Math.expm1(x));
    logAm1 = logAdd(logAm1, logCoef + i * logQ + (alpha - i) * log1mQ + logExpm1);
  }
  // ln A = ln(1 + e^logAm1), written so that neither branch overflows.
  return logAm1 > 0 ? logAm1 + Math.log1p(Math.exp(-logAm1)) : Math.log1p(Math.exp(logAm1));
}

function logAFrac(q: number, sigma: number, alpha: number): number {
  // Mironov, Talwar, Zhang 2019, Section 3.3: A_α = A_0 + A_1 with two series over i of C(α, i) (signed for
  // i > α) times a Gaussian tail, split at z0 = σ² ln(1/q - 1) + 1/2.
  let logA0 = -Infinity;
  let logA1 = -Infinity;
  const z0 = sigma * sigma * Math.log(1 / q - 1) + 0.5;
  const logQ = Math.log(q);
  const log1mQ = Math.log1p(-q);
  const inv2s2 = 1 / (2 * sigma * sigma);
  const sqrt2Sigma = Math.SQRT2 * sigma;
  let logAbsCoef = 0;
  let coefPositive = true;
  for (let i = 0; i < FRAC_MAX_TERMS; i++) {
    if (i > 0) {
      const factor = (alpha - i + 1) / i; // C(α, i) = C(α, i-1) (α - i + 1) / i
      logAbsCoef += Math.log(Math.abs(factor));
      if (factor < 0) coefPositive = !coefPositive;
    }
    const j = alpha - i;
    const logT0 = logAbsCoef + i * logQ + j * log1mQ;
    const logT1 = logAbsCoef + j * logQ + i * log1mQ;
    const logE0 = Math.log(0.5) + logErfc((i - z0) / sqrt2Sigma);
    const logE1 = Math.log(0.5) + logErfc((z0 - j) / sqrt2Sigma);
    const logS0 = logT0 + (i * i - i) * inv2s2 + logE0;
    const logS1 = logT1 + (j * j - j) * inv2s2 + logE1;
    if (coefPositive) {
      logA0 = logAdd(logA0, logS0);
      logA1 = logAdd(logA1, logS1);
    } else {
      logA0 = logSub(logA0, logS0);
      logA1 = logSub(logA1, logS1);
      // A partial sum that turns negative means float64 lost the series: answer conservatively instead.
      if (Number.isNaN(logA0) || Number.isNaN(logA1)) return Number.NaN;
    }
    if (Math.max(logS0, logS1) < FRAC_TERM_FLOOR) return logAdd(logA0, logA1);
  }
  return Number.NaN;
}

function rdpOne(q: number, sigma: number, alpha: number): number {
  if (q === 0) return 0;
  if (sigma === 0) return Infinity;
  if (alpha === Infinity) return Infinity;
  if (q === 1) return alpha / (2 * sigma * sigma); // the plain Gaussian mechanism: α / (2σ²)
  if (Number.isInteger(alpha)) return logAInt(q, sigma, alpha) / (alpha - 1);
  const logA = logAFrac(q, sigma, alpha);
  if (Number.isFinite(logA)) return logA / (alpha - 1);
  // The fractional series did not settle in float64. RDP is non-decreasing in the order (Mironov 2017,
  // Proposition 9), so the exact value at ⌈α⌉ is a valid, slightly larger, bound.
  const up = Math.ceil(alpha);
  return logAInt(q, sigma, up) / (up - 1);
}

function checkCommon(noiseMultiplier: number, samplingRate: number): void {
  if (!(Number.isFinite(noiseMultiplier) && noiseMultiplier >= 0)) {
    throw new RangeError(`"noiseMultiplier" expected a finite number >= 0, got ${noiseMultiplier}`);
  }
  if (!(samplingRate >= 0 && samplingRate <= 1)) throw new RangeError(`"samplingRate" expected a number in [0, 1], got ${samplingRate}`);
}

function checkOrders(orders: readonly number[]): void {
  if (orders.length === 0) throw new RangeError('"orders" expected at least one order');
  for (const a of orders) {
    if (!(a > 1)) throw new RangeError(`"orders" expected numbers > 1, got ${a}`);
  }
}

/**
 * RDP ε(α) of one application of the Poisson-subsampled Gaussian mechanism at each order, add-or-remove-one
 * adjacency. Multiply by the number of steps for composition (RDP adds up).
 *
 * @throws RangeError for a negative noise multiplier, a sampling rate outside [0, 1] or an order <= 1.
 * @example
 * ```ts
 * const perRound = rdp({ noiseMultiplier: 1.1, samplingRate: 0.01, orders: DEFAULT_ORDERS });
 * ```
 */
export function rdp({ noiseMultiplier, samplingRate, orders }: RdpOptions): number[] {
  checkCommon(noiseMultiplier, samplingRate);
  checkOrders(orders);
  return orders.map((a) => rdpOne(samplingRate, noiseMultiplier, a));
}

/** Parameters of {@link epsilonFromRdp}. */
export interface RdpConversion {
  readonly orders: readonly number[];
  /** Composed RDP at each order (same length as `orders`). */
  readonly rdp: readonly number[];
  /** Target δ in (0, 1). */
  readonly delta: number;
}

/** An (ε, δ) statement from RDP: the smallest ε over the orders, and the order that gave it. */
export interface EpsilonAtOrder {
  readonly epsilon: number;
  /** The optimal order; NaN when no order gives a finite ε. */
  readonly order: number;
}

/**
 * Converts RDP to (ε, δ)-DP with the bound of Balle et al. 2020 (Theorem 21) and Asoodeh et al. 2020, as Opacus,
 * dp_accounting and TensorFlow Privacy do: ε = min over α of rdp(α) + ln(1 − 1/α) − (ln δ + ln α)/(α − 1),
 * floored at 0 (an (ε, δ) guarantee with ε < 0 implies (0, δ)).
 *
 * @throws RangeError when δ is not in (0, 1), the arrays differ in length, or an order is <= 1.
 */
export function epsilonFromRdp({ orders, rdp: values, delta }: RdpConversion): EpsilonAtOrder {
  if (!(delta > 0 && delta < 1)) throw new RangeError(`"delta" expected a number in (0, 1), got ${delta}`);
  if (orders.length !== values.length) throw new RangeError(`"orders" and "rdp" differ in length (${orders.length} and ${values.length})`);
  checkOrders(orders);
  const logDelta = Math.log(delta);
  let best = Infinity;
  let bestOrder = Number.NaN;
  for (let k = 0; k < orders.length; k++) {
    const a = orders[k]!;
    const r = values[k]!;
    if (!Number.isFinite(r) || !Number.isFinite(a)) continue;
    const eps = r + Math.log1p(-1 / a) - (logDelta + Math.log(a)) / (a - 1);
    if (eps < best) {
      best = eps;
      bestOrder = a;
    }
  }
  return { epsilon: Math.max(0, best), order: bestOrder };
}

/** Parameters of {@link rdpEpsilon}. */
export interface RdpEpsilonOptions {
  readonly noiseMultiplier: number;
  readonly samplingRate: number;
  /** How many times the mechanism runs (rounds or steps), a non-negative integer. */
  readonly steps: number;
  readonly delta: number;
  /** Defaults to {@link DEFAULT_ORDERS} (Opacus's). */
  readonly orders?: readonly number[];
}

/**
 * ε of `steps` compositions of the Poisson-subsampled Gaussian mechanism at the given δ, by RDP.
 *
 * @throws RangeError for out-of-range arguments.
 * @example
 * ```ts
 * // Opacus's standard case: 7.3291... at order 3.9
 * const { epsilon, order } = rdpEpsilon({ noiseMultiplier: 1.5, samplingRate: 0.04, steps: 2250, delta: 1e-5 });
 * ```
 */
export function rdpEpsilon({ noiseMultiplier, samplingRate, steps, delta, orders = DEFAULT_ORDERS }: RdpEpsilonOptions): EpsilonAtOrder {
  if (!(Number.isSafeInteger(steps) && steps >= 0)) throw new RangeError(`"steps" expected a non-negative integer, got ${steps}`);
  const perStep = rdp({ noiseMultiplier, samplingRate, orders });
  return epsilonFromRdp({ orders, rdp: perStep.map((r) => r * steps), delta });
}

/** Parameters of {@link noiseMultiplierFor}. */
export interface NoiseCalibration {
  /** Target ε, > 0. */
  readonly epsilon: number;
  readonly delta: number;
  readonly samplingRate: number;
  /** Number of compositions, a positive integer. */
  readonly steps: number;
  readonly orders?: readonly number[];
  /**
   * The search stops when the ε reached is within this much below the target (default 0.01, Opacus's
   * `epsilon_tolerance`, so the answer equals Opacus's `get_noise_multiplier`).
   */
  readonly epsilonTolerance?: number;
}

const MAX_SIGMA = 1e6;

/**
 * The noise multiplier that keeps `steps` compositions of the subsampled Gaussian within ε at δ. The search is
 * Opacus's (`opacus.accountants.utils.get_noise_multiplier`): double from 10 until ε is met, then bisect until
 * the ε reached is within `epsilonTolerance` of the target, and return the upper end, so the answer never
 * exceeds the target ε.
 *
 * @throws DpError E_DP_UNREACHABLE_EPSILON when even σ = 1e6 does not reach ε; RangeError for bad arguments.
 * @example
 * ```ts
 * const z = noiseMultiplierFor({ epsilon: 8, delta: 1e-5, samplingRate: 0.04, steps: 2000 }); // 1.3562...
 * ```
 */
export function noiseMultiplierFor({
  epsilon,
  delta,
  samplingRate,
  steps,
  orders = DEFAULT_ORDERS,
  epsilonTolerance = 0.01,
}: NoiseCalibration): number {
  if (!(epsilon > 0 && Number.isFinite(epsilon))) throw new RangeError(`"epsilon" expected a finite number > 0, got ${epsilon}`);
  if (!(Number.isSafeInteger(steps) && steps >= 1)) throw new RangeError(`"steps" expected a positive integer, got ${steps}`);
  if (!(epsilonTolerance > 0)) throw new RangeError(`"epsilonTolerance" expected a number > 0, got ${epsilonTolerance}`);
  const eps = (sigma: number) => rdpEpsilon({ noiseMultiplier: sigma, samplingRate, steps, delta, orders }).epsilon;
  let sigmaLow = 0;
  let sigmaHigh = 10;
  let epsHigh = Infinity;
  while (epsHigh > epsilon) {
    sigmaHigh *= 2;
    if (sigmaHigh > MAX_SIGMA) {
      throw new DpError('E_DP_UNREACHABLE_EPSILON', `no noise multiplier up to ${MAX_SIGMA} reaches epsilon ${epsilon} at delta ${delta} over ${steps} steps with sampling rate ${samplingRate}`);
    }
    epsHigh = eps(sigmaHigh);
  }
  // Bisection halves the bracket each time; 200 halvings exhaust float64, so the bound is never the stop.
  for (let iter = 0; iter < 200 && epsilon - epsHigh > epsilonTolerance; iter++) {
    const sigma = (sigmaLow + sigmaHigh) / 2;
    const e = eps(sigma);
    if (e < epsilon) {
      sigmaHigh = sigma;
      epsHigh = e;
    } else {
      sigmaLow = sigma;
    }
  }
  return sigmaHigh;
}
