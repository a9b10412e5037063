import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { flatten, model, tensor, unflatten } from '../src/index.js';
import { modelArb } from './helpers.js';

describe('flatten / unflatten', () => {
  it('roundtrips every tensor name, dtype, shape and value that float64 holds exactly (property)', () => {
    fc.assert(
      fc.property(modelArb, (m) => {
        for (const t of m.params.values()) if (t.data instanceof BigInt64Array) t.data.forEach((_, i, a) => (a[i] = BigInt.asIntN(53, a[i]!)));
        const { vector, index } = flatten(m, { dtype: 'float64' });
        const back = unflatten(vector, index);
        expect(back.kind).toBe(m.kind);
        expect([...back.params.keys()]).toEqual([...m.params.keys()]);
        for (const [name, t] of m.params) {
          const b = back.params.get(name)!;
          expect(b.dtype).toBe(t.dtype);
          expect(b.shape).toEqual(t.shape);
          expect([...b.data]).toEqual([...t.data]);
        }
      }),
      { numRuns: 200, seed: 2026120510 },
    );
  });

  it('chooses float32 for float32 models and float64 when any tensor needs it', () => {
    expect(flatten(model({ a: tensor(new Float32Array(2)) })).vector).toBeInstanceOf(Float32Array);
    expect(flatten(model({ a: tensor(new Float32Array(2)), n: tensor(new Int32Array(1)) })).vector).toBeInstanceOf(Float64Array);
  });

  it('flattens only the selected tensors, in model order', () => {
    const m = model({ a: tensor(Float32Array.of(1)), b: tensor(Float32Array.of(2, 3)), c: tensor(Float32Array.of(4)) });
    const { vector, index } = flatten(m, { select: (n) => n !== 'b' });
    expect([...vector]).toEqual([1, 4]);
    expect(index.entries.map((e) => [e.name, e.offset])).toEqual([['a', 0], ['c', 1]]);
  });

  it('refuses a vector of the wrong length (E_MODEL_MISMATCH)', () => {
    const { index } = flatten(model({ a: tensor(Float32Array.of(1, 2)) }));
    expect(() => unflatten(new Float32Array(3), index)).toThrow(expect.objectContaining({ code: 'E_MODEL_MISMATCH' }));
  });
});
