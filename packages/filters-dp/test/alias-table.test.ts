import { describe, expect, it } from 'vitest';
import { aliasResolve, buildAliasTable, THRESHOLD_WORDS } from '../src/alias-table.js';
import { WordStream } from '../src/random-source.js';
import { replayRandom } from './helpers/seeded-random.js';

/** The exact distribution a table realises: (1/n)·(t_j + Σ over columns aliasing to j of (1 - t_i)), t to 200 bits. */
function realised(weights: number[]): number[] {
  const t = buildAliasTable(weights);
  const n = t.size;
  const one = 1n << 200n;
  const threshold = (i: number): bigint => {
    if (t.top[i] === 256) return one;
    let v = BigInt(t.top[i]!);
    for (let k = 0; k < THRESHOLD_WORDS; k++) v = (v << 32n) | BigInt(t.words[i * THRESHOLD_WORDS + k]!);
    return v;
  };
  const mass = new Array<bigint>(n).fill(0n);
  for (let i = 0; i < n; i++) {
    const th = threshold(i);
    mass[i] = mass[i]! + th;
    mass[t.alias[i]!] = mass[t.alias[i]!]! + (one - th);
  }
  // Probabilities to float64 after exact integer bookkeeping.
  return mass.map((m) => Number((m << 20n) / BigInt(n)) / 2 ** 220);
}

describe('alias table (exact integer construction)', () => {
  it('realises the weights to float64 precision, including very unequal ones', () => {
    const weights = [1, 2, 3, 2, 1e-30, 0, 7, 0.5];
    const total = weights.reduce((a, b) => a + b, 0);
    const got = realised(weights);
    got.forEach((p, j) => expect(Math.abs(p - weights[j]! / total)).toBeLessThan(1e-15));
    expect(got[5]).toBe(0);
  });

  it('resolves ties on the first 8 threshold bits by reading further words', () => {
    const t = buildAliasTable([1, 3]); // column 0: threshold 0.5 (0x80 then zeros), alias 1
    const col = 0;
    const th = t.top[col]!;
    expect(aliasResolve(t, col, th - 1, new WordStream(replayRandom([])))).toBe(col);
    expect(aliasResolve(t, col, th, new WordStream(replayRandom([0])))).toBe(t.alias[col]); // equal to all bits: not below
  });

  it('rejects sizes that are not powers of two and all-zero weights', () => {
    expect(() => buildAliasTable([1, 2, 3])).toThrow(RangeError);
    expect(() => buildAliasTable([0, 0])).toThrow(RangeError);
  });
});
