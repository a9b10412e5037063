import { describe, expect, it } from 'vitest';
import { logAdd, logErfc, logSub } from '../src/log-math.js';

// ln erfc(x) computed with mpmath at 50 significant digits (mpmath.log(mpmath.erfc(x))), rounded to float64.
const MPMATH_LOG_ERFC: ReadonlyArray<[number, number]> = [
  [-30, 0.6931471805599453], [-5, 0.6931471805591766], [-1, 0.6112323176780705], [-0.3, 0.28414589714140825],
  [0, 0.0], [0.1, -0.11930497373739561], [0.49, -0.7167603114368805], [0.5, -0.7350111298370844],
  [0.51, -0.7534145583581111], [1, -1.8496055099332482], [2, -5.364941264616638], [3, -10.720363041981113],
  [5, -27.200889545537436], [10, -102.87988902484489], [30, -903.9741171106439], [100, -10005.177585122665],
  [1000, -1000007.4801207219], [1e5, -10000000012.08529],
];

describe('logErfc', () => {
  it('matches mpmath (50 digits) within 5e-14 relative from -30 to 1e5, without underflow', () => {
    for (const [x, ref] of MPMATH_LOG_ERFC) {
      const got = logErfc(x);
      if (ref === 0) expect(got === 0).toBe(true);
      else expect(Math.abs(got - ref) / Math.abs(ref)).toBeLessThan(5e-14);
    }
  });

  it('handles the infinities and NaN', () => {
    expect(logErfc(Infinity)).toBe(-Infinity);
    expect(logErfc(-Infinity)).toBeCloseTo(Math.LN2, 15);
    expect(logErfc(Number.NaN)).toBeNaN();
  });
});

describe('logAdd and logSub', () => {
  it('add and subtract in log space without overflow', () => {
    expect(logAdd(Math.log(2), Math.log(3))).toBeCloseTo(Math.log(5), 14);
    expect(logAdd(-Infinity, 1)).toBe(1);
    expect(logAdd(1000, 1000)).toBeCloseTo(1000 + Math.LN2, 12);
    expect(logSub(Math.log(5), Math.log(3))).toBeCloseTo(Math.log(2), 14);
    expect(logSub(1, -Infinity)).toBe(1);
    expect(logSub(2, 2)).toBe(-Infinity);
    expect(logSub(1000, 1)).toBe(1000);
  });

  it('marks a negative difference as NaN (the accountant then answers conservatively)', () => {
    expect(logSub(1, 2)).toBeNaN();
  });
});
