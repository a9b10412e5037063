import { describe, expect, it } from 'vitest';
import { cryptoRandomSource } from '../src/index.js';
import { WordStream } from '../src/random-source.js';
import { replayRandom, seededRandom } from './helpers/seeded-random.js';

describe('cryptoRandomSource', () => {
  it('fills every word (node:crypto randomFillSync)', () => {
    const a = new Uint32Array(1024);
    cryptoRandomSource.fill(a);
    expect(new Set(a).size).toBeGreaterThan(1000);
  });
});

describe('WordStream', () => {
  it('below(n) is uniform without modulo bias: rejects words at or above the largest multiple of n', () => {
    // n = 3: limit = 2^32 - (2^32 mod 3) = 4294967295, so 0xffffffff is rejected and the next word used.
    const rs = new WordStream(replayRandom([0xffffffff, 7]));
    expect(rs.below(3)).toBe(1);
    const counts = [0, 0, 0, 0, 0, 0, 0];
    const seeded = new WordStream(seededRandom('below'));
    for (let i = 0; i < 70_000; i++) counts[seeded.below(7)]!++;
    for (const c of counts) expect(Math.abs(c - 10_000)).toBeLessThan(5 * Math.sqrt(10_000 * (6 / 7)));
  });

  it('bernoulli(p) compares the binary expansion of p exactly', () => {
    // p = 0.75 = 0.11b: the first word is compared with 0xC0000000.
    expect(new WordStream(replayRandom([0xbfffffff])).bernoulli(0.75)).toBe(true);
    expect(new WordStream(replayRandom([0xc0000001])).bernoulli(0.75)).toBe(false);
    // A tie reads the next word; p's expansion ends there, so the uniform is >= p.
    expect(new WordStream(replayRandom([0xc0000000, 0])).bernoulli(0.75)).toBe(false);
    expect(new WordStream(replayRandom([])).bernoulli(0)).toBe(false);
    expect(new WordStream(replayRandom([0xffffffff])).bernoulli(1)).toBe(true);
  });

  it('rejects n outside [1, 2^32] with RangeError', () => {
    expect(() => new WordStream(cryptoRandomSource).below(0)).toThrow(RangeError);
  });
});
