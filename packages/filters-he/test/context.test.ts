import { expectFlareCodeAsync } from '@flare/core/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateHeKeys, heDecrypt, loadHeContext, type HeContext } from '../src/index.js';
import { engineOf } from '../src/context.js';


let client: HeContext;
let server: HeContext;
beforeAll(async () => {
  ({ client, server } = await generateHeKeys());
});
afterAll(() => {
  client.dispose();
  server.dispose();
});

function header(bytes: Uint8Array): Record<string, unknown> {
  const n = new DataView(bytes.buffer, bytes.byteOffset).getUint32(8, true);
  return JSON.parse(new TextDecoder().decode(bytes.subarray(12, 12 + n))) as Record<string, unknown>;
}

function indexOf(haystack: Uint8Array, needle: Uint8Array): number {
  return Buffer.from(haystack.buffer, haystack.byteOffset, haystack.byteLength).indexOf(Buffer.from(needle.buffer, needle.byteOffset, needle.byteLength));
}

describe('generateHeKeys / loadHeContext', () => {
  it('gives the client the secret key and the server only the parameters, under one context id', () => {
    expect(client.hasSecretKey).toBe(true);
    expect(server.hasSecretKey).toBe(false);
    expect(server.id).toBe(client.id);
    expect(client.id).toMatch(/^[0-9a-f]{32}$/);
    expect(server.params).toEqual(client.params);
    expect(client.slots).toBe(4096);
    expect(client.valueLimit).toBe(2 ** 17);
  });

  it('the server cannot decrypt: no secret key in its bytes, none to load, and the decrypt path refuses (E_HE_NO_SECRET_KEY)', async () => {
    const serverBytes = server.serialize();
    const secretKey = engineOf(client).exportSecretKey();
    // The server context is a ~200-byte header: no room for a 196 KB key, and the key's bytes are nowhere in it.
    expect(header(serverBytes)['secretKey']).toBeNull();
    expect(serverBytes.length).toBeLessThan(512);
    expect(indexOf(serverBytes, secretKey.subarray(100, 164))).toBe(-1);
    const loaded = await loadHeContext(serverBytes);
    expect(loaded.hasSecretKey).toBe(false);
    await expectFlareCodeAsync(() => heDecrypt({ context: loaded }), 'E_HE_NO_SECRET_KEY');
    await expectFlareCodeAsync(() => engineOf(loaded).decrypt(undefined as never), 'E_HE_NO_SECRET_KEY');
    await expectFlareCodeAsync(() => engineOf(loaded).exportSecretKey(), 'E_HE_NO_SECRET_KEY');
    await expectFlareCodeAsync(() => engineOf(loaded).encrypt(new Float64Array(1)), 'E_HE_NO_SECRET_KEY');
    loaded.dispose();
  });

  it('round-trips a client context: same id, parameters and secret key', async () => {
    const bytes = client.serialize();
    const again = await loadHeContext(bytes);
    expect(again.id).toBe(client.id);
    expect(again.params).toEqual(client.params);
    expect(again.hasSecretKey).toBe(true);
    expect(again.serialize()).toEqual(bytes);
    again.dispose();
  });

  it('derives the server context from a client context', () => {
    const s = client.toServerContext();
    expect(s.hasSecretKey).toBe(false);
    expect(s.id).toBe(client.id);
    expect(s.serialize()).toEqual(server.serialize());
    s.dispose();
  });

  it('makes a new key set every time', async () => {
    const other = await generateHeKeys();
    expect(other.client.id).not.toBe(client.id);
    expect(engineOf(other.client).exportSecretKey()).not.toEqual(engineOf(client).exportSecretKey());
    other.client.dispose();
    other.server.dispose();
  });

  it('accepts FLARE parameters [60, 40, 40]', async () => {
    const k = await generateHeKeys({ coeffModBits: [60, 40, 40] });
    expect(k.client.params.coeffModBits).toEqual([60, 40, 40]);
    k.client.dispose();
    k.server.dispose();
  });

  it.each([
    ['empty bytes', () => new Uint8Array(0)],
    ['other magic', (b: Uint8Array) => Uint8Array.from(b, (x, i) => (i === 0 ? x ^ 1 : x))],
    ['a header length past the end', (b: Uint8Array) => { const c = b.slice(); new DataView(c.buffer).setUint32(8, 1 << 20, true); return c; }],
    ['a truncated secret key', (b: Uint8Array) => b.subarray(0, b.length - 1)],
    ['trailing bytes', (b: Uint8Array) => Uint8Array.from([...b, 0])],
    ['a secret key that differs from its digest', (b: Uint8Array) => Uint8Array.from(b, (x, i) => (i === b.length - 10 ? x ^ 1 : x))],
  ])('refuses %s (E_HE_CONTEXT_FORMAT)', async (_label, mutate) => {
    await expectFlareCodeAsync(() => loadHeContext(mutate(client.serialize())), 'E_HE_CONTEXT_FORMAT');
  });

  it('refuses a header with unknown fields or bad JSON (E_HE_CONTEXT_FORMAT) and bad parameters (E_HE_INSECURE_PARAMS)', async () => {
    const rebuild = (json: string, rest: Uint8Array = new Uint8Array(0)) => {
      const h = new TextEncoder().encode(json);
      const out = new Uint8Array(12 + h.length + rest.length);
      out.set(new TextEncoder().encode('FLAREHE1'));
      new DataView(out.buffer).setUint32(8, h.length, true);
      out.set(h, 12);
      out.set(rest, 12 + h.length);
      return out;
    };
    const good = header(server.serialize());
    await expectFlareCodeAsync(() => loadHeContext(rebuild(JSON.stringify({ ...good, extra: 1 }))), 'E_HE_CONTEXT_FORMAT');
    await expectFlareCodeAsync(() => loadHeContext(rebuild('{"format":')), 'E_HE_CONTEXT_FORMAT');
    await expectFlareCodeAsync(() => loadHeContext(rebuild(JSON.stringify({ ...good, coeffModBits: [60, 60, 60, 60] }))), 'E_HE_INSECURE_PARAMS');
    // A secret key made for other parameters is refused by the layout check, before SEAL reads it.
    const flare = await generateHeKeys({ coeffModBits: [60, 40, 40] });
    const key = engineOf(flare.client).exportSecretKey();
    const { createHash } = await import('node:crypto');
    const forged = rebuild(JSON.stringify({ ...good, secretKey: { bytes: key.length, sha256: createHash('sha256').update(key).digest('hex') } }), key);
    await expectFlareCodeAsync(() => loadHeContext(forged), 'E_HE_CONTEXT_FORMAT');
    flare.client.dispose();
    flare.server.dispose();
  });

  it('throws TypeError once disposed, and for contexts it did not make', async () => {
    const k = await generateHeKeys();
    k.client.dispose();
    k.client.dispose();
    expect(k.client.disposed).toBe(true);
    expect(() => k.client.serialize()).toThrow(TypeError);
    expect(() => heDecrypt({ context: k.client })).toThrow(TypeError);
    expect(() => heDecrypt({ context: { ...client } as HeContext })).toThrow(TypeError);
    k.server.dispose();
  });
});
