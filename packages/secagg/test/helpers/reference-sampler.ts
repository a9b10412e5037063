import { createCipheriv, createHash } from 'node:crypto';
import type { DiscreteGaussianSampler, RandomWords } from '../../src/encode.js';

// An exact discrete Gaussian sampler for tests only: Canonne, Kamath, Steinke, "The Discrete Gaussian for
// Differential Privacy" (NeurIPS 2020), Algorithms 1-3, in exact rational arithmetic (BigInt), so its output
// distribution is exactly N_Z(0, σ²) for the float64 σ² given (a float64 is a dyadic rational). Random bits come
// from AES-256-CTR under a fixed seed so that statistical tests are reproducible. Slow (tens of microseconds per
// draw): the runtime injects @flare/filters-dp's sampler instead.

/** Uniform 32-bit words from AES-256-CTR(SHA-256(seed)): deterministic, for tests. */
export class SeededWords implements RandomWords {
  readonly #cipher;
  readonly #zeros = Buffer.alloc(4096);
  #buf = new Uint32Array(0);
  #at = 0;

  constructor(seed: string) {
    const key = createHash('sha256').update(seed).digest();
    this.#cipher = createCipheriv('aes-256-ctr', key, Buffer.alloc(16));
  }

  next(): number {
    if (this.#at === this.#buf.length) {
      const bytes = this.#cipher.update(this.#zeros);
      this.#buf = new Uint32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length));
      this.#at = 0;
    }
    return this.#buf[this.#at++]!;
  }

  fill(words: Uint32Array): void {
    for (let i = 0; i < words.length; i++) words[i] = this.next();
  }

  /** A uniform integer in [0, n) for n >= 1, by rejection (no modulo bias). */
  below(n: bigint): bigint {
    const bits = n.toString(2).length;
    const words = Math.ceil(bits / 32);
    const top = 1n << BigInt(words * 32);
    const limit = top - (top % n);
    for (;;) {
      let v = 0n;
      for (let i = 0; i < words; i++) v = (v << 32n) | BigInt(this.next());
      if (v < limit) return v % n;
    }
  }
}

/** An exact rational p/q with q > 0. */
interface Rational {
  readonly p: bigint;
  readonly q: bigint;
}

/** The float64 x >= 0 as an exact rational. */
function rationalOf(x: number): Rational {
  if (!(x >= 0 && Number.isFinite(x))) throw new RangeError(`expected a finite x >= 0, got ${x}`);
  let q = 1n;
  let v = x;
  while (!Number.isInteger(v)) {
    v *= 2;
    q *= 2n;
  }
  return { p: BigInt(v), q };
}

/** The exact discrete Gaussian of Canonne, Kamath and Steinke. */
export class ReferenceSampler implements DiscreteGaussianSampler {
  readonly random: SeededWords;

  constructor(seed: string) {
    this.random = new SeededWords(seed);
  }

  sample(out: Float64Array, sigma: number): void {
    const s2 = rationalOf(sigma * sigma);
    for (let i = 0; i < out.length; i++) out[i] = Number(this.gaussian(s2));
  }

  /** Bernoulli(p/q), 0 <= p <= q. */
  bernoulli(p: bigint, q: bigint): boolean {
    return this.random.below(q) < p;
  }

  /** Algorithm 1: Bernoulli(exp(-γ)) for a rational γ = p/q >= 0. */
  bernoulliExp(p: bigint, q: bigint): boolean {
    if (p <= q) {
      let k = 1n;
      while (this.bernoulli(p, q * k)) k++;
      return k % 2n === 1n;
    }
    for (let i = 0n; i < p / q; i++) if (!this.bernoulliExp(1n, 1n)) return false;
    return this.bernoulliExp(p % q, q);
  }

  /** Algorithm 2: the discrete Laplace with scale t (P(x) ∝ exp(-|x|/t)), t a positive integer. */
  laplace(t: bigint): bigint {
    for (;;) {
      const u = this.random.below(t);
      if (!this.bernoulliExp(u, t)) continue;
      let v = 0n;
      while (this.bernoulliExp(1n, 1n)) v++;
      const x = u + t * v;
      const negative = this.bernoulli(1n, 2n);
      if (negative && x === 0n) continue;
      return negative ? -x : x;
    }
  }

  /** Algorithm 3: N_Z(0, σ²) for σ² = p/q. */
  gaussian({ p, q }: Rational): bigint {
    const t = isqrt(p / q) + 1n;
    for (;;) {
      const y = this.laplace(t);
      const ay = y < 0n ? -y : y;
      // γ = (|y| - σ²/t)² / (2σ²) = (q·t·|y| - p)² / (2·p·q·t²)
      const num = (q * t * ay - p) ** 2n;
      const den = 2n * p * q * t * t;
      if (this.bernoulliExp(num, den)) return y;
    }
  }
}

function isqrt(n: bigint): bigint {
  if (n < 2n) return n;
  let x = BigInt(Math.floor(Math.sqrt(Number(n))));
  while (x * x > n) x--;
  while ((x + 1n) * (x + 1n) <= n) x++;
  return x;
}
