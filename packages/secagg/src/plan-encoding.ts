import { SecAggError } from '@flare/core';
import { ringLength, type Encoding, type RoundConfig } from './config.js';

/** What {@link planEncoding} needs: the update, the ring, the sites, and the noise if any. */
export interface EncodingPlanOptions {
  /** Values in each site's update. */
  readonly dimension: number;
  /** L2 clip bound c, in the update's units (each site clips its update to it). */
  readonly clip: number;
  /** Ring Z_{2^bits}, 1..32. */
  readonly bits: number;
  /** The most sites whose encoded updates are summed. */
  readonly sites: number;
  /** Random Hadamard rotation before rounding (default 'hadamard'). */
  readonly rotation?: Encoding['rotation'];
  /** β of the conditional randomized rounding (default e^-0.5, Kairouz et al.'s choice); 0 turns conditioning off. */
  readonly beta?: number;
  /** Bound on the probability that any coordinate of the sum wraps around the ring (default 1e-9). */
  readonly wrapProbability?: number;
  /**
   * Distributed discrete Gaussian noise: the honest sites' noise on the sum has standard deviation
   * multiplier · clip (as in DP-FedAvg), `honestSites` being how many honest sites the statement counts on.
   */
  readonly noise?: { readonly multiplier: number; readonly honestSites: number } | null;
}

/** The encoding chosen, with the figures it implies. */
export interface EncodingPlan {
  readonly encoding: Encoding;
  /** Ring elements per masked input. */
  readonly length: number;
  readonly bits: number;
  /** Bound on the probability that some coordinate of the sum of `sites` updates wraps around the ring. */
  readonly wrapProbability: number;
  /**
   * Standard deviation of the error of one coordinate of the decoded sum (rounding plus noise) when all `sites`
   * sites contribute, in the update's units. Clipping is not an error counted here.
   */
  readonly errorStddev: number;
  /** Standard deviation of the honest sites' noise on one coordinate of the sum, in the update's units (0 without noise). */
  readonly noiseStddevOnSum: number;
}

/**
 * The L2 norm bound of a vector of norm at most `norm` (in ring units) after conditional randomized rounding
 * to integers in dimension `d`: Kairouz, Liu, Steinke (ICML 2021), Theorem 2 / eq. (5):
 * min(norm + √d, √(norm² + d/4 + √(2 log(1/β))·(norm + √d/2))); β = 0 gives the unconditional bound norm + √d.
 */
export function roundedL2Bound(norm: number, beta: number, d: number): number {
  const always = norm + Math.sqrt(d);
  if (beta === 0) return always;
  const conditioned = Math.sqrt(norm * norm + d / 4 + Math.sqrt(2 * Math.log(1 / beta)) * (norm + Math.sqrt(d) / 2));
  return Math.min(always, conditioned);
}

/**
 * Chooses the granularity γ (the value of one ring unit) and each site's noise for a ring of `bits` bits: the
 * finest γ for which the sum of `sites` clipped, rotated, rounded and noised updates stays inside the ring
 * except with probability `wrapProbability` (Kairouz et al.'s modular clipping is then rare). Bounds used, per
 * coordinate j of the sum, in ring units, M = 2^(bits-1):
 * - hadamard: the rotated signal (HD·Σx)_j/γ is sub-Gaussian with proxy (n·c/γ)²/d (Hoeffding over the random
 *   signs), each site's rounding error adds 1/4 and its discrete Gaussian σ² (sub-Gaussian, Canonne, Kamath,
 *   Steinke 2020): P(wrap) <= 2d·exp(-M²/(2V)), V = (n·c/γ)²/d + n/4 + n·σ²;
 * - none: |Σ rounded| <= n·(c/γ + 1) always, plus a sub-Gaussian tail for the noise.
 *
 * @throws SecAggError E_SECAGG_PARAMS when the ring is too small for the sites, the dimension and the noise.
 */
export function planEncoding(options: EncodingPlanOptions): EncodingPlan {
  const { dimension, clip, bits, sites } = options;
  const rotation = options.rotation ?? 'hadamard';
  const beta = options.beta ?? Math.exp(-0.5);
  const eta = options.wrapProbability ?? 1e-9;
  const noise = options.noise ?? null;
  if (!(Number.isInteger(dimension) && dimension >= 1)) throw new RangeError(`"dimension" expected an integer >= 1, got ${dimension}`);
  if (!(clip > 0 && Number.isFinite(clip))) throw new RangeError(`"clip" expected a finite number > 0, got ${clip}`);
  if (!(Number.isInteger(bits) && bits >= 1 && bits <= 32)) throw new RangeError(`"bits" expected an integer in [1, 32], got ${bits}`);
  if (!(Number.isInteger(sites) && sites >= 1)) throw new RangeError(`"sites" expected an integer >= 1, got ${sites}`);
  if (!(beta >= 0 && beta < 1)) throw new RangeError(`"beta" expected a number in [0, 1), got ${beta}`);
  if (!(eta > 0 && eta < 1)) throw new RangeError(`"wrapProbability" expected a number in (0, 1), got ${eta}`);
  if (noise !== null) {
    if (!(noise.multiplier > 0 && Number.isFinite(noise.multiplier))) throw new RangeError(`"noise.multiplier" expected a finite number > 0, got ${noise.multiplier}`);
    if (!(Number.isInteger(noise.honestSites) && noise.honestSites >= 1 && noise.honestSites <= sites)) {
      throw new RangeError(`"noise.honestSites" expected an integer in [1, ${sites}], got ${noise.honestSites}`);
    }
  }
  const d = ringLength(dimension, rotation);
  const n = sites;
  const M = 2 ** (bits - 1);
  const L = Math.log((2 * d) / eta);
  // Each site's noise in update units: the honest sites' noise on the sum has standard deviation multiplier·c.
  const sigma = noise === null ? 0 : (noise.multiplier * clip) / Math.sqrt(noise.honestSites);
  let gamma: number;
  if (rotation === 'hadamard') {
    const vMax = (M * M) / (2 * L);
    if (vMax <= n / 4) {
      throw new SecAggError('E_SECAGG_PARAMS', `a ${bits}-bit ring cannot hold the rounding error of ${n} sites over ${d} coordinates (needs more than ${Math.ceil(Math.log2(Math.sqrt(n * L / 2)) + 1)} bits)`);
    }
    gamma = Math.sqrt(((n * clip) ** 2 / d + n * sigma * sigma) / (vMax - n / 4));
  } else {
    const room = M - 1 - n;
    if (room <= 0) throw new SecAggError('E_SECAGG_PARAMS', `a ${bits}-bit ring cannot hold the sum of ${n} rounded values`);
    gamma = (n * clip + sigma * Math.sqrt(2 * n * L)) / room;
  }
  const stddev = sigma / gamma;
  if (noise !== null && !(stddev >= 0.5)) {
    throw new SecAggError('E_SECAGG_PARAMS', `each site's noise would be ${stddev.toPrecision(3)} ring units, below the 1/2 the privacy bound needs: use a larger noise multiplier or fewer bits`);
  }
  const encoding: Encoding = {
    dimension,
    clip,
    granularity: gamma,
    rotation,
    beta,
    noise: noise === null ? null : { stddev, honestSites: noise.honestSites },
  };
  const bounds = encodingBounds(encoding, bits, n);
  return {
    encoding,
    length: d,
    bits,
    wrapProbability: bounds.wrapProbability,
    errorStddev: bounds.errorStddev,
    noiseStddevOnSum: noise === null ? 0 : sigma * Math.sqrt(noise.honestSites),
  };
}

/**
 * The wrap-around probability bound and the per-coordinate error of an encoding when `sites` updates are
 * summed in Z_{2^bits} (the bounds {@link planEncoding} uses; sites check a configuration with them).
 */
export function encodingBounds(encoding: Encoding, bits: number, sites: number): { wrapProbability: number; errorStddev: number } {
  const d = ringLength(encoding.dimension, encoding.rotation);
  const n = sites;
  const M = 2 ** (bits - 1);
  const cg = encoding.clip / encoding.granularity;
  const s2 = encoding.noise === null ? 0 : encoding.noise.stddev ** 2;
  let wrap: number;
  if (encoding.rotation === 'hadamard') {
    const v = (n * cg) ** 2 / d + n / 4 + n * s2;
    wrap = Math.min(1, 2 * d * Math.exp(-(M * M) / (2 * v)));
  } else {
    const room = M - 1 - n * (cg + 1);
    wrap = room <= 0 ? 1 : s2 === 0 ? 0 : Math.min(1, 2 * d * Math.exp(-(room * room) / (2 * n * s2)));
  }
  const errorStddev = encoding.granularity * Math.sqrt(n * (0.25 + s2));
  return { wrapProbability: wrap, errorStddev };
}

/** The largest wrap-around probability a site accepts in a configuration it is shown. */
export const MAX_WRAP_PROBABILITY = 1e-3;

/**
 * Checks a round's encoding before a site joins: the ring must hold the sum of all sites but with probability
 * at most {@link MAX_WRAP_PROBABILITY} (a server that pushed a worse configuration would only spoil the sum,
 * but a site should not spend privacy budget on a sum that is likely garbage).
 *
 * @throws SecAggError E_SECAGG_PARAMS.
 */
export function checkEncoding(config: RoundConfig): void {
  if (config.encoding === null) return;
  const { wrapProbability } = encodingBounds(config.encoding, config.bits, config.sites.length);
  if (!(wrapProbability <= MAX_WRAP_PROBABILITY)) {
    throw new SecAggError(
      'E_SECAGG_PARAMS',
      `the round's encoding lets the sum of ${config.sites.length} sites wrap around the ${config.bits}-bit ring with probability up to ${wrapProbability.toPrecision(3)}: refuse a granularity this fine`,
    );
  }
}
