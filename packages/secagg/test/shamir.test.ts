import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { combine, fieldFromBytes, fieldToBytes, invert, randomFieldElement, SHARE_PRIME, split } from '../src/shamir.js';

describe('Shamir secret sharing over GF(p)', () => {
  // Wikipedia, "Shamir's secret sharing", section "Computationally efficient approach": secret 1234, 3 of 6,
  // f(x) = 1234 + 166x + 94x² over GF(1613).
  const p = 1613n;
  const published = [
    { x: 1, y: 1494n },
    { x: 2, y: 329n },
    { x: 3, y: 965n },
    { x: 4, y: 176n },
    { x: 5, y: 1188n },
    { x: 6, y: 775n },
  ];

  it('Wikipedia example (GF(1613), 3 of 6): the published shares from the published polynomial', () => {
    expect(split(1234n, 3, [1, 2, 3, 4, 5, 6], p, [166n, 94n])).toEqual(published);
  });

  it('Wikipedia example: every 3 of the published shares give back 1234, all 6 together too, a false one does not', () => {
    for (let a = 0; a < 6; a++)
      for (let b = a + 1; b < 6; b++)
        for (let c = b + 1; c < 6; c++) expect(combine([published[a]!, published[b]!, published[c]!], p)).toBe(1234n);
    expect(combine(published, p)).toBe(1234n);
    expect(combine([published[0]!, published[1]!, { x: 6, y: 776n }], p)).not.toBe(1234n);
  });

  it('any t of n shares rebuild a secret of GF(2^255 - 19); t - 1 do not (property)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 12 }).chain((t) => fc.tuple(fc.constant(t), fc.integer({ min: t, max: 16 }))),
        fc.bigInt({ min: 0n, max: SHARE_PRIME - 1n }),
        fc.integer({ min: 0, max: 2 ** 31 }),
        ([t, n], secret, seed) => {
          const xs = Array.from({ length: n }, (_, i) => 3 * i + 1 + (seed % 97));
          const shares = split(secret, t, xs);
          // A pseudo-random subset of exactly t shares, then all of them.
          const order = shares.map((s, i) => [((i + 1) * 2654435761 + seed) >>> 0, s] as const).sort((a, b) => a[0] - b[0]).map(([, s]) => s);
          expect(combine(order.slice(0, t))).toBe(secret);
          expect(combine(shares)).toBe(secret);
          // Below the threshold the interpolation is of a different polynomial: the secret only by a 1/p chance.
          if (t > 1) expect(combine(order.slice(0, t - 1))).not.toBe(secret);
        },
      ),
      { numRuns: 60, seed: 2026120527 },
    );
  });

  it('field elements encode as 32 little-endian bytes and values >= p are refused', () => {
    const v = randomFieldElement();
    expect(fieldFromBytes(fieldToBytes(v))).toBe(v);
    expect(fieldToBytes(1n)[0]).toBe(1);
    expect(fieldFromBytes(fieldToBytes(SHARE_PRIME - 1n))).toBe(SHARE_PRIME - 1n);
    const p = new Uint8Array(32).fill(0xff);
    p[31] = 0x7f;
    p[0] = 0xed; // 2^255 - 19 itself
    expect(fieldFromBytes(p)).toBeUndefined();
    expect(fieldFromBytes(new Uint8Array(31))).toBeUndefined();
  });

  it('inverts modulo p and refuses repeated or zero evaluation points', () => {
    expect((invert(5n, 1613n) * 5n) % 1613n).toBe(1n);
    expect(() => split(1n, 2, [1, 1, 2])).toThrow(RangeError);
    expect(() => split(1n, 2, [0, 1])).toThrow(RangeError);
    expect(() => combine([])).toThrow(RangeError);
  });
});
