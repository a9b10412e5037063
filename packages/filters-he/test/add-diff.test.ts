import { expectFlareCodeAsync } from '@flare/core/testing';
import { model, tensor, type FLModel } from '@flare/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateHeKeys, heAddDiff, HeAggregator, heDecrypt, heEncrypt, isEncryptedModel, type HeContext } from '../src/index.js';
import { filterContext, maxAbsDiff, rng, uniform } from './helpers.js';

let client: HeContext;
let server: HeContext;
let flare: { client: HeContext; server: HeContext };
const ctx = filterContext();

beforeAll(async () => {
  ({ client, server } = await generateHeKeys());
  flare = await generateHeKeys({ coeffModBits: [60, 40, 40] });
});
afterAll(() => {
  for (const c of [client, server, flare.client, flare.server]) c.dispose();
});

const layer = (seed: number, scale = 0.01): FLModel =>
  model({ w: tensor(Float32Array.from(uniform(6000, rng(seed)), (x) => x * scale)), b: tensor(uniform(3, rng(seed + 1))) }, 'diff');

async function encryptedMean(keys: { client: HeContext; server: HeContext }, diffs: FLModel[], weights: number[], tensors?: string[]): Promise<FLModel> {
  const agg = new HeAggregator({ context: keys.server });
  for (const [i, d] of diffs.entries()) agg.accept(await heEncrypt({ context: keys.client, ...(tensors ? { tensors } : {}) }).apply(d, ctx), { from: `s${i}`, weight: weights[i]! });
  const r = agg.result();
  agg.dispose();
  return r;
}

describe('heAddDiff', () => {
  it('adds encrypted mean diffs to a plain, then an encrypted, global model over three rounds (server holds no key)', async () => {
    const initial = model({ w: tensor(uniform(6000, rng(1))), b: tensor(new Float32Array(3)) }, 'full', { round: 0 });
    let global: FLModel = initial;
    const expected = Float64Array.from(initial.params.get('w')!.data as Float32Array);
    for (let round = 0; round < 3; round++) {
      const diffs = [layer(10 * round + 1), layer(10 * round + 2)];
      const weights = [1 + round, 2];
      global = heAddDiff(server, global, await encryptedMean({ client, server }, diffs, weights));
      expect(isEncryptedModel(global)).toBe(true);
      expect(global.kind).toBe('full');
      const total = weights[0]! + weights[1]!;
      for (let i = 0; i < expected.length; i++) {
        expected[i] = expected[i]! + (weights[0]! * (diffs[0]!.params.get('w')!.data as Float32Array)[i]! + weights[1]! * (diffs[1]!.params.get('w')!.data as Float32Array)[i]!) / total;
      }
    }
    expect(global.meta['round']).toBe(0);
    const plain = await heDecrypt({ context: client }).apply(global, ctx);
    expect(maxAbsDiff(plain.params.get('w')!.data as Float32Array, expected)).toBeLessThan(1e-6);
  });

  it('adds the tensors left in plaintext in plaintext', async () => {
    const base = model({ w: tensor(new Float32Array(6000).fill(1)), b: tensor(new Float32Array([1, 2, 3])) });
    const sum = heAddDiff(server, base, await encryptedMean({ client, server }, [layer(5)], [1], ['w']));
    const b = layer(5).params.get('b')!.data as Float32Array;
    expect(Array.from(sum.params.get('b')!.data as Float32Array)).toEqual(Array.from(b, (x, i) => Math.fround(x + i + 1)));
  });

  it('refuses a plain diff (E_HE_NOT_ENCRYPTED) and a base with other tensors (E_HE_LAYOUT_MISMATCH)', async () => {
    const diff = await encryptedMean({ client, server }, [layer(6)], [1]);
    await expectFlareCodeAsync(() => heAddDiff(server, layer(6), layer(6)), 'E_HE_NOT_ENCRYPTED');
    await expectFlareCodeAsync(() => heAddDiff(server, model({ w: tensor(new Float32Array(10)) }), diff), 'E_HE_LAYOUT_MISMATCH');
    const global = heAddDiff(server, model({ w: tensor(new Float32Array(6000)), b: tensor(new Float32Array(3)) }), diff);
    const partial = await encryptedMean({ client, server }, [layer(7)], [1], ['w']);
    await expectFlareCodeAsync(() => heAddDiff(server, global, partial), 'E_HE_LAYOUT_MISMATCH');
  });

  it('refuses a plain base beyond the value limit (E_HE_VALUE_RANGE)', async () => {
    const diff = await encryptedMean({ client, server }, [layer(8)], [1]);
    const base = model({ w: tensor(new Float32Array(6000).fill(2 ** 20)), b: tensor(new Float32Array(3)) });
    await expectFlareCodeAsync(() => heAddDiff(server, base, diff), 'E_HE_VALUE_RANGE');
  });

  it('refuses encrypted models whose scales differ (E_HE_SCALE_MISMATCH, one rescaling prime)', async () => {
    const base = model({ w: tensor(new Float32Array(6000)), b: tensor(new Float32Array(3)) });
    const g1 = heAddDiff(flare.server, base, await encryptedMean(flare, [layer(9)], [1]));
    const diff2 = await encryptedMean(flare, [layer(10), layer(11)], [1, 1]);
    await expectFlareCodeAsync(() => heAddDiff(flare.server, g1, diff2), 'E_HE_SCALE_MISMATCH');
    // Same total weight, same scale: the addition is allowed.
    const g2 = heAddDiff(flare.server, g1, await encryptedMean(flare, [layer(12)], [1]));
    const plain = await heDecrypt({ context: flare.client }).apply(g2, ctx);
    const w12 = layer(12).params.get('w')!.data as Float32Array;
    const expected = Float64Array.from(layer(9).params.get('w')!.data as Float32Array, (x, i) => x + w12[i]!);
    expect(maxAbsDiff(plain.params.get('w')!.data as Float32Array, expected)).toBeLessThan(1e-6);
  });
});
