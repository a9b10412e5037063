import type { WordStream } from './random-source.js';

// Walker's alias method (Vose's construction) over non-negative float64 weights, built in exact integer
// arithmetic: weights become ⌊w·2^200⌋, every column holds exactly the total mass, and each column's threshold is
// kept to 8 + 6·32 = 200 bits. A draw compares a uniform number, read lazily, with that threshold: 8 bits first,
// then 32 more on each tie (probability 2^-8, then 2^-32). The distribution realised differs from w/Σw by at most
// n·2^-200 + 2^-200 in total variation (n columns, n <= 2^16, so below 2^-183). Internal.

/** A built alias table; `top` is the threshold's first 8 bits (256 = the column always yields itself). */
export interface AliasTable {
  readonly size: number;
  readonly top: Uint16Array;
  /** The threshold's next 192 bits, THRESHOLD_WORDS words per column, most significant first. */
  readonly words: Uint32Array;
  readonly alias: Uint16Array;
}

/** 32-bit words of each threshold after its first 8 bits. */
export const THRESHOLD_WORDS = 6;
const SCALE_BITS = 200n;

/** Builds the table; `weights.length` must be a power of two no larger than 65536 so a column is a bit field. */
export function buildAliasTable(weights: readonly number[]): AliasTable {
  const size = weights.length;
  if (size < 1 || size > 65536 || (size & (size - 1)) !== 0) throw new RangeError(`alias table size must be a power of two up to 65536, got ${size}`);
  const n = BigInt(size);
  let total = 0n;
  const scaled: bigint[] = [];
  for (const v of weights) {
    if (!(v >= 0 && v <= 2 ** 800)) throw new RangeError(`alias weights must be finite and >= 0, got ${v}`);
    const b = BigInt(Math.floor(v * 2 ** 200)); // exact: power-of-two scaling, then floor
    total += b;
    scaled.push(b * n);
  }
  if (total === 0n) throw new RangeError('alias weights must not all be zero');
  const own = new Array<bigint>(size).fill(0n);
  const alias = new Uint16Array(size);
  const small: number[] = [];
  const large: number[] = [];
  for (let j = 0; j < size; j++) (scaled[j]! < total ? small : large).push(j);
  while (small.length > 0 && large.length > 0) {
    const l = small.pop()!;
    const g = large.pop()!;
    own[l] = scaled[l]!;
    alias[l] = g;
    scaled[g] = scaled[g]! - (total - scaled[l]!);
    (scaled[g]! < total ? small : large).push(g);
  }
  for (const j of [...small, ...large]) {
    own[j] = total; // exact arithmetic leaves every remaining column exactly full
    alias[j] = j;
  }
  const top = new Uint16Array(size);
  const words = new Uint32Array(size * THRESHOLD_WORDS);
  const mask = 0xffffffffn;
  for (let j = 0; j < size; j++) {
    if (own[j] === total) {
      top[j] = 256;
      continue;
    }
    const t = (own[j]! << SCALE_BITS) / total; // threshold to 200 bits, rounded down
    top[j] = Number(t >> (SCALE_BITS - 8n));
    for (let k = 0; k < THRESHOLD_WORDS; k++) words[j * THRESHOLD_WORDS + k] = Number((t >> (SCALE_BITS - 8n - 32n * BigInt(k + 1))) & mask);
  }
  return { size, top, words, alias };
}

/**
 * Resolves a draw in column `col` whose first 8 threshold bits were `t8`: the column itself when the uniform is
 * below the threshold, its alias otherwise. Reads more words from `rs` only on a tie.
 */
export function aliasResolve(t: AliasTable, col: number, t8: number, rs: WordStream): number {
  const th = t.top[col]!;
  if (t8 < th) return col;
  if (t8 > th) return t.alias[col]!;
  for (let k = 0; k < THRESHOLD_WORDS; k++) {
    const part = t.words[col * THRESHOLD_WORDS + k]!;
    const r = rs.next();
    if (r < part) return col;
    if (r > part) return t.alias[col]!;
  }
  return t.alias[col]!; // equal to all 200 bits: the uniform is >= the truncated threshold
}
