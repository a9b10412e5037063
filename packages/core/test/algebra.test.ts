import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { add, allClose, axpy, cloneModel, l2norm, model, ModelError, scale, sub, tensor, type FLModel } from '../src/index.js';

const m = (a: number[], b: number[] = [0]): FLModel => model({ a: tensor(Float64Array.from(a)), b: tensor(Float32Array.from(b)) });
const vals = (x: FLModel) => [...x.params.values()].map((t) => [...t.data]);

describe('in-place algebra', () => {
  it('add, sub, scale, axpy on a hand-computed case', () => {
    expect(vals(add(m([1, 2], [3]), m([10, 20], [30])))).toEqual([[11, 22], [33]]);
    expect(vals(sub(m([1, 2], [3]), m([10, 20], [30])))).toEqual([[-9, -18], [-27]]);
    expect(vals(scale(m([1, 2], [3]), 0.5))).toEqual([[0.5, 1], [1.5]]);
    expect(vals(axpy(2, m([1, 2], [3]), m([1, 1], [1])))).toEqual([[3, 5], [7]]);
  });

  it('l2norm is the global norm over every tensor', () => {
    expect(l2norm(m([3, 0], [4]))).toBe(5);
  });

  it('add then sub restores the original (property)', () => {
    const arr = fc.array(fc.double({ min: -1e6, max: 1e6, noNaN: true }), { minLength: 3, maxLength: 3 });
    fc.assert(
      fc.property(arr, arr, (x, y) => {
        const a = m(x);
        const before = cloneModel(a);
        sub(add(a, m(y)), m(y));
        expect(allClose(a, before, { rtol: 1e-9, atol: 1e-6 })).toBe(true);
      }),
      { seed: 2026120505 },
    );
  });

  it('scale by c multiplies the norm by |c| (property)', () => {
    fc.assert(
      fc.property(fc.array(fc.double({ min: -1e3, max: 1e3, noNaN: true }), { minLength: 1, maxLength: 8 }), fc.double({ min: -10, max: 10, noNaN: true }), (x, c) => {
        const a = model({ a: tensor(Float64Array.from(x)) });
        const n = l2norm(a);
        expect(l2norm(scale(a, c))).toBeCloseTo(Math.abs(c) * n, 6);
      }),
      { seed: 2026120506 },
    );
  });

  it('refuses mismatched models before writing anything (E_MODEL_MISMATCH)', () => {
    const a = m([1, 2], [3]);
    const other = model({ a: tensor(Float64Array.from([1, 2])), c: tensor(Float32Array.from([1])) });
    expect(() => add(a, other)).toThrow(expect.objectContaining({ code: 'E_MODEL_MISMATCH' }));
    expect(() => add(a, m([1, 2, 3], [1]))).toThrow(ModelError);
    expect(vals(a)).toEqual([[1, 2], [3]]);
  });

  it('refuses arithmetic on integer tensors (E_MODEL_DTYPE)', () => {
    const ints = model({ n: tensor(Int32Array.of(1)) });
    expect(() => scale(ints, 2)).toThrow(expect.objectContaining({ code: 'E_MODEL_DTYPE' }));
  });

  it('allClose follows numpy: |a-b| <= atol + rtol*|b|, NaN never close, shape mismatch is false', () => {
    expect(allClose(m([1]), m([1 + 1e-6]))).toBe(true);
    expect(allClose(m([1]), m([1.001]))).toBe(false);
    expect(allClose(m([NaN]), m([NaN]))).toBe(false);
    expect(allClose(m([1, 2]), m([1]))).toBe(false);
  });
});
