import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { addPacked, pack, packedBytes, unpack } from '../src/ring.js';

describe('packed ring elements', () => {
  it('packs to ceil(length·bits/8) bytes and unpacks to the same values mod 2^bits, for every width (property)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 32 }), fc.array(fc.integer({ min: 0, max: 2 ** 32 - 1 }), { minLength: 0, maxLength: 70 }), (bits, raw) => {
        const values = Uint32Array.from(raw);
        const bytes = pack(values, bits);
        expect(bytes.length).toBe(packedBytes(values.length, bits));
        const mask = bits === 32 ? 0xffffffff : 2 ** bits - 1;
        expect(unpack(bytes, bits, values.length)).toEqual(values.map((v) => (v & mask) >>> 0));
      }),
      { numRuns: 300, seed: 2026120525 },
    );
  });

  it('lays bits out little-endian: 3-bit values 1..5 as 0b01_100_011_010_001', () => {
    expect([...pack(Uint32Array.of(1, 2, 3, 4, 5), 3)]).toEqual([0b11_010_001, 0b0_101_100_0]);
  });

  it('adds a packed vector in place exactly as unpacking and adding would, mod 2^32 (property)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 32 }), fc.array(fc.integer({ min: 0, max: 2 ** 32 - 1 }), { minLength: 1, maxLength: 50 }), (bits, raw) => {
        const values = Uint32Array.from(raw);
        const sum = Uint32Array.from(raw, (v) => (v * 7 + 3) >>> 0);
        const expected = sum.map((s, i) => (s + unpack(pack(values, bits), bits, values.length)![i]!) >>> 0);
        expect(addPacked(sum, pack(values, bits), bits)).toBe(true);
        expect(sum).toEqual(expected);
      }),
      { numRuns: 200, seed: 2026120526 },
    );
  });

  it('refuses another length or a non-zero padding bit (one encoding per vector)', () => {
    const bytes = pack(Uint32Array.of(5, 6, 7), 5);
    expect(unpack(bytes, 5, 4)).toBeUndefined();
    expect(unpack(bytes.subarray(0, 1), 5, 3)).toBeUndefined();
    const padded = bytes.slice();
    padded[1]! |= 0x80;
    expect(unpack(padded, 5, 3)).toBeUndefined();
    const sum = new Uint32Array(3);
    expect(addPacked(sum, padded, 5)).toBe(false);
    expect(addPacked(new Uint32Array(4), bytes, 5)).toBe(false);
    expect(sum).toEqual(new Uint32Array(3));
  });
});
