import type { FloatArray } from '@flare/core';
import { aliasResolve, buildAliasTable, type AliasTable } from './alias-table.js';
import type { WordStream } from './random-source.js';

// Gaussian noise without floating-point artefacts (Mironov, "On significance of the least significant bits for
// differential privacy", CCS 2012): every output is y = g·K for an integer K drawn from the discrete Gaussian
// D_{Z,s,c}(K) ∝ exp(-(K - c)²/(2s²)) centred at the real value c = x/g (Canonne, Kamath, Steinke, "The
// Discrete Gaussian for Differential Privacy", NeurIPS 2020). The outputs lie on the grid gZ whatever x is, and
// their probabilities are those formulas up to the documented error below, so no low-order bits carry x.
//
// The scale is fixed at s = 128 grid steps (g = σ/128). For s far above the smoothing parameter of Z, D_{Z,s,c}
// has mean c and variance s² up to e^(-2π²s²) (Poisson summation), so y has the mean x and the variance σ² of
// the continuous Gaussian mechanism, and its Rényi divergences are those of N(c, s²): for a shift Δ,
// D_α = αΔ²/(2s²) + O(e^(-2π²s²/α)) (CKS 2020, Section 2), about e^-300 here for every α <= 1024, so the RDP
// accountant's values hold as they are.
//
// Sampling, exact in the following sense: write c = n + f with n = ⌊c⌋, f ∈ [0, 1). Draw J from the envelope
// e(j) = max_{f∈[0,1]} exp(-(j - f)²/(2s²)) = exp(-(j - j*)²/(2s²)), j* = clamp(j, 0, 1), over j ∈ [-2047, 2048]
// (16 s either side: the mass beyond is below e^-128), with Walker's alias method; accept J with probability
// a(J, f) = exp(-(J - f)²/(2s²)) / e(J) <= 1; output n + J. Rejection sampling makes the accepted J exactly
// D_{Z,s,f} restricted to the table (acceptance ≈ 99.7%).
//  - The alias table is built in exact integer arithmetic from weights ⌊e(j)·2^200⌋ and its thresholds are kept
//    to 200 bits, compared lazily: an alias draw uses 12 + 8 bits of one 32-bit word and reads further words only
//    on a tie (probability 2^-8). Distance to the ideal envelope: below 2^-180 in total variation.
//  - e(j) and a(J, f) are float64 exponentials (Math.exp, within 1 ulp), so each output probability is within a
//    factor (1 ± 2^-48) of the ideal. The acceptance test compares a lazily read uniform with the exact binary
//    expansion of the float64 a(J, f), after a 12-bit squeeze that accepts at once when u < min_f a(J, f).
// Per coordinate: P_actual(k) <= e^η P_ideal(k) + τ with η = 2^-48 and τ = 2^-180 (table quantisation; the
// truncated tail beyond 16 s holds less than e^-128 ≈ 2^-184); the filter adds d·2η to ε and d·τ·(1 + e^ε) to δ
// for d noised coordinates (see SAMPLER_EPSILON_PER_COORDINATE below), below 1e-7 in ε for 10^7 coordinates.
//
// Speed does not touch any of this. drawColumn below is the whole sampler for one coordinate, word by word;
// discreteGaussianInto is the same map from words to outputs, batched: it reads each coordinate's first word from
// the buffer in order, decides the fast path (no tie, u below the squeeze: the same decision drawColumn makes on
// that word) inline, and hands every other coordinate to drawColumn with that word, which reads on from the same
// stream. For any sequence of words the outputs and the words consumed are identical to calling drawColumn
// coordinate after coordinate (tested bit for bit across buffer refills), so the distribution and the bounds
// above are those of the definition. Which path a coordinate takes depends on its random word alone (slow for
// about 1.05% of coordinates here: 0.39% threshold ties, 0.65% outside the squeeze); only the exact acceptance
// test of the latter also reads f, as before the loop was batched.

/** The fixed scale in grid steps: σ = 128·g. */
export const GAUSSIAN_GRID_STEPS = 128;
/** Multiplicative error per coordinate, counted into ε twice (numerator and normaliser). */
export const SAMPLER_EPSILON_PER_COORDINATE = 2 * 2 ** -48;
/** Additive (total-variation) error per coordinate, counted into δ. */
export const SAMPLER_TV_PER_COORDINATE = 2 ** -180;

const S = GAUSSIAN_GRID_STEPS;
const INV_2S2 = 1 / (2 * S * S);
const COLUMNS = 4096;
const OFFSET = 2047; // column j <-> J = j - 2047, J ∈ [-2047, 2048], symmetric about 1/2
const MAX_ATTEMPTS = 256; // acceptance >= 0.99 per attempt: 256 failures have probability < 10^-500

// The envelope's alias table and the squeeze, built once when the module loads (about 8 ms here, exact BigInt
// arithmetic). They are module constants on purpose, read into locals once per call: TurboFan then treats the
// three typed arrays as known constants in the sampler's loop. Measured per 10^7 coordinates here: 44 ms, against
// 54 ms with the same tables built lazily and passed in, and 56 ms with the module constants read inside the loop.
function envelopeWeights(): number[] {
  const weights: number[] = [];
  for (let j = 0; j < COLUMNS; j++) {
    const k = j - OFFSET;
    const star = k <= 0 ? 0 : 1;
    weights.push(Math.exp(-(k - star) * (k - star) * INV_2S2));
  }
  return weights;
}

function squeezeTable(): Int16Array {
  const squeeze = new Int16Array(COLUMNS);
  for (let j = 0; j < COLUMNS; j++) {
    const k = j - OFFSET;
    // min over f ∈ [0, 1] of a(J, f) is exp(-|2J - 1|/(2s²)); one step of margin keeps it a strict lower bound.
    squeeze[j] = Math.max(0, Math.floor(Math.exp(-Math.abs(2 * k - 1) * INV_2S2) * 4096) - 1);
  }
  return squeeze;
}

const ENVELOPE: AliasTable = buildAliasTable(envelopeWeights());
/** The thresholds' first 8 bits, by column (256: the column always yields itself). */
const TOP: Uint16Array = ENVELOPE.top;
/** Each column's alias. */
const ALIAS: Uint16Array = ENVELOPE.alias;
/** ⌊min_f a(J, f)·4096⌋ - 1 by column: a 12-bit uniform below it accepts without computing exp. */
const SQUEEZE: Int16Array = squeezeTable();

/** The exact acceptance test for candidate column `col` at fraction f, continuing from the 12 bits `u12`. */
function acceptExact(col: number, f: number, u12: number, rs: WordStream): boolean {
  const k = col - OFFSET;
  const star = k <= 0 ? 0 : 1;
  // (J - f)² - (J - j*)² = (j* - f)(2J - f - j*) >= 0 on both sides of 1/2.
  const a = Math.exp(-(star - f) * (2 * k - f - star) * INV_2S2);
  let scaled = a * 4096;
  let digit = Math.floor(scaled);
  if (u12 < digit) return true;
  if (u12 > digit) return false;
  let rest = scaled - digit;
  for (let i = 0; i < 40 && rest > 0; i++) {
    scaled = rest * 4294967296;
    digit = Math.floor(scaled);
    rest = scaled - digit;
    const r = rs.next();
    if (r < digit) return true;
    if (r > digit) return false;
  }
  return false;
}

/**
 * Draws J's column for one coordinate at fraction f, from its first word `first` and, when needed, further words
 * of `rs`: the whole sampler for one coordinate, word by word. The hot loop below takes its fast path on the first
 * word and calls this only for the rest (a threshold tie, or an acceptance outside the squeeze); tests call it
 * directly as the reference the loop must match output for output. Internal.
 */
export function drawColumn(f: number, first: number, rs: WordStream): number {
  let w = first;
  for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
    if (attempt > 0) w = rs.next();
    const col = w & 4095;
    const cand = aliasResolve(ENVELOPE, col, (w >>> 12) & 255, rs);
    const u12 = w >>> 20;
    if (u12 < SQUEEZE[cand]! || acceptExact(cand, f, u12, rs)) return cand;
  }
  throw new Error('discrete Gaussian sampler rejected 256 candidates in a row: the random source is broken');
}

/**
 * out[i] = g·K_i with K_i ~ D_{Z,128,x[i]·scale}: discrete Gaussian noise of standard deviation 128·g around
 * x[i]·scale·g. `out` may be `x` itself. Internal: the filters compute `scale` and `g` from the clip norm.
 */
export function discreteGaussianInto(x: FloatArray, scale: number, g: number, out: FloatArray, rs: WordStream): void {
  const len = x.length;
  if (out.length !== len) throw new RangeError(`"out" expected ${len} elements, got ${out.length}`);
  const buf = rs.buf;
  const end = buf.length;
  const top = TOP;
  const alias = ALIAS;
  const squeeze = SQUEEZE;
  let pos = rs.pos;
  let i = 0;
  while (i < len) {
    if (pos === end) {
      rs.refill();
      pos = 0;
    }
    // The inner loop runs over as many coordinates as the buffer has words and contains no call: a call inside
    // the loop makes TurboFan reload every typed array's base and length at each iteration (a callee could
    // detach them), which measured 52 -> 43 ms per 10^7 coordinates here. It leaves at the first coordinate
    // that needs the slow path (about 1 in 100), which is finished below, outside the loop.
    const stop = Math.min(len, i + (end - pos));
    for (; i < stop; i++) {
      // One word: bits 0-11 pick the column, 12-19 are the threshold's leading bits, 20-31 the acceptance's.
      // Fast path (about 99% of coordinates): no threshold tie and an acceptance inside the squeeze.
      const w = buf[pos]!;
      const col = w & 4095;
      const t8 = (w >>> 12) & 255;
      const th = top[col]!;
      // Branch-free choice between the column and its alias (the comparison is a coin flip for the branch
      // predictor: this measured 12 -> 8 ns per coordinate here).
      const own = (t8 - th) >> 31; // -1 when t8 < th, else 0
      const cand = (col & own) | (alias[col]! & ~own);
      if (t8 === th || w >>> 20 >= squeeze[cand]!) break;
      pos++;
      // J as a float64 on purpose: cand - 2047.5 + 0.5 is exact, and keeping the arithmetic in doubles stops V8
      // from speculating on int32 sums with float64 floors, which measured twice as slow here. K = n + J is exact
      // (|n| < 2^51) and the output g·K depends on K only.
      out[i] = (Math.floor(x[i]! * scale) + (cand - (OFFSET + 0.5)) + 0.5) * g;
    }
    if (i < stop) {
      // Coordinate i left the fast path on its first word, buf[pos]: finish it exactly, reading further words.
      const c = x[i]! * scale;
      const n = Math.floor(c);
      const first = buf[pos++]!;
      rs.pos = pos;
      const j = drawColumn(c - n, first, rs);
      pos = rs.pos;
      out[i] = (n + (j - (OFFSET + 0.5)) + 0.5) * g;
      i++;
    }
  }
  rs.pos = pos;
}
