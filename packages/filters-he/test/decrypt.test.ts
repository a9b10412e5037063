import { expectFlareCodeAsync } from '@flare/core/testing';
import { model, tensor, type FLModel } from '@flare/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateHeKeys, heDecrypt, heEncrypt, type HeContext } from '../src/index.js';
import { ciphertext, filterContext, smallModel, withCiphertext, withEnvelope } from './helpers.js';

let client: HeContext;
let server: HeContext;
let other: { client: HeContext; server: HeContext };
let flare: { client: HeContext; server: HeContext };
let sealed: FLModel;
const ctx = filterContext();

beforeAll(async () => {
  ({ client, server } = await generateHeKeys());
  other = await generateHeKeys();
  flare = await generateHeKeys({ coeffModBits: [60, 40, 40] });
  sealed = await heEncrypt({ context: client }).apply(smallModel(11), ctx);
});
afterAll(() => {
  for (const c of [client, server, other.client, other.server, flare.client, flare.server]) c.dispose();
});

describe('heDecrypt', () => {
  it('passes a plain model through unchanged (the first global model is plain), with an audit event', async () => {
    const plain = smallModel(12);
    const events: unknown[] = [];
    expect(await heDecrypt({ context: client }).apply(plain, filterContext(events))).toBe(plain);
    expect(events).toEqual([expect.objectContaining({ action: 'he_plain_passthrough' })]);
  });

  it('refuses a plain model when told to require encryption (E_HE_NOT_ENCRYPTED)', async () => {
    await expectFlareCodeAsync(() => heDecrypt({ context: client, requireEncrypted: true }).apply(smallModel(12), ctx), 'E_HE_NOT_ENCRYPTED');
  });

  it('refuses a model encrypted under another key set (E_HE_CONTEXT_MISMATCH)', async () => {
    await expectFlareCodeAsync(() => heDecrypt({ context: other.client }).apply(sealed, ctx), 'E_HE_CONTEXT_MISMATCH');
  });

  it('refuses a model encrypted with another parameter set (E_HE_PARAMS_MISMATCH)', async () => {
    await expectFlareCodeAsync(() => heDecrypt({ context: flare.client }).apply(sealed, ctx), 'E_HE_PARAMS_MISMATCH');
  });

  it('refuses ciphertext bytes changed after encryption (E_HE_CIPHERTEXT_TAMPERED)', async () => {
    const bytes = ciphertext(sealed, 1).slice();
    bytes[5000] = bytes[5000]! ^ 0x01;
    await expectFlareCodeAsync(() => heDecrypt({ context: client }).apply(withCiphertext(sealed, 1, bytes, false), ctx), 'E_HE_CIPHERTEXT_TAMPERED');
  });

  it('refuses a truncated ciphertext even when its digest was forged to match (E_HE_CIPHERTEXT_INVALID)', async () => {
    const bytes = ciphertext(sealed, 0);
    const cut = bytes.slice(0, bytes.length - 1000);
    await expectFlareCodeAsync(() => heDecrypt({ context: client }).apply(withCiphertext(sealed, 0, cut, true), ctx), 'E_HE_CIPHERTEXT_INVALID');
    // The same with SEAL's size field patched to the new length: SEAL 4.1 would abort on this; we refuse it first.
    new DataView(cut.buffer).setBigUint64(8, BigInt(cut.length), true);
    await expectFlareCodeAsync(() => heDecrypt({ context: client }).apply(withCiphertext(sealed, 0, cut, true), ctx), 'E_HE_CIPHERTEXT_INVALID');
  });

  it('refuses a ciphertext of another key passed off under this context id (E_HE_DECRYPT_FAILED)', async () => {
    // A forger who knows the context id and parameters but not the key: structure is valid, values are noise.
    const foreign = await heEncrypt({ context: other.client }).apply(smallModel(11), ctx);
    const forged = withCiphertext(sealed, 0, ciphertext(foreign, 0), true);
    await expectFlareCodeAsync(() => heDecrypt({ context: client }).apply(forged, ctx), 'E_HE_DECRYPT_FAILED');
  });

  it.each([
    ['a missing ciphertext tensor', (m: FLModel) => ({ ...m, params: new Map([...m.params].filter(([n]) => n !== 'flare.he.ct.1')) })],
    ['an extra ciphertext tensor', (m: FLModel) => ({ ...m, params: new Map([...m.params, ['flare.he.ct.7', tensor(new Uint8Array(3))]]) })],
    ['a ciphertext tensor of another dtype', (m: FLModel) => ({ ...m, params: new Map([...m.params, ['flare.he.ct.0', tensor(new Float32Array(3))]]) })],
    ['an unknown envelope field', (m: FLModel) => withEnvelope(m, (he) => (he['x'] = 1))],
    ['a wrong digest count', (m: FLModel) => withEnvelope(m, (he) => (he['digests'] as string[]).pop())],
    ['a length that disagrees with the packing', (m: FLModel) => withEnvelope(m, (he) => (he['length'] = 5052))],
    ['a packing with a gap', (m: FLModel) => withEnvelope(m, (he) => ((he['tensors'] as unknown[][])[1]![3] = 5001))],
    ['a tensor packed twice', (m: FLModel) => withEnvelope(m, (he) => ((he['tensors'] as unknown[][])[1]![0] = 'fc.weight'))],
    ['an encrypted name also in plaintext', (m: FLModel) => ({ ...m, params: new Map([...m.params, ['fc.bias', tensor(new Float32Array(50))]]) })],
    ['an envelope that is not an object', (m: FLModel) => withEnvelope({ ...m, meta: { 'flare.he': 'x' } }, () => undefined)],
  ])('refuses %s (E_HE_ENVELOPE)', async (_label, mutate) => {
    await expectFlareCodeAsync(() => heDecrypt({ context: client }).apply(mutate(sealed), ctx), 'E_HE_ENVELOPE');
  });

  it('refuses a server context at creation (E_HE_NO_SECRET_KEY)', async () => {
    await expectFlareCodeAsync(() => heDecrypt({ context: server }), 'E_HE_NO_SECRET_KEY');
  });

  it('does not modify its input', async () => {
    const before = structuredClone(sealed.meta);
    const bytes = ciphertext(sealed, 0).slice();
    await heDecrypt({ context: client }).apply(sealed, ctx);
    expect(sealed.meta).toEqual(before);
    expect(ciphertext(sealed, 0)).toEqual(bytes);
  });

  it('keeps plaintext tensors and meta of a partly encrypted model', async () => {
    const m = model({ a: tensor(new Float32Array([1, 2])), b: tensor(new Float32Array([3])) }, 'full', { note: 'x' });
    const part = await heEncrypt({ context: client, tensors: ['a'] }).apply(m, ctx);
    const back = await heDecrypt({ context: client }).apply(part, ctx);
    expect(back.params.get('b')).toBe(m.params.get('b'));
    expect(back.meta).toEqual({ note: 'x' });
    expect(Array.from(back.params.get('a')!.data as Float32Array, (x) => Math.round(x))).toEqual([1, 2]);
  });
});
