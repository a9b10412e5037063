import { model, tensor } from '@flare/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateHeKeys, heEncrypt, heModelStats, heWasmHeapBytes, type HeContext } from '../src/index.js';
import { filterContext, smallModel } from './helpers.js';

let client: HeContext;
beforeAll(async () => {
  ({ client } = await generateHeKeys());
});
afterAll(() => client.dispose());

describe('heModelStats / heWasmHeapBytes', () => {
  it('count ciphertexts, their bytes, encrypted values and plaintext tensors', async () => {
    expect(heModelStats(smallModel(1))).toBeUndefined();
    const sealed = await heEncrypt({ context: client, tensors: ['fc.weight'] }).apply(smallModel(1), filterContext());
    const stats = heModelStats(sealed)!;
    expect(stats).toMatchObject({ ciphertexts: 2, encryptedValues: 5000, plainTensors: 2 });
    expect(stats.ciphertextBytes).toBe([...sealed.params].filter(([n]) => n.startsWith('flare.he.ct.')).reduce((a, [, t]) => a + t.data.length, 0));
  });

  it('reports the SEAL WebAssembly heap once SEAL is loaded', () => {
    const bytes = heWasmHeapBytes();
    expect(bytes).toBeGreaterThan(1 << 20);
    expect(bytes! % 65536).toBe(0); // WebAssembly pages
  });

  it('refuses to count a malformed envelope (E_HE_ENVELOPE)', () => {
    expect(() => heModelStats(model({ x: tensor(new Float32Array(1)) }, 'full', { 'flare.he': 1 }))).toThrow(expect.objectContaining({ code: 'E_HE_ENVELOPE' }));
  });
});
