import { expectFlareCodeAsync } from '@flare/core/testing';
import fc from 'fast-check';
import { cloneModel, decodeModel, encodeModel, model, tensor, type DType, type FLModel, type Tensor } from '@flare/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateHeKeys, HE_META_KEY, heDecrypt, heEncrypt, heModelStats, isEncryptedModel, type HeContext } from '../src/index.js';
import { engineOf } from '../src/context.js';
import { checkCiphertext } from '../src/seal/wire.js';
import { ciphertext, filterContext, maxAbsDiff, rng, smallModel, uniform } from './helpers.js';

let client: HeContext;
let server: HeContext;
beforeAll(async () => {
  ({ client, server } = await generateHeKeys());
});
afterAll(() => {
  client.dispose();
  server.dispose();
});

const ctx = filterContext();

describe('heEncrypt', () => {
  it('passes a result without tensors (metrics only, e.g. a validation result) through unchanged', async () => {
    const metricsOnly: FLModel = { ...model(new Map(), 'full'), metrics: { val_accuracy: 0.9 } };
    expect(await heEncrypt({ context: client }).apply(metricsOnly, ctx)).toBe(metricsOnly);
  });

  it('packs the whole model into ciphertexts of 4,096 values and decrypts it back (names, shapes, dtypes)', async () => {
    const m = smallModel(1);
    const events: unknown[] = [];
    const sealed = await heEncrypt({ context: client }).apply(m, filterContext(events));
    expect(isEncryptedModel(sealed)).toBe(true);
    expect([...sealed.params.keys()]).toEqual(['flare.he.ct.0', 'flare.he.ct.1']); // 5,051 values -> 2 ciphertexts
    expect(sealed.kind).toBe('diff');
    expect(sealed.meta['NUM_STEPS_CURRENT_ROUND']).toBe(10);
    expect(heModelStats(sealed)).toMatchObject({ ciphertexts: 2, encryptedValues: 5051, plainTensors: 0 });
    expect(events).toEqual([expect.objectContaining({ action: 'he_encrypted', data: expect.objectContaining({ ciphertexts: 2, values: 5051 }) })]);

    const back = await heDecrypt({ context: client }).apply(sealed, ctx);
    expect(HE_META_KEY in back.meta).toBe(false);
    expect(back.meta['NUM_STEPS_CURRENT_ROUND']).toBe(10);
    for (const [name, t] of m.params) {
      const b = back.params.get(name)!;
      expect(b.dtype, name).toBe(t.dtype);
      expect(b.shape, name).toEqual(t.shape);
    }
    expect(maxAbsDiff(back.params.get('fc.weight')!.data as Float32Array, m.params.get('fc.weight')!.data as Float32Array)).toBeLessThan(1e-6);
    expect(back.params.get('bn.num_batches_tracked')!.data).toEqual(BigInt64Array.from([101n]));
  });

  it('encrypts tensors of any size: one larger than a ciphertext, one empty, one scalar', async () => {
    const next = rng(2);
    const m = model({ big: tensor(uniform(3 * 4096 + 17, next)), empty: tensor(new Float32Array(0), [0, 5]), s: tensor(new Float64Array([0.25]), []) });
    const sealed = await heEncrypt({ context: client }).apply(m, ctx);
    expect(heModelStats(sealed)!.ciphertexts).toBe(4);
    const back = await heDecrypt({ context: client }).apply(sealed, ctx);
    expect(back.params.get('empty')!.shape).toEqual([0, 5]);
    expect(back.params.get('s')!.shape).toEqual([]);
    expect((back.params.get('s')!.data as Float64Array)[0]).toBeCloseTo(0.25, 9);
    expect(maxAbsDiff(back.params.get('big')!.data as Float32Array, m.params.get('big')!.data as Float32Array)).toBeLessThan(1e-6);
  });

  it('encrypts only the selected tensors (names or a regular expression); the rest stays plaintext', async () => {
    const m = smallModel(3);
    const byName = await heEncrypt({ context: client, tensors: ['fc.weight'] }).apply(m, ctx);
    expect(byName.params.get('fc.bias')).toBe(m.params.get('fc.bias'));
    expect(byName.params.has('fc.weight')).toBe(false);
    expect(heModelStats(byName)).toMatchObject({ ciphertexts: 2, encryptedValues: 5000, plainTensors: 2 });
    const byRegex = await heEncrypt({ context: client, tensors: /^fc\./g }).apply(m, ctx);
    expect(heModelStats(byRegex)).toMatchObject({ encryptedValues: 5050, plainTensors: 1 });
    // A global flag must not make the selection depend on the previous test (lastIndex).
    const again = await heEncrypt({ context: client, tensors: /^fc\./g }).apply(m, ctx);
    expect(heModelStats(again)).toMatchObject({ encryptedValues: 5050 });
    const back = await heDecrypt({ context: client }).apply(byRegex, ctx);
    expect([...back.params.keys()].sort()).toEqual([...m.params.keys()].sort());
  });

  it('does not modify its input', async () => {
    const m = smallModel(4);
    const before = cloneModel(m);
    await heEncrypt({ context: client }).apply(m, ctx);
    expect(m.params.get('fc.weight')!.data).toEqual(before.params.get('fc.weight')!.data);
    expect(m.meta).toEqual(before.meta);
    expect([...m.params.keys()]).toEqual([...before.params.keys()]);
  });

  it('travels through the safetensors codec unchanged', async () => {
    const sealed = await heEncrypt({ context: client }).apply(smallModel(5), ctx);
    const wire = decodeModel(encodeModel(sealed));
    expect(wire.meta).toEqual(sealed.meta);
    const back = await heDecrypt({ context: client }).apply(wire, ctx);
    expect(maxAbsDiff(back.params.get('fc.bias')!.data as Float32Array, smallModel(5).params.get('fc.bias')!.data as Float32Array)).toBeLessThan(1e-6);
  });

  it('uses seeded encryption: a ciphertext is about half of the same ciphertext expanded (SEAL zstd both)', async () => {
    const sealed = await heEncrypt({ context: client }).apply(model({ w: tensor(uniform(4096, rng(6))) }), ctx);
    const bytes = ciphertext(sealed, 0);
    const engine = engineOf(client);
    const checked = checkCiphertext(bytes, engine.shape);
    expect(checked.seeded).toBe(true);
    const ct = engine.load(checked);
    const expanded = engine.save(ct);
    ct.delete();
    expect(bytes.length / expanded.length).toBeLessThan(0.55);
    expect(bytes.length).toBeLessThan(170_000);
    expect([bytes[0], bytes[1], bytes[5]]).toEqual([0x5e, 0xa1, 2]); // SEAL header, compr_mode_type::zstd
  });

  it('refuses a tensor pattern that needs backtracking (E_MODEL_NAME_PATTERN), from a string or a RegExp', () => {
    for (const tensors of ['(fc)\\1', /^(?=fc)/, '(?<!x)fc']) {
      expect(() => heEncrypt({ context: client, tensors })).toThrow(expect.objectContaining({ code: 'E_MODEL_NAME_PATTERN' }));
    }
  });

  it('selects tensors with the linear-time matcher: a ReDoS pattern on a long name answers correctly', async () => {
    const long = `${'f'.repeat(4000)}!`;
    const m = model({ [long]: tensor(new Float32Array([1])), ff: tensor(new Float32Array([2])) });
    const sealed = await heEncrypt({ context: client, tensors: '^(f+)+$' }).apply(m, ctx);
    expect([...sealed.params.keys()].filter((k) => !k.startsWith('flare.he.'))).toEqual([long]);
  });

  it('refuses a model that is already encrypted (E_HE_ALREADY_ENCRYPTED)', async () => {
    const sealed = await heEncrypt({ context: client }).apply(smallModel(7), ctx);
    await expectFlareCodeAsync(() => heEncrypt({ context: client }).apply(sealed, ctx), 'E_HE_ALREADY_ENCRYPTED');
    const sneaky = model({ 'flare.he.ct.0': tensor(new Uint8Array(4)) });
    await expectFlareCodeAsync(() => heEncrypt({ context: client }).apply(sneaky, ctx), 'E_HE_ALREADY_ENCRYPTED');
  });

  it('refuses a selection naming a missing tensor (E_HE_UNKNOWN_TENSOR) or matching none (E_HE_NOTHING_SELECTED)', async () => {
    await expectFlareCodeAsync(() => heEncrypt({ context: client, tensors: ['fc.weight', 'fc.wieght'] }).apply(smallModel(8), ctx), 'E_HE_UNKNOWN_TENSOR');
    await expectFlareCodeAsync(() => heEncrypt({ context: client, tensors: /^conv/ }).apply(smallModel(8), ctx), 'E_HE_NOTHING_SELECTED');
    await expectFlareCodeAsync(() => heEncrypt({ context: client }).apply(model({ e: tensor(new Float32Array(0)) }), ctx), 'E_HE_NOTHING_SELECTED');
  });

  it.each([
    ['NaN', Number.NaN],
    ['infinity', Number.POSITIVE_INFINITY],
    ['a value above the limit', 2 ** 17 + 1],
    ['a value below minus the limit', -(2 ** 19)],
  ])('refuses %s (E_HE_VALUE_RANGE)', async (_label, bad) => {
    const data = new Float64Array(10);
    data[7] = bad;
    await expectFlareCodeAsync(() => heEncrypt({ context: client }).apply(model({ w: tensor(data) }), ctx), 'E_HE_VALUE_RANGE');
  });

  it('accepts values up to the limit exactly and decrypts them', async () => {
    const m = model({ w: tensor(new Float64Array([2 ** 17, -(2 ** 17), 0.5])) });
    const back = await heDecrypt({ context: client }).apply(await heEncrypt({ context: client }).apply(m, ctx), ctx);
    expect(maxAbsDiff(back.params.get('w')!.data as Float64Array, [2 ** 17, -(2 ** 17), 0.5])).toBeLessThan(1e-4);
  });

  it('encrypts on worker threads with the same result layout, and ends the workers with the context', async () => {
    const keys = await generateHeKeys();
    const m = model({ w: tensor(uniform(5 * 4096 + 3, rng(13))), b: tensor(new Float32Array([1, 2])) });
    const pooled = await heEncrypt({ context: keys.client, workers: 2 }).apply(m, ctx);
    const single = await heEncrypt({ context: keys.client }).apply(m, ctx);
    const { ciphertextBytes: _a, ...shapeOfPooled } = heModelStats(pooled)!;
    const { ciphertextBytes: _b, ...shapeOfSingle } = heModelStats(single)!;
    expect(shapeOfPooled).toEqual(shapeOfSingle); // byte counts differ by a few bytes: zstd of random data
    expect(pooled.meta['flare.he']).toMatchObject({ tensors: (single.meta['flare.he'] as { tensors: unknown }).tensors });
    const back = await heDecrypt({ context: keys.client }).apply(pooled, ctx);
    expect(maxAbsDiff(back.params.get('w')!.data as Float32Array, m.params.get('w')!.data as Float32Array)).toBeLessThan(1e-6);
    const reused = heEncrypt({ context: keys.client, workers: 2 });
    keys.client.dispose();
    await expect(reused.apply(m, ctx)).rejects.toThrow(TypeError);
    keys.server.dispose();
    expect(() => heEncrypt({ context: client, workers: 17 })).toThrow(RangeError);
    expect(() => heEncrypt({ context: client, workers: 1.5 })).toThrow(RangeError);
  });

  it('needs the secret key (E_HE_NO_SECRET_KEY for a server context)', async () => {
    await expectFlareCodeAsync(() => heEncrypt({ context: server }), 'E_HE_NO_SECRET_KEY');
  });

  it('stops between ciphertexts when the task is aborted', async () => {
    const controller = new AbortController();
    controller.abort(new Error('task cancelled'));
    const big = model({ w: tensor(new Float32Array(20 * 4096)) });
    await expect(heEncrypt({ context: client }).apply(big, { ...ctx, signal: controller.signal })).rejects.toThrow('task cancelled');
  });

  it('property: encrypt then decrypt returns every tensor within 1e-6, with its dtype and shape', async () => {
    const dtypes: DType[] = ['float32', 'float64', 'float16', 'bfloat16', 'int32', 'int64', 'uint8', 'bool'];
    const arbTensor = fc.record({
      dtype: fc.constantFrom(...dtypes),
      shape: fc.array(fc.integer({ min: 0, max: 40 }), { minLength: 0, maxLength: 3 }),
      seed: fc.integer(),
    });
    await fc.assert(
      fc.asyncProperty(fc.dictionary(fc.stringMatching(/^[a-z][a-z0-9_.]{0,12}$/), arbTensor, { minKeys: 1, maxKeys: 4 }), async (spec) => {
        const params = new Map<string, Tensor>();
        for (const [name, { dtype, shape, seed }] of Object.entries(spec)) params.set(name, makeTensor(dtype, shape, seed));
        const m: FLModel = { params, kind: 'full', meta: {} };
        const count = [...params.values()].reduce((a, t) => a + t.data.length, 0);
        if (count === 0) return;
        const back = await heDecrypt({ context: client }).apply(await heEncrypt({ context: client }).apply(m, ctx), ctx);
        for (const [name, t] of params) {
          const b = back.params.get(name)!;
          expect(b.dtype).toBe(t.dtype);
          expect(b.shape).toEqual(t.shape);
          const x = Array.from(t.data as ArrayLike<number | bigint>, Number);
          const y = Array.from(b.data as ArrayLike<number | bigint>, Number);
          expect(maxAbsDiff(x, y)).toBeLessThan(1e-6);
        }
      }),
      { seed: 42, numRuns: 12 },
    );
  });
});

function makeTensor(dtype: DType, shape: number[], seed: number): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const next = rng(seed);
  switch (dtype) {
    case 'int32':
      return tensor(Int32Array.from({ length: n }, () => Math.floor(next() * 2000) - 1000), shape);
    case 'int64':
      return tensor(BigInt64Array.from({ length: n }, () => BigInt(Math.floor(next() * 2000) - 1000)), shape);
    case 'uint8':
      return tensor(Uint8Array.from({ length: n }, () => Math.floor(next() * 256)), shape);
    case 'bool':
      return tensor(Uint8Array.from({ length: n }, () => (next() < 0.5 ? 1 : 0)), shape, 'bool');
    case 'float64':
      return tensor(Float64Array.from({ length: n }, () => next() * 2 - 1), shape);
    default:
      return tensor(uniform(n, next), shape, dtype);
  }
}
