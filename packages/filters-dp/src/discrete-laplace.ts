import { aliasResolve, buildAliasTable, type AliasTable } from './alias-table.js';
import type { WordStream } from './random-source.js';

// Laplace noise on a grid, for the sparse-vector filter, with the same construction as the Gaussian sampler
// (see discrete-gaussian.ts): the output is g·K with K drawn from the discrete Laplace distribution centred at the
// real value c = x/g, P(K) ∝ exp(-|K - c|/t), t = 128 grid steps (g = b/128 for Laplace scale b). Outputs lie on
// gZ, so Mironov's attack on floating-point Laplace samplers (CCS 2012) does not apply.
//
// With c = n + f: pick a side with one bit; on the left J = -G, on the right J = 1 + G, where G >= 0 has
// P(G) ∝ e^(-G/t). That is the envelope max_{f∈[0,1]} e^(-|J - f|/t); accept J with probability e^(-f/t) on the
// left and e^(-(1-f)/t) on the right (acceptance >= e^(-1/128)), and output n + J.
// G = 128·H + L exactly: L ∈ [0, 128) from an alias table of weights e^(-L/128); H counts successes of
// Bernoulli(e^-1) before the first failure (a geometric variable with P(H) ∝ e^-H). Every probability is a
// product of float64 exponentials and exact comparisons, so each outcome is within a factor 1 ± (H + 3)·2^-50 of
// the ideal (multiplicative error, which the pure-DP statement absorbs as a slack of that size in ε).

/** The fixed scale in grid steps: b = 128·g. */
export const LAPLACE_GRID_STEPS = 128;

const T = LAPLACE_GRID_STEPS;
const E_MINUS_1 = Math.exp(-1);
const MAX_ATTEMPTS = 256;

let cached: AliasTable | undefined;

function lowTable(): AliasTable {
  cached ??= buildAliasTable(Array.from({ length: T }, (_, l) => Math.exp(-l / T)));
  return cached;
}

/**
 * A draw of c + Laplace(scale) on the grid scale/128: returns g·K with K discrete-Laplace around c/g.
 * `scale` > 0 and finite; `centre` finite. Internal.
 */
export function discreteLaplace(centre: number, scale: number, rs: WordStream): number {
  const g = scale / T;
  const c = centre / g;
  const n = Math.floor(c);
  const f = c - n;
  const table = lowTable();
  for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
    const w = rs.next();
    const right = (w & 1) === 1;
    const low = aliasResolve(table, (w >>> 1) & (T - 1), (w >>> 8) & 255, rs);
    let high = 0;
    // H is geometric with mean 0.58; the bound only stops a broken source (e^-1 per step: 2000 steps ~ e^-2000).
    while (high < 2000 && rs.bernoulli(E_MINUS_1)) high++;
    const magnitude = T * high + low;
    const j = right ? 1 + magnitude : -magnitude;
    if (rs.bernoulli(Math.exp(-(right ? 1 - f : f) / T))) return (n + j) * g;
  }
  throw new Error('discrete Laplace sampler rejected 256 candidates in a row: the random source is broken');
}
