import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ExactAccumulators } from '../src/accumulators.js';
import { addScaled } from '../src/exact-sum.js';

/** The scalar JavaScript kernels on plain arrays: the reference the SIMD kernels must equal bit for bit. */
function reference(rows: ReadonlyArray<readonly [Float32Array | Float64Array, number]>, n: number): { hi: Float64Array; lo: Float64Array; bad: number[] } {
  const hi = new Float64Array(n);
  const lo = new Float64Array(n);
  const bad = rows.map(([x, w]) => {
    const b = addScaled(hi, lo, x, w);
    if (b >= 0) addScaled(hi, lo, x, -w, b);
    return b;
  });
  return { hi, lo, bad };
}

const value = fc.oneof(fc.double({ noNaN: true, min: -1e6, max: 1e6 }), fc.constantFrom(Number.NaN, Number.POSITIVE_INFINITY, 1e300, -0));

describe('ExactAccumulators (WebAssembly SIMD kernels)', () => {
  it('uses the SIMD kernels on this Node', () => {
    expect(new ExactAccumulators().simd).toBe(true);
  });

  it('gives the same bits as the JavaScript kernels, for float32 and float64 data, any length, NaN and overflow (property)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 23 }),
        fc.array(fc.tuple(fc.boolean(), fc.array(value, { minLength: 23, maxLength: 23 }), fc.oneof(fc.double({ min: 1e-3, max: 1e3, noNaN: true }), fc.constant(1e300))), { minLength: 1, maxLength: 6 }),
        (n, specs) => {
          const rows = specs.map(([f32, v, w]) => [f32 ? Float32Array.from(v.slice(0, n)) : Float64Array.from(v.slice(0, n)), w] as const);
          const want = reference(rows, n);
          const acc = new ExactAccumulators();
          acc.slot(5); // another slot first: offsets other than 0
          const slot = acc.slot(n);
          const bad = rows.map(([x, w]) => {
            const b = acc.add(slot, x, w);
            if (b >= 0) acc.add(slot, x, -w, b);
            return b;
          });
          expect(bad).toEqual(want.bad);
          const { hi, lo } = acc.sums(slot);
          for (let i = 0; i < n; i++) {
            expect(Object.is(hi[i], want.hi[i]) && Object.is(lo[i], want.lo[i]), `index ${i}`).toBe(true);
          }
        },
      ),
      { numRuns: 500, seed: 2026120501 },
    );
  });

  it('reuses its memory round after round, zeroes every new slot, and gives back a refused contribution\'s slots', () => {
    const acc = new ExactAccumulators();
    const a = acc.slot(1000);
    acc.add(a, new Float32Array(1000).fill(1), 2);
    const bytes = acc.byteLength;
    acc.reset();
    const b = acc.slot(1000);
    expect(acc.sums(b).hi.every((v) => v === 0)).toBe(true);
    expect(acc.byteLength).toBe(bytes);
    const mark = acc.mark();
    acc.slot(10_000);
    acc.release(mark);
    const c = acc.slot(10);
    expect(acc.sums(c).hi.byteOffset).toBe(acc.sums(b).hi.byteOffset + 16 * 1000);
  });
});
