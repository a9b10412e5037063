import { describe, expect, it } from 'vitest';
import { checkUpdateAgainst, manifestOf, model, tensor, type FLModel } from '../src/index.js';
import { expectFlareCode } from '../src/testing/index.js';

const global = model({ a: tensor(new Float32Array(4), [2, 2]), b: tensor(new Int32Array(3)) }, 'full');
const update = (params: FLModel['params']): FLModel => ({ params, kind: 'diff', meta: {} });

describe('manifestOf / checkUpdateAgainst', () => {
  const manifest = manifestOf(global);

  it('records names, dtypes and shapes only, and accepts an update that matches', () => {
    expect([...manifest]).toEqual([
      ['a', { dtype: 'float32', shape: [2, 2] }],
      ['b', { dtype: 'int32', shape: [3] }],
    ]);
    checkUpdateAgainst(manifest, update(new Map([['b', tensor(new Int32Array(3))], ['a', tensor(new Float32Array(4), [2, 2])]])));
    expect([...manifestOf(global, (n) => n === 'b').keys()]).toEqual(['a']);
  });

  it('refuses an extra tensor, another dtype (float64 for float32), another shape, or inconsistent data, naming the tensor and site (E_MODEL_MISMATCH)', () => {
    const cases: Array<[FLModel, RegExp]> = [
      [update(new Map([...global.params, ['extra', tensor(new Float32Array(1))]])), /"extra" is not in the global model/],
      [update(new Map([['a', tensor(new Float64Array(4), [2, 2])], ['b', global.params.get('b')!]])), /"a" is float64, the global model's is float32/],
      [update(new Map([['a', tensor(new Float32Array(4), [4])], ['b', global.params.get('b')!]])), /"a" has shape \[4\], the global model's is \[2, 2\]/],
      [update(new Map([['a', { dtype: 'float32', shape: [2, 2], data: new Float32Array(3) }], ['b', global.params.get('b')!]])), /"a" holds 3 values/],
      [update(new Map([['a', global.params.get('a')!]])), /"b" of the global model is missing/],
    ];
    for (const [u, message] of cases) {
      const e = expectFlareCode(() => checkUpdateAgainst(manifest, u, { from: 'site-2' }), 'E_MODEL_MISMATCH');
      expect(e.message).toMatch(message);
      expect(e.message).toContain('"site-2"');
    }
    expectFlareCode(() => checkUpdateAgainst(manifest, { params: {} } as never), 'E_MODEL_MISMATCH');
  });

  it('accepts a partial update when asked (FedAvg averages each tensor over the sites that sent it), and skips tensors', () => {
    const partial = update(new Map([['a', tensor(new Float32Array(4), [2, 2])]]));
    checkUpdateAgainst(manifest, partial, { partial: true });
    checkUpdateAgainst(manifest, partial, { skip: (n) => n === 'b' });
    expectFlareCode(() => checkUpdateAgainst(manifest, update(new Map([['zzz', tensor(new Float32Array(1))]])), { partial: true }), 'E_MODEL_MISMATCH');
  });

  it('cuts a long tensor name in the message', () => {
    const name = 'x'.repeat(10_000);
    const e = expectFlareCode(() => checkUpdateAgainst(manifest, update(new Map([[name, tensor(new Float32Array(1))]]))), 'E_MODEL_MISMATCH');
    expect(e.message.length).toBeLessThan(400);
  });
});
