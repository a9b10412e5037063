import { expectFlareCodeAsync } from '@flare/core/testing';
import fc from 'fast-check';
import { model, tensor, type FLModel } from '@flare/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateHeKeys, HeAggregator, heDecrypt, heEncrypt, heModelStats, type HeContext } from '../src/index.js';
import { engineOf } from '../src/context.js';
import { checkCiphertext } from '../src/seal/wire.js';
import { ciphertext, filterContext, maxAbsDiff, rng, smallModel, uniform, withCiphertext } from './helpers.js';

let client: HeContext;
let server: HeContext;
let other: { client: HeContext; server: HeContext };
let flare: { client: HeContext; server: HeContext };
const ctx = filterContext();

beforeAll(async () => {
  ({ client, server } = await generateHeKeys());
  other = await generateHeKeys();
  flare = await generateHeKeys({ coeffModBits: [60, 40, 40] });
});
afterAll(() => {
  for (const c of [client, server, other.client, other.server, flare.client, flare.server]) c.dispose();
});

/** Plaintext FedAvg in float64: the reference the encrypted result is compared with. */
function fedAvg(models: FLModel[], weights: number[], name: string): Float64Array {
  const total = weights.reduce((a, b) => a + b, 0);
  const n = models[0]!.params.get(name)!.data.length;
  const out = new Float64Array(n);
  models.forEach((m, k) => {
    const d = m.params.get(name)!.data;
    for (let i = 0; i < n; i++) out[i] = out[i]! + (weights[k]! * Number(d[i])) / total;
  });
  return out;
}

async function aggregate(keys: { client: HeContext; server: HeContext }, models: FLModel[], weights: number[], tensors?: string[]): Promise<FLModel> {
  const agg = new HeAggregator({ context: keys.server });
  const enc = heEncrypt({ context: keys.client, ...(tensors ? { tensors } : {}) });
  for (const [k, m] of models.entries()) agg.accept(await enc.apply(m, ctx), { from: `site-${k}`, weight: weights[k]!, round: 3 });
  const result = agg.result();
  agg.dispose();
  return heDecrypt({ context: keys.client }).apply(result, ctx);
}

describe('HeAggregator', () => {
  it('computes the weighted mean of 10 encrypted updates (max error < 1e-6) without a secret key', async () => {
    const next = rng(21);
    const models = Array.from({ length: 10 }, (_, k) => smallModel(100 + k));
    const weights = models.map(() => 1 + next() * 99);
    const mean = await aggregate({ client, server }, models, weights);
    const err = maxAbsDiff(mean.params.get('fc.weight')!.data as Float32Array, fedAvg(models, weights, 'fc.weight'));
    expect(err).toBeLessThan(1e-6);
    expect(maxAbsDiff(mean.params.get('fc.bias')!.data as Float32Array, fedAvg(models, weights, 'fc.bias'))).toBeLessThan(1e-6);
    expect(mean.kind).toBe('diff');
  });

  it('keeps full float64 precision: 100 weighted updates of 4,096 values in [-1, 1], max error < 1e-6', async () => {
    const next = rng(22);
    const models = Array.from({ length: 100 }, () => model({ w: tensor(Float64Array.from({ length: 4096 }, () => next() * 2 - 1)) }));
    const weights = models.map(() => 1 + Math.floor(next() * 1000));
    const mean = await aggregate({ client, server }, models, weights);
    const err = maxAbsDiff(mean.params.get('w')!.data as Float64Array, fedAvg(models, weights, 'w'));
    expect(err).toBeLessThan(1e-6);
    console.info(`HE aggregation, 100 weighted updates x 4,096 values: max abs error ${err.toExponential(2)}`);
  });

  it("aggregates with FLARE's parameters [60, 40, 40] (one rescaling prime: exact division by scale)", async () => {
    const models = Array.from({ length: 4 }, (_, k) => smallModel(200 + k));
    const weights = [3, 1, 4, 1.5];
    const mean = await aggregate(flare, models, weights);
    expect(maxAbsDiff(mean.params.get('fc.weight')!.data as Float32Array, fedAvg(models, weights, 'fc.weight'))).toBeLessThan(1e-6);
  });

  it('brings every aggregate back to the last level at scale 2^40 exactly (defaults)', async () => {
    const agg = new HeAggregator({ context: server });
    agg.accept(await heEncrypt({ context: client }).apply(smallModel(1), ctx), { from: 'a', weight: 7 });
    agg.accept(await heEncrypt({ context: client }).apply(smallModel(2), ctx), { from: 'b', weight: 0.3 });
    const result = agg.result();
    const checked = checkCiphertext(ciphertext(result, 0), engineOf(server).shape);
    expect(checked.scale).toBe(2 ** 40);
    expect(checked.level.chainIndex).toBe(0);
    expect(result.meta['flare.he']).toMatchObject({ aggregate: { clients: 2, weight: 73 } }); // x NUM_STEPS_CURRENT_ROUND = 10
    // The download is a third of a fresh ciphertext: one prime left, not three.
    expect(heModelStats(result)!.ciphertextBytes).toBeLessThan(0.9 * heModelStats(await heEncrypt({ context: client }).apply(smallModel(1), ctx))!.ciphertextBytes);
    agg.dispose();
  });

  it('averages the tensors left in plaintext with the same weights (integers rounded)', async () => {
    const models = [1, 2, 3].map((k) => smallModel(300 + k));
    const mean = await aggregate({ client, server }, models, [1, 1, 2], ['fc.weight']);
    expect(maxAbsDiff(mean.params.get('fc.bias')!.data as Float32Array, fedAvg(models, [1, 1, 2], 'fc.bias'))).toBeLessThan(1e-6);
    expect(mean.params.get('bn.num_batches_tracked')!.data).toEqual(BigInt64Array.from([BigInt(Math.round((401 + 402 + 2 * 403) / 4))]));
  });

  it('property: the mean of identical updates is the update, whatever the weights', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.double({ min: 0.01, max: 1000, noNaN: true }), { minLength: 1, maxLength: 4 }), fc.integer(), async (weights, seed) => {
        const m = model({ w: tensor(uniform(300, rng(seed))) });
        const mean = await aggregate({ client, server }, weights.map(() => m), weights);
        expect(maxAbsDiff(mean.params.get('w')!.data as Float32Array, m.params.get('w')!.data as Float32Array)).toBeLessThan(1e-6);
      }),
      { seed: 7, numRuns: 5 },
    );
  });

  it('leaves the round untouched when it refuses an update', async () => {
    const [a, b, c] = [smallModel(31), smallModel(32), smallModel(33)];
    const enc = heEncrypt({ context: client });
    const agg = new HeAggregator({ context: server });
    agg.accept(await enc.apply(a, ctx), { from: 'a', weight: 1 });
    const sealedB = await enc.apply(b, ctx);
    const bad = ciphertext(sealedB, 1).slice();
    bad[bad.length - 3] = bad[bad.length - 3]! ^ 0xff;
    await expectFlareCodeAsync(() => agg.accept(withCiphertext(sealedB, 1, bad, false), { from: 'b', weight: 5 }), 'E_HE_CIPHERTEXT_TAMPERED');
    await expectFlareCodeAsync(() => agg.accept(withCiphertext(sealedB, 1, bad.subarray(0, 999), true), { from: 'b', weight: 5 }), 'E_HE_CIPHERTEXT_INVALID');
    agg.accept(await enc.apply(c, ctx), { from: 'c', weight: 3 });
    expect(agg.count).toBe(2);
    const mean = await heDecrypt({ context: client }).apply(agg.result(), ctx);
    expect(maxAbsDiff(mean.params.get('fc.weight')!.data as Float32Array, fedAvg([a, c], [1, 3], 'fc.weight'))).toBeLessThan(1e-6);
    agg.dispose();
  });

  it('gives the same result twice, and starts over after reset()', async () => {
    const agg = new HeAggregator({ context: server });
    agg.accept(await heEncrypt({ context: client }).apply(smallModel(41), ctx), { from: 'a' });
    const first = await heDecrypt({ context: client }).apply(agg.result(), ctx);
    const second = await heDecrypt({ context: client }).apply(agg.result(), ctx);
    expect(maxAbsDiff(first.params.get('fc.weight')!.data as Float32Array, second.params.get('fc.weight')!.data as Float32Array)).toBeLessThan(1e-9);
    agg.reset();
    expect(agg.count).toBe(0);
    await expectFlareCodeAsync(() => agg.result(), 'E_HE_NO_UPDATES');
    agg.accept(await heEncrypt({ context: client }).apply(smallModel(42), ctx), { from: 'a' });
    expect(agg.count).toBe(1);
    agg.dispose();
    expect(() => agg.result()).toThrow(TypeError);
  });

  it('refuses a plain update in encrypted aggregation (E_HE_NOT_ENCRYPTED)', async () => {
    const agg = new HeAggregator({ context: server });
    agg.accept(await heEncrypt({ context: client }).apply(smallModel(51), ctx), { from: 'a' });
    await expectFlareCodeAsync(() => agg.accept(smallModel(52), { from: 'b' }), 'E_HE_NOT_ENCRYPTED');
    agg.dispose();
  });

  it('refuses updates of another key set (E_HE_CONTEXT_MISMATCH) or other parameters (E_HE_PARAMS_MISMATCH)', async () => {
    const agg = new HeAggregator({ context: server });
    await expectFlareCodeAsync(async () => agg.accept(await heEncrypt({ context: other.client }).apply(smallModel(53), ctx), { from: 'x' }), 'E_HE_CONTEXT_MISMATCH');
    await expectFlareCodeAsync(async () => agg.accept(await heEncrypt({ context: flare.client }).apply(smallModel(53), ctx), { from: 'x' }), 'E_HE_PARAMS_MISMATCH');
    agg.dispose();
  });

  it('refuses updates that pack other tensors, shapes or kinds than the first (E_HE_LAYOUT_MISMATCH)', async () => {
    const agg = new HeAggregator({ context: server });
    agg.accept(await heEncrypt({ context: client }).apply(smallModel(54), ctx), { from: 'a' });
    const enc = heEncrypt({ context: client });
    await expectFlareCodeAsync(async () => agg.accept(await enc.apply(smallModel(55, 'full'), ctx), { from: 'b' }), 'E_HE_LAYOUT_MISMATCH');
    await expectFlareCodeAsync(async () => agg.accept(await heEncrypt({ context: client, tensors: ['fc.weight'] }).apply(smallModel(55), ctx), { from: 'b' }), 'E_HE_LAYOUT_MISMATCH');
    const reshaped = smallModel(55);
    reshaped.params.set('fc.weight', tensor(reshaped.params.get('fc.weight')!.data, [100, 50]));
    await expectFlareCodeAsync(async () => agg.accept(await enc.apply(reshaped, ctx), { from: 'b' }), 'E_HE_LAYOUT_MISMATCH');
    expect(agg.count).toBe(1);
    agg.dispose();
  });

  it('refuses a second update from the same site (E_HE_DUPLICATE_UPDATE) and one for another round (E_HE_ROUND_MISMATCH)', async () => {
    const agg = new HeAggregator({ context: server });
    const update = await heEncrypt({ context: client }).apply(smallModel(56), ctx);
    agg.accept(update, { from: 'a', round: 4 });
    await expectFlareCodeAsync(() => agg.accept(update, { from: 'a', round: 4 }), 'E_HE_DUPLICATE_UPDATE');
    await expectFlareCodeAsync(() => agg.accept(update, { from: 'b', round: 5 }), 'E_HE_ROUND_MISMATCH');
    agg.dispose();
  });

  it("weighs like FLARE: aggregation weight (ctx, else per-site map, else 1) x NUM_STEPS_CURRENT_ROUND; averages metrics; records the round", async () => {
    const [a, b, c] = [smallModel(61), smallModel(62), smallModel(63)];
    b.meta['NUM_STEPS_CURRENT_ROUND'] = 30;
    a.metrics = { loss: 1 };
    b.metrics = { loss: 4 };
    c.metrics = { loss: 7 };
    const enc = heEncrypt({ context: client });
    const agg = new HeAggregator({ context: server, aggregationWeights: new Map([['c', 2]]) });
    agg.accept(await enc.apply(a, ctx), { from: 'a', round: 9 }); // 1 x 10
    agg.accept(await enc.apply(b, ctx), { from: 'b', weight: 0.5, round: 9 }); // 0.5 x 30
    agg.accept(await enc.apply(c, ctx), { from: 'c', round: 9 }); // 2 x 10
    const result = agg.result();
    expect(result.meta['current_round']).toBe(9);
    expect(result.metrics!['loss']).toBeCloseTo((10 * 1 + 15 * 4 + 20 * 7) / 45, 12);
    const mean = await heDecrypt({ context: client }).apply(result, ctx);
    expect(maxAbsDiff(mean.params.get('fc.weight')!.data as Float32Array, fedAvg([a, b, c], [10, 15, 20], 'fc.weight'))).toBeLessThan(1e-6);
    agg.dispose();
    const plainWeights = new HeAggregator({ context: server, useSteps: false });
    plainWeights.accept(await enc.apply(b, ctx), { from: 'b', weight: 2 });
    expect(plainWeights.result().meta['flare.he']).toMatchObject({ aggregate: { weight: 2 } });
    plainWeights.dispose();
  });

  it('refuses bad step counts and counts above the cap (E_HE_WEIGHT)', async () => {
    const m = smallModel(64);
    m.meta['NUM_STEPS_CURRENT_ROUND'] = 500;
    const sealed = await heEncrypt({ context: client }).apply(m, ctx);
    const capped = new HeAggregator({ context: server, maxSteps: 100 });
    await expectFlareCodeAsync(() => capped.accept(sealed, { from: 'a' }), 'E_HE_WEIGHT');
    m.meta['NUM_STEPS_CURRENT_ROUND'] = -1;
    await expectFlareCodeAsync(async () => capped.accept(await heEncrypt({ context: client }).apply(m, ctx), { from: 'a' }), 'E_HE_WEIGHT');
    capped.dispose();
    expect(() => new HeAggregator({ context: server, maxSteps: 0 })).toThrow(RangeError);
  });

  it.each([0, -1, Number.NaN, Number.POSITIVE_INFINITY])('refuses weight %s (E_HE_WEIGHT)', async (weight) => {
    const agg = new HeAggregator({ context: server });
    await expectFlareCodeAsync(async () => agg.accept(await heEncrypt({ context: client }).apply(smallModel(57), ctx), { from: 'a', weight }), 'E_HE_WEIGHT');
    agg.dispose();
  });

  it('refuses a total weight the parameters cannot carry (E_HE_CAPACITY, one rescaling prime)', async () => {
    const agg = new HeAggregator({ context: flare.server });
    const update = await heEncrypt({ context: flare.client }).apply(model({ w: tensor(new Float32Array(8)) }), ctx);
    agg.accept(update, { from: 'a', weight: 1 });
    await expectFlareCodeAsync(() => agg.accept(update, { from: 'b', weight: 5000 }), 'E_HE_CAPACITY');
    agg.dispose();
  });

  it('refuses a result before any update (E_HE_NO_UPDATES), and an aggregate offered as an update (E_HE_ENVELOPE)', async () => {
    const agg = new HeAggregator({ context: server });
    await expectFlareCodeAsync(() => agg.result(), 'E_HE_NO_UPDATES');
    agg.accept(await heEncrypt({ context: client }).apply(smallModel(58), ctx), { from: 'a' });
    const result = agg.result();
    await expectFlareCodeAsync(() => agg.accept(result, { from: 'b' }), 'E_HE_ENVELOPE');
    agg.dispose();
  });

  it('refuses a ciphertext that is not a fresh top-level encryption, even with a matching digest (E_HE_CIPHERTEXT_INVALID)', async () => {
    const agg = new HeAggregator({ context: server });
    const update = await heEncrypt({ context: client }).apply(smallModel(59), ctx);
    agg.accept(update, { from: 'a' });
    const lastLevel = ciphertext(agg.result(), 0);
    await expectFlareCodeAsync(() => agg.accept(withCiphertext(update, 0, lastLevel, true), { from: 'b' }), 'E_HE_CIPHERTEXT_INVALID');
    agg.dispose();
  });

  it('refuses a context holding the secret key on the server side (E_HE_SECRET_KEY_PRESENT) unless allowed', async () => {
    await expectFlareCodeAsync(() => new HeAggregator({ context: client }), 'E_HE_SECRET_KEY_PRESENT');
    new HeAggregator({ context: client, allowSecretKey: true }).dispose();
  });
});
