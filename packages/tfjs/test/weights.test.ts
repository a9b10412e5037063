import { isFlareError, model, tensor, type FLModel } from '@flare/core';
import * as tfl from '@tensorflow/tfjs-layers';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { selectBackend } from '../src/backend.js';
import { readWeights, writeWeights } from '../src/weights.js';

function net(): tfl.LayersModel {
  const m = tfl.sequential();
  m.add(tfl.layers.dense({ name: 'hidden', units: 3, inputShape: [4], activation: 'relu' }));
  m.add(tfl.layers.dense({ name: 'out', units: 1, activation: 'sigmoid' }));
  return m;
}

beforeAll(async () => {
  await selectBackend({ prefer: 'cpu' });
});

describe('readWeights / writeWeights', () => {
  it('names tensors by layer and weight, stable across models built in one process', () => {
    const a = readWeights(net());
    const b = readWeights(net()); // tfjs names this one's variables hidden/kernel_1 ...
    expect([...a.params.keys()]).toEqual(['hidden/kernel', 'hidden/bias', 'out/kernel', 'out/bias']);
    expect([...b.params.keys()]).toEqual([...a.params.keys()]);
    expect(a.kind).toBe('full');
    expect(a.params.get('hidden/kernel')?.shape).toEqual([4, 3]);
  });

  it('round-trips any float32 weights exactly (property)', () => {
    const target = net();
    const shapes = readWeights(target);
    fc.assert(
      fc.property(fc.array(fc.float({ noNaN: true, noDefaultInfinity: true }), { minLength: 19, maxLength: 19 }), (values) => {
        let at = 0;
        const params = new Map<string, ReturnType<typeof tensor>>();
        for (const [name, t] of shapes.params) {
          params.set(name, tensor(Float32Array.from(values.slice(at, at + t.data.length)), t.shape));
          at += t.data.length;
        }
        const m = model(params, 'full');
        writeWeights(target, m);
        const back = readWeights(target);
        for (const [name, t] of params) expect(Array.from(back.params.get(name)!.data as Float32Array)).toEqual(Array.from(t.data as Float32Array));
      }),
      { numRuns: 50, seed: 42 },
    );
  });

  const bad: Array<[string, (m: FLModel) => void]> = [
    ['a missing tensor', (m) => m.params.delete('out/bias')],
    ['an extra tensor', (m) => m.params.set('evil/kernel', tensor(new Float32Array(1), [1]))],
    ['a different shape', (m) => m.params.set('out/bias', tensor(new Float32Array(2), [2]))],
  ];
  for (const [what, mutate] of bad) {
    it(`refuses ${what} (E_ML_WEIGHTS_MISMATCH) and leaves the network unchanged`, () => {
      const target = net();
      const before = readWeights(target);
      const m = readWeights(net());
      for (const t of m.params.values()) (t.data as Float32Array).fill(7);
      mutate(m);
      let err: unknown;
      try {
        writeWeights(target, m);
      } catch (e) {
        err = e;
      }
      expect(isFlareError(err, 'E_ML_WEIGHTS_MISMATCH')).toBe(true);
      const after = readWeights(target);
      for (const [name, t] of before.params) expect(Array.from(after.params.get(name)!.data as Float32Array)).toEqual(Array.from(t.data as Float32Array));
    });
  }

  it('refuses a diff where full weights are needed (E_ML_NOT_FULL_MODEL)', () => {
    const m = readWeights(net());
    m.kind = 'diff';
    expect(() => writeWeights(net(), m)).toThrow(expect.objectContaining({ code: 'E_ML_NOT_FULL_MODEL' }));
  });
});
