import { randomFillSync } from 'node:crypto';
import { SecAggError } from '@flare/core';
import type { Encoding, RoundConfig } from './config.js';
import { applySigns, hadamard } from './hadamard.js';
import { roundedL2Bound } from './plan-encoding.js';
import { ringMask } from './ring.js';

/**
 * Draws discrete Gaussian noise N_Z(0, σ²): P(z) ∝ exp(-z²/(2σ²)) over the integers (Canonne, Kamath, Steinke
 * 2020). The runtime passes @flare/filters-dp's CSPRNG sampler; this package never draws noise itself.
 */
export interface DiscreteGaussianSampler {
  /** Fills every element of `out` with an independent draw (an integer, stored as a float64) of standard deviation `sigma`. */
  sample(out: Float64Array, sigma: number): void;
}

/** Uniform random 32-bit words for stochastic rounding (the same shape as @flare/filters-dp's RandomSource). */
export interface RandomWords {
  /** Fills every element of `words` with independent uniform 32-bit values. */
  fill(words: Uint32Array): void;
}

/** The default {@link RandomWords}: the operating system's CSPRNG through node:crypto. */
export const cryptoRandomWords: RandomWords = Object.freeze({
  fill(words: Uint32Array): void {
    randomFillSync(words);
  },
});

/** Options of {@link encodeUpdate}. */
export interface EncodeOptions {
  /** Required when the round adds distributed noise. */
  readonly sampler?: DiscreteGaussianSampler;
  /** Randomness for stochastic rounding; leave unset in production (the CSPRNG). */
  readonly random?: RandomWords;
}

// Conditional rounding retries while the rounded norm exceeds its bound; each try fails with probability at most
// β < 1 (Kairouz et al., Theorem 2), so 1000 tries all fail with probability below β^1000 (< 10^-200 at e^-0.5).
const MAX_ROUNDING_TRIES = 1000;
// The accepted norm² is compared with the bound² shrunk by this factor, so float64 rounding in the (compensated)
// sum of squares can never accept a vector above the bound the privacy statement uses.
const NORM_MARGIN = 1 - 1e-12;
const WORDS = 16_384;

/**
 * Turns one site's float update into ring elements for {@link SecAggClient.receiveShares}, as Kairouz, Liu and
 * Steinke's Algorithm 1 does: clip to L2 norm `clip`, rotate (random signs, Walsh-Hadamard, padding to a power
 * of 2), scale by 1/γ, round each coordinate stochastically (retrying until the L2 norm is within the
 * conditional-rounding bound), add discrete Gaussian noise of the round's per-site σ, and reduce mod 2^bits.
 * The input is not modified.
 *
 * @throws SecAggError E_SECAGG_DIMENSION (wrong length), E_SECAGG_NON_FINITE (NaN or infinity),
 *   E_SECAGG_SAMPLER (the sampler returned a non-integer), E_SECAGG_CONFIG (the round has no encoding).
 */
export function encodeUpdate(update: Float32Array | Float64Array, config: RoundConfig, options: EncodeOptions = {}): Uint32Array {
  const e = encodingOf(config);
  if (update.length !== e.dimension) {
    throw new SecAggError('E_SECAGG_DIMENSION', `the update has ${update.length} values; round ${config.round} of job ${config.job} sums ${e.dimension}`);
  }
  let norm2 = 0;
  for (let i = 0; i < update.length; i++) {
    const x = update[i]!;
    if (!Number.isFinite(x)) throw new SecAggError('E_SECAGG_NON_FINITE', `value ${i} of the update is ${x}`);
    norm2 += x * x;
  }
  const norm = Math.sqrt(norm2);
  const factor = (norm > e.clip ? e.clip / norm : 1) / e.granularity;
  const v = new Float64Array(config.length);
  for (let i = 0; i < update.length; i++) v[i] = update[i]! * factor;
  if (e.rotation === 'hadamard') {
    applySigns(v, config.job, config.round);
    hadamard(v);
  }
  const rounded = roundConditionally(v, roundedL2Bound(e.clip / e.granularity, e.beta, config.length), options.random ?? cryptoRandomWords);
  if (e.noise !== null) {
    if (options.sampler === undefined) throw new TypeError('this round adds distributed noise: pass a DiscreteGaussianSampler');
    const noise = new Float64Array(config.length);
    options.sampler.sample(noise, e.noise.stddev);
    for (let i = 0; i < noise.length; i++) {
      const z = noise[i]!;
      if (!Number.isInteger(z) || Math.abs(z) > 2 ** 52) {
        throw new SecAggError('E_SECAGG_SAMPLER', `the discrete Gaussian sampler returned ${z} for coordinate ${i}, not an integer`);
      }
      rounded[i] = rounded[i]! + z;
    }
  }
  const ring = new Uint32Array(config.length);
  const mask = ringMask(config.bits);
  // Assigning an integer below 2^53 in magnitude to a Uint32Array stores it mod 2^32 (ToUint32), and 2^bits
  // divides 2^32: the mask then reduces mod 2^bits, negative values included.
  for (let i = 0; i < ring.length; i++) ring[i] = rounded[i]!;
  if (config.bits < 32) for (let i = 0; i < ring.length; i++) ring[i] = ring[i]! & mask;
  return ring;
}

/**
 * The sum of the encoded updates, back in the update's units: ring elements read as signed integers in
 * [-2^(bits-1), 2^(bits-1)), times γ, rotated back, padding dropped. Divide by the number of sites in the sum
 * for the mean.
 *
 * @throws SecAggError E_SECAGG_DIMENSION when `sum` does not have the round's ring length.
 */
export function decodeSum(sum: Uint32Array, config: RoundConfig): Float64Array {
  const e = encodingOf(config);
  if (sum.length !== config.length) throw new SecAggError('E_SECAGG_DIMENSION', `the sum has ${sum.length} ring elements; the round has ${config.length}`);
  const half = 2 ** (config.bits - 1);
  const modulus = 2 ** config.bits;
  const mask = ringMask(config.bits);
  const v = new Float64Array(sum.length);
  for (let i = 0; i < sum.length; i++) {
    const r = (sum[i]! & mask) >>> 0;
    v[i] = (r >= half ? r - modulus : r) * e.granularity;
  }
  if (e.rotation === 'hadamard') {
    hadamard(v);
    applySigns(v, config.job, config.round);
  }
  return v.slice(0, e.dimension);
}

function encodingOf(config: RoundConfig): Encoding {
  if (config.encoding === null) throw new SecAggError('E_SECAGG_CONFIG', `round ${config.round} of job ${config.job} has no encoding: it sums ring elements given directly`);
  return config.encoding;
}

/**
 * Stochastic rounding of each coordinate (⌊v⌋ + 1 with probability frac(v)), repeated while the result's L2
 * norm exceeds `bound`. Returns integers as float64.
 */
function roundConditionally(v: Float64Array, bound: number, random: RandomWords): Float64Array {
  const out = new Float64Array(v.length);
  const words = new Uint32Array(Math.min(WORDS, v.length));
  const limit = bound * bound * NORM_MARGIN;
  for (let attempt = 0; attempt < MAX_ROUNDING_TRIES; attempt++) {
    // Neumaier's compensated sum of squares: its error is a few ulps of the total, whatever the dimension.
    let sum = 0;
    let carry = 0;
    for (let at = 0; at < v.length; at += words.length) {
      random.fill(words);
      const end = Math.min(v.length, at + words.length);
      for (let i = at; i < end; i++) {
        const x = v[i]!;
        const floor = Math.floor(x);
        // 32-bit resolution: P(up) differs from frac(x) by less than 2^-32, which touches only the rounding's
        // mean, never the norm bound that privacy rests on.
        const r = floor + (words[i - at]! < (x - floor) * 4294967296 ? 1 : 0);
        out[i] = r;
        const sq = r * r;
        const t = sum + sq;
        carry += Math.abs(sum) >= sq ? sum - t + sq : sq - t + sum;
        sum = t;
      }
    }
    if (sum + carry <= limit) return out;
  }
  throw new SecAggError('E_SECAGG_PARAMS', `conditional rounding exceeded its norm bound ${MAX_ROUNDING_TRIES} times in a row: the encoding's beta is broken`);
}
