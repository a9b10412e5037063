import { describe, expect, it } from 'vitest';
import { discreteLaplace, LAPLACE_GRID_STEPS } from '../src/discrete-laplace.js';
import { WordStream } from '../src/random-source.js';
import { seededRandom } from './helpers/seeded-random.js';

describe('discrete Laplace sampler', () => {
  it('has mean c and variance 2b² within 5 standard errors over 200k draws, on the grid b/128 (seed "laplace")', () => {
    const n = 200_000;
    const b = 2;
    const c = 0.37;
    const g = b / LAPLACE_GRID_STEPS;
    const rs = new WordStream(seededRandom('laplace'));
    let m = 0;
    let v = 0;
    let abs = 0;
    let offGrid = 0;
    for (let i = 0; i < n; i++) {
      const y = discreteLaplace(c, b, rs);
      if (!Number.isInteger(y / g)) offGrid++;
      const d = y - c;
      m += d;
      v += d * d;
      abs += Math.abs(d);
    }
    expect(offGrid).toBe(0);
    expect(Math.abs(m / n)).toBeLessThan(5 * Math.sqrt((2 * b * b) / n));
    // Var(X²) for Laplace(b) is 20 b^4; E|X| = b with Var b².
    expect(Math.abs(v / n - 2 * b * b)).toBeLessThan(5 * Math.sqrt((20 * b ** 4) / n));
    expect(Math.abs(abs / n - b)).toBeLessThan(5 * Math.sqrt((b * b) / n));
  });
});
