import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { backoffDelay } from '../src/index.js';

describe('backoffDelay', () => {
  it('grows exponentially up to maxMs, scaled by the random source (full jitter)', () => {
    const opts = { initialMs: 100, maxMs: 1000, factor: 2 };
    expect([0, 1, 2, 3, 4, 5].map((a) => backoffDelay(a, opts, () => 0.999999))).toEqual([99, 199, 399, 799, 999, 999]);
    expect(backoffDelay(3, opts, () => 0)).toBe(0);
  });

  it('always lies within [0, min(maxMs, initialMs * factor^attempt)]', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 200 }), fc.double({ min: 0, max: 0.999999, noNaN: true }), (attempt, r) => {
        const d = backoffDelay(attempt, { initialMs: 500, maxMs: 30_000 }, () => r);
        return d >= 0 && d <= Math.min(30_000, 500 * 2 ** attempt) && Number.isInteger(d);
      }),
      { seed: 7, numRuns: 500 },
    );
  });

  it('uses a CSPRNG by default and refuses a negative attempt (RangeError)', () => {
    const d = backoffDelay(2);
    expect(d).toBeGreaterThanOrEqual(0);
    expect(d).toBeLessThanOrEqual(2000);
    expect(() => backoffDelay(-1)).toThrow(RangeError);
  });
});
