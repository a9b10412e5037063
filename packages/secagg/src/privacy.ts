import { SecAggError } from '@flare/core';
import { ringLength, type RoundConfig } from './config.js';
import { roundedL2Bound } from './plan-encoding.js';

/**
 * The privacy of one round's sum under the distributed discrete Gaussian, for one site, with add/remove-one-site
 * adjacency (the unit of DP-FedAvg): what each site's accountant charges for the round.
 */
export interface DistributedDpPrivacy {
  /** ρ: the sum is ρ-zCDP (Bun and Steinke 2016) with respect to one site's contribution. */
  readonly rho: number;
  /** RDP ε(α) at each order α > 1 (Mironov 2017), the curve an RDP accountant composes over rounds. */
  rdp(orders: readonly number[]): number[];
  /** Δ₂: the L2 norm bound of one site's rounded contribution, in ring units (after conditional rounding). */
  readonly l2Sensitivity: number;
  /** Δ₁ = Δ₂·min(√d, Δ₂): its L1 bound (an integer vector's L1 norm is at most its squared L2 norm). */
  readonly l1Sensitivity: number;
  /** τ of Kairouz et al.: how far a sum of discrete Gaussians is from a discrete Gaussian (~0 for σ >= 2). */
  readonly tau: number;
  /** Honest sites whose noise the statement counts on. */
  readonly honestSites: number;
  /** Each site's noise, in ring units. */
  readonly noiseStddev: number;
  /** Ring elements d (after padding for the rotation). */
  readonly dimension: number;
}

/**
 * The privacy statement of a round's distributed discrete Gaussian (Kairouz, Liu, Steinke, "The Distributed
 * Discrete Gaussian Mechanism for Federated Learning with Secure Aggregation", ICML 2021, Proposition 14 /
 * Theorem 1): with m honest sites each adding N_Z(0, σ²) per coordinate (σ >= 1/2), one site's contribution of
 * L2 norm Δ₂ and L1 norm Δ₁, a = Δ₂/(√m·σ), b = Δ₁/(√m·σ), τ = 10·Σ_{k=1}^{m-1} exp(-2π²σ²·k/(k+1)):
 *
 *   ε(α) = min( α·a²/2 + τ·d,  α·(a² + 2bτ + τ²d)/2,  α·(a + τ√d)²/2 ).
 *
 * The last two are of the form α·ρ, so the sum is ρ-zCDP with ρ = min(a² + 2bτ + τ²d, (a + τ√d)²)/2.
 * Rotation, rounding to the ring and wrap-around are post-processing or data-independent; the sensitivity is
 * the conditional-rounding bound of the clipped update (Kairouz et al., Theorem 2), which the encoder enforces.
 *
 * @throws SecAggError E_SECAGG_CONFIG when the round has no distributed noise.
 * @example
 * ```ts
 * const p = distributedDpPrivacy(config);
 * const rdp = p.rdp(BUDGET_ORDERS); // compose with @flare/filters-dp's accountant
 * ```
 */
export function distributedDpPrivacy(config: RoundConfig): DistributedDpPrivacy {
  const e = config.encoding;
  if (e === null || e.noise === null) throw new SecAggError('E_SECAGG_CONFIG', 'the round adds no distributed noise: there is no privacy statement to make');
  const d = ringLength(e.dimension, e.rotation);
  const m = e.noise.honestSites;
  const sigma = e.noise.stddev;
  const l2 = roundedL2Bound(e.clip / e.granularity, e.beta, d);
  const l1 = l2 * Math.min(Math.sqrt(d), l2);
  let tau = 0;
  for (let k = 1; k < m; k++) {
    const term = Math.exp(-2 * Math.PI * Math.PI * sigma * sigma * (k / (k + 1)));
    if (term === 0) break; // the terms only shrink as k grows
    tau += term;
  }
  tau *= 10;
  const a = l2 / (Math.sqrt(m) * sigma);
  const b = l1 / (Math.sqrt(m) * sigma);
  const second = a * a + 2 * b * tau + tau * tau * d;
  const third = (a + tau * Math.sqrt(d)) ** 2;
  return {
    rho: Math.min(second, third) / 2,
    rdp(orders: readonly number[]): number[] {
      return orders.map((alpha) => {
        if (!(alpha > 1)) throw new RangeError(`an RDP order must exceed 1, got ${alpha}`);
        return Math.min((alpha * a * a) / 2 + tau * d, (alpha * second) / 2, (alpha * third) / 2);
      });
    },
    l2Sensitivity: l2,
    l1Sensitivity: l1,
    tau,
    honestSites: m,
    noiseStddev: sigma,
    dimension: d,
  };
}
