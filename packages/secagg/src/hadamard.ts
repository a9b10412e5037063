import { digest, PROTOCOL } from './crypto.js';
import { maskWords } from './prg.js';

// The random rotation of Kairouz, Liu and Steinke (ICML 2021, §4 "flattening"): x -> H·D·x with D a diagonal of
// random signs and H the normalised Walsh-Hadamard matrix (orthonormal and its own inverse). It spreads an
// update's norm evenly over the coordinates, so each coordinate of the sum is sub-Gaussian with variance proxy
// ||sum||²/d and modular wrap-around becomes unlikely; it does not change any L2 norm, so privacy is unchanged.
// The signs are public, derived from the job and the round: every site must rotate the same way. Internal.

/** In-place normalised fast Walsh-Hadamard transform of a vector whose length is a power of two. */
export function hadamard(v: Float64Array): void {
  const n = v.length;
  if ((n & (n - 1)) !== 0) throw new RangeError(`the Hadamard transform needs a power-of-two length, got ${n}`);
  for (let h = 1; h < n; h <<= 1) {
    for (let i = 0; i < n; i += h << 1) {
      for (let j = i; j < i + h; j++) {
        const a = v[j]!;
        const b = v[j + h]!;
        v[j] = a + b;
        v[j + h] = a - b;
      }
    }
  }
  const s = 1 / Math.sqrt(n);
  for (let i = 0; i < n; i++) v[i] = v[i]! * s;
}

/** Multiplies v by the round's random signs D (in place; D is its own inverse). */
export function applySigns(v: Float64Array, job: string, round: number): void {
  const words = maskWords(digest(PROTOCOL, 'rotation signs', job, String(round)), Math.ceil(v.length / 32));
  for (let i = 0; i < v.length; i++) if ((words[i >>> 5]! >>> (i & 31)) & 1) v[i] = -v[i]!;
}
