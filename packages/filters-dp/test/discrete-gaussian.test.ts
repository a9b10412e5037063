import { describe, expect, it } from 'vitest';
import { discreteGaussianInto, drawColumn, GAUSSIAN_GRID_STEPS } from '../src/discrete-gaussian.js';
import { WordStream, type DpRandomSource } from '../src/random-source.js';
import { replayRandom, seededRandom } from './helpers/seeded-random.js';

// Statistical tests use fixed seeds (AES-256-CTR keystreams), so they are deterministic; the bounds are 5
// standard errors, chosen before looking at the seeded results.

function noiseOf(n: number, centre: number, sigma: number, seed: string): Float64Array {
  const g = sigma / GAUSSIAN_GRID_STEPS;
  const x = new Float64Array(n).fill(centre);
  const out = new Float64Array(n);
  discreteGaussianInto(x, 1 / g, g, out, new WordStream(seededRandom(seed)));
  for (let i = 0; i < n; i++) out[i] = out[i]! - centre;
  return out;
}

/** The sampler's definition, one coordinate at a time, every word read through rs.next(): what the hot loop must equal. */
function reference(x: ArrayLike<number>, scale: number, g: number, rs: WordStream): Float64Array {
  const out = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const c = x[i]! * scale;
    const n = Math.floor(c);
    out[i] = (n + (drawColumn(c - n, rs.next(), rs) - 2047)) * g;
  }
  return out;
}

/** The first index where two arrays differ (Object.is), -1 when they are equal: a cheap failure on 100k elements. */
function firstDifference(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) return Math.min(a.length, b.length);
  for (let i = 0; i < a.length; i++) if (!Object.is(a[i], b[i])) return i;
  return -1;
}

/** Counts the words a source hands out. */
function counting(source: DpRandomSource): DpRandomSource & { words: number } {
  const counter = {
    words: 0,
    fill(w: Uint32Array): void {
      counter.words += w.length;
      source.fill(w);
    },
  };
  return counter;
}

describe('discrete Gaussian sampler: the batched loop equals the word-by-word definition', () => {
  // 100k coordinates span six 16384-word refills and about 1000 slow paths (ties and squeeze misses).
  const n = 100_000;
  const centres = Float64Array.from({ length: n }, (_, i) => Math.sin(i) * 5);

  it('float64 in and out, output for output and word for word (seed "loop-f64")', () => {
    const g = 0.01;
    const fast = counting(seededRandom('loop-f64'));
    const slow = counting(seededRandom('loop-f64'));
    const out = new Float64Array(n);
    const rsFast = new WordStream(fast);
    discreteGaussianInto(centres, 1 / g, g, out, rsFast);
    const rsRef = new WordStream(slow);
    expect(firstDifference(out, reference(centres, 1 / g, g, rsRef))).toBe(-1);
    expect(rsFast.pos).toBe(rsRef.pos);
    expect(fast.words).toBe(slow.words);
  });

  it('float32 in and out, and in place (seed "loop-f32")', () => {
    const g = 2 ** -7; // sigma 1
    const x = Float32Array.from(centres);
    const out = new Float32Array(n);
    discreteGaussianInto(x, 1 / g, g, out, new WordStream(seededRandom('loop-f32')));
    expect(firstDifference(out, Float32Array.from(reference(x, 1 / g, g, new WordStream(seededRandom('loop-f32')))))).toBe(-1);
    const inPlace = Float32Array.from(centres);
    discreteGaussianInto(inPlace, 1 / g, g, inPlace, new WordStream(seededRandom('loop-f32')));
    expect(firstDifference(inPlace, out)).toBe(-1);
  });

  it('finishes a slow path whose first word is the last of a buffer, then moves on to the next refill', () => {
    // In grid units with centres 0 (f = 0). 0x00000800: column 2048 (J = 1), a fast accept. 0xfff007ff: column
    // 2047 (J = 0, threshold bits 0 below its threshold), acceptance bits 4095, outside the squeeze: the slow
    // path, where a(0, 0) = 1 accepts it on that one word. As the buffer's last word it must be used exactly once:
    // the next coordinate takes the first word of the next refill. 0xffffffff (a far-tail candidate, rejected and
    // redrawn from the following words) adds a slow path inside a buffer.
    const words = Array.from({ length: 16_384 * 2 }, (_, i) => (i === 16_383 ? 0xfff007ff : i === 16_384 + 5 ? 0xffffffff : 0x00000800));
    const x = new Float64Array(20_000);
    const out = new Float64Array(x.length);
    const rs = new WordStream(replayRandom(words, 0x00000800));
    discreteGaussianInto(x, 1, 1, out, rs);
    expect([out[16_382], out[16_383], out[16_384]]).toEqual([1, 0, 1]);
    const ref = new WordStream(replayRandom(words, 0x00000800));
    expect(firstDifference(out, reference(x, 1, 1, ref))).toBe(-1);
    expect(rs.pos).toBe(ref.pos);
  });

  it('rejects an output of another length with RangeError', () => {
    expect(() => discreteGaussianInto(new Float64Array(3), 1, 1, new Float64Array(2), new WordStream(seededRandom('x')))).toThrow(RangeError);
  });
});

describe('discrete Gaussian sampler', () => {
  const N = 1_000_000;

  it('has mean 0 and standard deviation sigma within 5 standard errors over 1M samples (seed "mean-sd")', () => {
    const d = noiseOf(N, 0.3141592653589793, 1, 'mean-sd');
    let m = 0;
    let v = 0;
    for (const x of d) {
      m += x;
      v += x * x;
    }
    m /= N;
    const sd = Math.sqrt(v / N - m * m);
    expect(Math.abs(m)).toBeLessThan(5 / Math.sqrt(N)); // SE of the mean: sigma/sqrt(N)
    expect(Math.abs(sd - 1)).toBeLessThan(5 / Math.sqrt(2 * N)); // SE of the sd: sigma/sqrt(2N)
  });

  it('matches the Gaussian tail: P(|X| > 2σ), P(|X| > 3σ), P(|X| > 4σ) within 5 standard errors; nothing past 6σ (seed "tails")', () => {
    const d = noiseOf(N, -2.718281828, 2.5, 'tails');
    const tail = (k: number) => d.reduce((c, x) => c + (Math.abs(x) > k * 2.5 ? 1 : 0), 0);
    // 2·Φ(-k): 0.04550026389635842, 0.0026997960632601866, 6.334248366623996e-05
    for (const [k, p] of [[2, 0.04550026389635842], [3, 0.0026997960632601866], [4, 6.334248366623996e-5]] as const) {
      const expected = N * p;
      expect(Math.abs(tail(k) - expected)).toBeLessThan(5 * Math.sqrt(expected));
    }
    expect(tail(6)).toBe(0); // expected 0.002 events in 1M
  });

  it('is symmetric around a non-grid centre: skewness near 0 and both halves equal (seed "symmetry")', () => {
    const d = noiseOf(N, 1e-3 / 3, 1e-3, 'symmetry');
    let above = 0;
    let third = 0;
    for (const x of d) {
      if (x > 0) above++;
      third += (x / 1e-3) ** 3;
    }
    expect(Math.abs(above - N / 2)).toBeLessThan(5 * Math.sqrt(N / 4));
    expect(Math.abs(third / N)).toBeLessThan(5 * Math.sqrt(15 / N)); // Var(X^3) = 15 for a standard normal
  });

  it('puts every output on the grid g·Z (no floating-point artefacts: Mironov 2012)', () => {
    const sigma = 0.5;
    const g = sigma / GAUSSIAN_GRID_STEPS; // a power of two here, so y/g is exact
    const x = Float64Array.from({ length: 10_000 }, (_, i) => Math.sin(i) * 3);
    const out = new Float64Array(x.length);
    discreteGaussianInto(x, 1 / g, g, out, new WordStream(seededRandom('grid')));
    for (const y of out) expect(Number.isInteger(y / g)).toBe(true);
  });

  it('follows the exact pmf of D_{Z,s,c} on the central values (chi-square over 41 cells, seed "pmf")', () => {
    // In grid units: K ~ D_{Z,128,c} with c = 0.25; cells K - 0 in [-20, 20], i.e. the central part of the pmf.
    const n = 400_000;
    const c = 0.25;
    const out = new Float64Array(n);
    discreteGaussianInto(new Float64Array(n).fill(c), 1, 1, out, new WordStream(seededRandom('pmf')));
    const s = GAUSSIAN_GRID_STEPS;
    let norm = 0;
    for (let k = -3000; k <= 3000; k++) norm += Math.exp(-((k - c) ** 2) / (2 * s * s));
    const counts = new Map<number, number>();
    for (const y of out) if (Math.abs(y) <= 20) counts.set(y, (counts.get(y) ?? 0) + 1);
    let chi2 = 0;
    for (let k = -20; k <= 20; k++) {
      const e = (n * Math.exp(-((k - c) ** 2) / (2 * s * s))) / norm;
      chi2 += ((counts.get(k) ?? 0) - e) ** 2 / e;
    }
    // 40 degrees of freedom: the 0.999 quantile is 73.4.
    expect(chi2).toBeLessThan(73.4);
  });

  it('reads one 32-bit word per sample on the fast path', () => {
    // Word 0x00000800 picks column 2048 (J = 1), threshold bits 0 (< the column's), acceptance bits 0: accept.
    const rs = new WordStream(replayRandom([0x00000800]));
    const out = new Float64Array(1);
    discreteGaussianInto(new Float64Array([0.5]), 1, 1, out, rs);
    expect(out[0]).toBe(1); // n = 0, J = 1
    expect(rs.pos).toBe(1);
  });

  it('throws rather than loop forever on a broken source that always rejects', () => {
    // All-ones words: column 4095 (J = 2048, 16σ), threshold bits 255, acceptance bits 4095: never accepted.
    const rs = new WordStream(replayRandom([], 0xffffffff));
    expect(() => discreteGaussianInto(new Float64Array([0]), 1, 1, new Float64Array(1), rs)).toThrow(/random source is broken/);
  });
});
