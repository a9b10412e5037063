import * as tfl from '@tensorflow/tfjs-layers';
import { beforeAll, describe, expect, it } from 'vitest';
import { selectBackend } from '../src/backend.js';
import { denseNetwork } from '../src/network.js';
import { readWeights } from '../src/weights.js';

beforeAll(async () => {
  await selectBackend({ prefer: 'cpu' });
});

describe('denseNetwork', () => {
  it('names tensors by layer and gives the same initial weights for the same seed', () => {
    const a = readWeights(denseNetwork(6, [{ name: 'hidden', units: 3, activation: 'relu' }, { name: 'out', units: 1, activation: 'sigmoid' }], 11));
    const b = readWeights(denseNetwork(6, [{ name: 'hidden', units: 3, activation: 'relu' }, { name: 'out', units: 1, activation: 'sigmoid' }], 11));
    const c = readWeights(denseNetwork(6, [{ name: 'hidden', units: 3, activation: 'relu' }, { name: 'out', units: 1, activation: 'sigmoid' }], 12));
    expect([...a.params.keys()]).toEqual(['hidden/kernel', 'hidden/bias', 'out/kernel', 'out/bias']);
    expect(Array.from(a.params.get('hidden/kernel')!.data as Float32Array)).toEqual(Array.from(b.params.get('hidden/kernel')!.data as Float32Array));
    expect(Array.from(a.params.get('hidden/kernel')!.data as Float32Array)).not.toEqual(Array.from(c.params.get('hidden/kernel')!.data as Float32Array));
    // Glorot uniform bound sqrt(6 / (fan_in + fan_out)) (Glorot & Bengio 2010, eq. 16).
    const bound = Math.sqrt(6 / (6 + 3));
    for (const v of a.params.get('hidden/kernel')!.data as Float32Array) expect(Math.abs(v)).toBeLessThanOrEqual(bound);
  });

  it('builds a model that predicts with the expected output shape', () => {
    const net = denseNetwork(4, [{ name: 'out', units: 3, activation: 'softmax' }]);
    expect(net).toBeInstanceOf(tfl.LayersModel);
    expect(net.outputs[0]!.shape).toEqual([null, 3]);
  });

  it('rejects programmer misuse with RangeError', () => {
    expect(() => denseNetwork(0, [{ name: 'out', units: 1, activation: 'sigmoid' }])).toThrow(RangeError);
    expect(() => denseNetwork(3, [])).toThrow(RangeError);
    expect(() => denseNetwork(3, [{ name: 'out', units: 0, activation: 'sigmoid' }])).toThrow(RangeError);
  });
});
