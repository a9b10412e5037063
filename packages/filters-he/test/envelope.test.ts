import { model, tensor } from '@flare/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateHeKeys, HE_META_KEY, HE_TENSOR_PREFIX, HeEnvelopeSchema, heEncrypt, isEncryptedModel, type HeContext } from '../src/index.js';
import { filterContext, smallModel } from './helpers.js';

let client: HeContext;
beforeAll(async () => {
  ({ client } = await generateHeKeys());
});
afterAll(() => client.dispose());

describe('the HE envelope', () => {
  it('describes an encrypted model in meta["flare.he"] with ciphertexts as flare.he.ct.<i> uint8 tensors', async () => {
    const sealed = await heEncrypt({ context: client, tensors: ['fc.weight'] }).apply(smallModel(1), filterContext());
    expect(HE_META_KEY).toBe('flare.he');
    expect(HE_TENSOR_PREFIX).toBe('flare.he.ct.');
    const envelope = HeEnvelopeSchema.parse(sealed.meta[HE_META_KEY]);
    expect(envelope).toMatchObject({ v: 1, scheme: 'ckks', context: client.id, params: client.fingerprint, slots: 4096, length: 5000 });
    expect(envelope.tensors).toEqual([['fc.weight', 'float32', [50, 100], 0]]);
    expect(envelope.digests).toHaveLength(2);
    expect(sealed.params.get('flare.he.ct.1')!.dtype).toBe('uint8');
  });

  it('tells encrypted models from plain ones (by envelope or by ciphertext tensor names)', () => {
    expect(isEncryptedModel(smallModel(2))).toBe(false);
    expect(isEncryptedModel(model({ x: tensor(new Float32Array(1)) }, 'full', { [HE_META_KEY]: {} }))).toBe(true);
    expect(isEncryptedModel(model({ 'flare.he.ct.0': tensor(new Uint8Array(1)) }))).toBe(true);
  });

  it('has a strict schema: unknown fields, bad digests and foreign schemes are refused', async () => {
    const sealed = await heEncrypt({ context: client }).apply(smallModel(3), filterContext());
    const good = sealed.meta[HE_META_KEY] as Record<string, unknown>;
    expect(HeEnvelopeSchema.safeParse({ ...good, extra: true }).success).toBe(false);
    expect(HeEnvelopeSchema.safeParse({ ...good, scheme: 'bfv' }).success).toBe(false);
    expect(HeEnvelopeSchema.safeParse({ ...good, digests: ['00'] }).success).toBe(false);
    expect(HeEnvelopeSchema.safeParse({ ...good, tensors: [['w', 'complex64', [1], 0]] }).success).toBe(false);
  });
});
