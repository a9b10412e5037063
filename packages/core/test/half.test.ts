import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { bfloatToFloat, floatToBfloat, floatToHalf, halfToFloat } from '../src/index.js';

const h = (x: number) => floatToHalf(Float32Array.of(x))[0];
const bf = (x: number) => floatToBfloat(Float32Array.of(x))[0];

describe('binary16 (IEEE 754-2008 table values)', () => {
  it.each([
    [1, 0x3c00],
    [-2, 0xc000],
    [65504, 0x7bff], // largest finite
    [65520, 0x7c00], // rounds to infinity
    [2 ** -14, 0x0400], // smallest normal
    [2 ** -24, 0x0001], // smallest subnormal
    [2 ** -25, 0x0000], // halfway to zero rounds to even (0)
    [3 * 2 ** -25, 0x0002], // halfway between 1 and 2 subnormal units rounds to even (2)
    [1 + 2 ** -11, 0x3c00], // halfway rounds to even
    [1 + 3 * 2 ** -11, 0x3c02],
    [Infinity, 0x7c00],
    [-0, 0x8000],
  ])('%d -> 0x%s', (x, bits) => {
    expect(h(x)).toBe(bits);
  });

  it('keeps NaN a NaN', () => {
    expect(Number.isNaN(halfToFloat(Uint16Array.of(h(NaN)!))[0])).toBe(true);
  });

  it('decodes every finite half exactly and re-encodes it to the same bits', () => {
    const all = Uint16Array.from({ length: 65536 }, (_, i) => i).filter((b) => (b & 0x7c00) !== 0x7c00);
    const back = floatToHalf(halfToFloat(all));
    expect(back).toEqual(all);
  });

  it('rounds like Math.fround-style nearest (property: error within half an ulp)', () => {
    fc.assert(
      fc.property(fc.float({ min: -60000, max: 60000, noNaN: true }), (x) => {
        const y = halfToFloat(Uint16Array.of(h(x)!))[0]!;
        const ulp = 2 ** (Math.max(Math.floor(Math.log2(Math.abs(x) || 2 ** -24)), -14) - 10);
        expect(Math.abs(y - x)).toBeLessThanOrEqual(ulp / 2 + 1e-30);
      }),
      { seed: 2026120513 },
    );
  });
});

describe('bfloat16', () => {
  it.each([
    [1, 0x3f80],
    [-3, 0xc040],
    [1 + 2 ** -8, 0x3f80], // halfway rounds to even
    [1 + 3 * 2 ** -8, 0x3f82],
  ])('%d -> 0x%s', (x, bits) => {
    expect(bf(x)).toBe(bits);
  });
  it('decodes exactly', () => {
    expect([...bfloatToFloat(Uint16Array.of(0x3f80, 0xc040))]).toEqual([1, -3]);
  });
  it('keeps NaN a NaN', () => {
    expect(Number.isNaN(bfloatToFloat(Uint16Array.of(bf(NaN)!))[0])).toBe(true);
  });
});
