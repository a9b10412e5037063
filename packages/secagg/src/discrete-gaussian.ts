import { cryptoRandomWords, type DiscreteGaussianSampler, type RandomWords } from './encode.js';

// The exact discrete Gaussian of Canonne, Kamath and Steinke ("The Discrete Gaussian for Differential Privacy",
// NeurIPS 2020, Algorithms 1-3) in exact rational arithmetic (BigInt): for the float64 σ² given (a dyadic
// rational), every draw has exactly the law N_Z(0, σ²), whatever the float rounding, with uniform words from the
// CSPRNG. No table, no floating-point exponential: the privacy statement holds as written. Cost: a few tens of
// microseconds per coordinate here (BigInt); a 1M-parameter update takes tens of seconds, a 10k one well under
// a second.

/** A buffered stream of 32-bit words and exact uniform integers below a bound. */
class Words {
  readonly #random: RandomWords;
  readonly #buf = new Uint32Array(1024);
  #at = 1024;

  constructor(random: RandomWords) {
    this.#random = random;
  }

  next(): number {
    if (this.#at === this.#buf.length) {
      this.#random.fill(this.#buf);
      this.#at = 0;
    }
    return this.#buf[this.#at++]!;
  }

  /** A uniform integer in [0, n) for n >= 1, by rejection (no modulo bias). */
  below(n: bigint): bigint {
    if (n === 1n) return 0n;
    const words = Math.ceil(n.toString(2).length / 32);
    const top = 1n << BigInt(words * 32);
    const limit = top - (top % n);
    // Each try is rejected with probability < 1/2: 256 rejections in a row mean a broken source.
    for (let i = 0; i < 256; i++) {
      let v = 0n;
      for (let w = 0; w < words; w++) v = (v << 32n) | BigInt(this.next());
      if (v < limit) return v % n;
    }
    throw new Error('the random source returned only rejected values: it is broken');
  }
}

/** The float64 x >= 0 as an exact fraction p/q (q a power of two). */
function rational(x: number): { p: bigint; q: bigint } {
  let q = 1n;
  let v = x;
  while (!Number.isInteger(v)) {
    v *= 2;
    q *= 2n;
  }
  return { p: BigInt(v), q };
}

function isqrt(n: bigint): bigint {
  if (n < 2n) return n;
  let x = BigInt(Math.floor(Math.sqrt(Number(n))));
  while (x * x > n) x--;
  while ((x + 1n) * (x + 1n) <= n) x++;
  return x;
}

/**
 * An exact discrete Gaussian sampler for {@link encodeUpdate}'s distributed noise (Canonne, Kamath, Steinke 2020),
 * drawing from `random` (default: the operating system's CSPRNG; pass another source only in tests).
 *
 * @example
 * ```ts
 * const ring = encodeUpdate(update, config, { sampler: exactDiscreteGaussian() });
 * ```
 */
export function exactDiscreteGaussian(random: RandomWords = cryptoRandomWords): DiscreteGaussianSampler {
  const words = new Words(random);
  const bernoulli = (p: bigint, q: bigint): boolean => words.below(q) < p;
  // Algorithm 1: Bernoulli(exp(-p/q)).
  const bernoulliExp = (p: bigint, q: bigint): boolean => {
    if (p <= q) {
      let k = 1n;
      while (bernoulli(p, q * k)) k++;
      return k % 2n === 1n;
    }
    for (let i = 0n; i < p / q; i++) if (!bernoulliExp(1n, 1n)) return false;
    return bernoulliExp(p % q, q);
  };
  // Algorithm 2: the discrete Laplace of integer scale t.
  const laplace = (t: bigint): bigint => {
    for (;;) {
      const u = words.below(t);
      if (!bernoulliExp(u, t)) continue;
      let v = 0n;
      while (bernoulliExp(1n, 1n)) v++;
      const x = u + t * v;
      const negative = bernoulli(1n, 2n);
      if (negative && x === 0n) continue;
      return negative ? -x : x;
    }
  };
  // Algorithm 3: N_Z(0, p/q) by rejection from the discrete Laplace of scale ⌊σ⌋ + 1.
  const gaussian = (p: bigint, q: bigint): bigint => {
    const t = isqrt(p / q) + 1n;
    for (;;) {
      const y = laplace(t);
      const ay = y < 0n ? -y : y;
      const num = (q * t * ay - p) ** 2n;
      if (bernoulliExp(num, 2n * p * q * t * t)) return y;
    }
  };
  return Object.freeze({
    sample(out: Float64Array, sigma: number): void {
      if (!(sigma > 0 && Number.isFinite(sigma))) throw new RangeError(`"sigma" expected a finite positive number, got ${sigma}`);
      const { p, q } = rational(sigma * sigma);
      for (let i = 0; i < out.length; i++) out[i] = Number(gaussian(p, q));
    },
  });
}
