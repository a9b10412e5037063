import { expectFlareCodeAsync } from '@flare/core/testing';
import { HeError } from '@flare/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateHeKeys, type HeContext } from '../src/index.js';
import { engineOf } from '../src/context.js';
import type { CkksEngine } from '../src/seal/engine.js';
import { loadSeal } from '../src/seal/library.js';
import { checkCiphertext, checkSecretKey } from '../src/seal/wire.js';
import { rng } from './helpers.js';

// The validator between the wire and SEAL (src/seal/wire.ts). SEAL 4.1's WebAssembly loader aborts the module
// on streams that end early and reads out of bounds on some corrupted zstd data; these tests show that no
// such input gets past the validator, and that the module still works after thousands of hostile inputs.

let client: HeContext;
let engine: CkksEngine;
let seeded: Uint8Array; // SEAL zstd, seeded (as clients send)
let expandedNone: Uint8Array; // uncompressed, both polynomials
let expandedZstd: Uint8Array;

beforeAll(async () => {
  ({ client } = await generateHeKeys());
  engine = engineOf(client);
  const values = Float64Array.from({ length: 4096 }, (_, i) => Math.sin(i));
  seeded = engine.encrypt(values);
  const ct = engine.load(checkCiphertext(seeded, engine.shape));
  const seal = await loadSeal();
  expandedNone = ct.handle.saveArray(seal.ComprModeType.none);
  expandedZstd = engine.save(ct);
  ct.delete();
});
afterAll(() => client.dispose());

const MEMBERS = 16; // outer SEAL header
const patch = (bytes: Uint8Array, at: number, f: (dv: DataView) => void): Uint8Array => {
  const out = bytes.slice();
  f(new DataView(out.buffer, at));
  return out;
};

describe('SEAL ciphertext validator', () => {
  it('accepts what SEAL writes: seeded zstd, expanded zstd, expanded uncompressed', () => {
    expect(checkCiphertext(seeded, engine.shape)).toMatchObject({ seeded: true, scale: 2 ** 40 });
    expect(checkCiphertext(expandedZstd, engine.shape)).toMatchObject({ seeded: false, scale: 2 ** 40 });
    const none = checkCiphertext(expandedNone, engine.shape);
    expect(none.sealBytes).toBe(expandedNone);
    expect(none.level).toBe(engine.shape.levels[0]);
  });

  it.each([
    ['an empty buffer', () => new Uint8Array(0)],
    ['another magic', () => patch(expandedNone, 0, (d) => d.setUint16(0, 0xa15f, true))],
    ['SEAL version 3.6', () => patch(expandedNone, 3, (d) => d.setUint8(0, 3))],
    ['zlib compression', () => patch(expandedNone, 5, (d) => d.setUint8(0, 1))],
    ['reserved bits', () => patch(expandedNone, 6, (d) => d.setUint16(0, 1, true))],
    ['a declared size that differs', () => patch(expandedNone, 8, (d) => d.setBigUint64(0, 12n, true))],
    ['a parms_id of no level', () => patch(expandedNone, MEMBERS, (d) => d.setUint8(0, d.getUint8(0) ^ 1))],
    ['a ciphertext not in NTT form', () => patch(expandedNone, MEMBERS + 32, (d) => d.setUint8(0, 0))],
    ['three polynomials', () => patch(expandedNone, MEMBERS + 33, (d) => d.setBigUint64(0, 3n, true))],
    ['another degree', () => patch(expandedNone, MEMBERS + 41, (d) => d.setBigUint64(0, 4096n, true))],
    ['another RNS size', () => patch(expandedNone, MEMBERS + 49, (d) => d.setBigUint64(0, 2n, true))],
    ['scale 0', () => patch(expandedNone, MEMBERS + 57, (d) => d.setFloat64(0, 0, true))],
    ['scale NaN', () => patch(expandedNone, MEMBERS + 57, (d) => d.setFloat64(0, Number.NaN, true))],
    ['scale 2^150', () => patch(expandedNone, MEMBERS + 57, (d) => d.setFloat64(0, 2 ** 150, true))],
    ['a correction factor (BGV only)', () => patch(expandedNone, MEMBERS + 65, (d) => d.setBigUint64(0, 2n, true))],
    ['a data header of another size', () => patch(expandedNone, MEMBERS + 73 + 8, (d) => d.setBigUint64(0, 5n, true))],
    ['a data count that differs', () => patch(expandedNone, MEMBERS + 73 + 16, (d) => d.setBigUint64(0, 7n, true))],
    ['a coefficient not reduced modulo its prime', () => patch(expandedNone, MEMBERS + 73 + 24 + 8 * 100, (d) => d.setBigUint64(0, 2n ** 64n - 1n, true))],
    ['an unknown seed generator', () => patch(seededNone(), seededNone().length - 65, (d) => d.setUint8(0, 9))],
    ['a zstd frame without its content size', () => patch(seeded, MEMBERS + 4, (d) => d.setUint8(0, 0x00))],
    ['a zstd content size no ciphertext has', () => patch(seeded, MEMBERS + 5, (d) => d.setUint32(0, 100_000, true))],
    ['corrupt zstd data', () => patch(seeded, MEMBERS + 40, (d) => d.setUint32(0, 0xffffffff, true))],
    ['a truncated zstd frame (size patched)', () => truncated(seeded, 5000)],
    ['a truncated uncompressed ciphertext (size patched)', () => truncated(expandedNone, 5000)],
  ])('refuses %s (E_HE_CIPHERTEXT_INVALID)', async (_label, make) => {
    await expectFlareCodeAsync(() => checkCiphertext(make(), engine.shape), 'E_HE_CIPHERTEXT_INVALID');
  });

  it('fuzz: 1,500 mutated ciphertexts are refused or load cleanly; SEAL never sees a short stream and keeps working', () => {
    const next = rng(2024);
    const sources = [seeded, expandedZstd, expandedNone, seededNone()];
    const outcomes = new Map<string, number>();
    for (let k = 0; k < 1500; k++) {
      const source = sources[k % sources.length]!;
      const bytes = mutate(source, next, k);
      let outcome: string;
      try {
        const checked = checkCiphertext(bytes, engine.shape);
        const ct = engine.load(checked);
        ct.delete();
        outcome = 'loaded';
      } catch (e) {
        if (!(e instanceof HeError)) throw new Error(`mutation ${k} escaped as ${String(e)}`);
        expect(e.code).toBe('E_HE_CIPHERTEXT_INVALID');
        outcome = e.message.replace(/\d+/g, 'N').slice(0, 40);
      }
      outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
    }
    expect(outcomes.size).toBeGreaterThan(5);
    // After all that, SEAL still encrypts, loads and decrypts correctly.
    const values = Float64Array.from({ length: 4096 }, (_, i) => i / 4096);
    const ct = engine.load(checkCiphertext(engine.encrypt(values), engine.shape));
    const back = engine.decrypt(ct);
    ct.delete();
    expect(Math.max(...back.map((v, i) => Math.abs(v - values[i]!)))).toBeLessThan(1e-6);
  });

  it('checks secret keys the same way before SEAL reads them (E_HE_CONTEXT_FORMAT)', async () => {
    const key = engine.exportSecretKey();
    expect(checkSecretKey(key, 8192, engine.keyLevel)).toBe(key);
    await expectFlareCodeAsync(() => checkSecretKey(key.subarray(0, key.length - 8), 8192, engine.keyLevel), 'E_HE_CONTEXT_FORMAT');
    await expectFlareCodeAsync(() => checkSecretKey(patch(key, 16, (d) => d.setUint8(0, d.getUint8(0) ^ 1)), 8192, engine.keyLevel), 'E_HE_CONTEXT_FORMAT');
    await expectFlareCodeAsync(() => checkSecretKey(patch(key, 16 + 40, (d) => d.setFloat64(0, 2, true)), 8192, engine.keyLevel), 'E_HE_CONTEXT_FORMAT');
    await expectFlareCodeAsync(() => checkSecretKey(patch(key, key.length - 8, (d) => d.setBigUint64(0, 2n ** 63n, true)), 8192, engine.keyLevel), 'E_HE_CONTEXT_FORMAT');
    await expectFlareCodeAsync(() => checkSecretKey(patch(key, 0, (d) => d.setUint8(0, 0)), 8192, engine.keyLevel), 'E_HE_CONTEXT_FORMAT');
  });
});

function seededNone(): Uint8Array {
  const checked = checkCiphertext(seeded, engine.shape);
  return checked.sealBytes;
}

function truncated(bytes: Uint8Array, length: number): Uint8Array {
  const out = bytes.slice(0, length);
  new DataView(out.buffer).setBigUint64(8, BigInt(length), true);
  return out;
}

function mutate(source: Uint8Array, next: () => number, k: number): Uint8Array {
  const at = (lo: number) => lo + Math.floor(next() * (source.length - lo));
  switch (k % 5) {
    case 0: {
      const out = source.slice();
      for (let i = 0, n = 1 + Math.floor(next() * 4); i < n; i++) out[at(16)]! ^= 1 + Math.floor(next() * 255);
      return out;
    }
    case 1: {
      const out = source.slice();
      out[16 + Math.floor(next() * 100)]! ^= 1 + Math.floor(next() * 255);
      return out;
    }
    case 2:
      return truncated(source, at(17));
    case 3: {
      const cut = at(16);
      const drop = 1 + Math.floor(next() * 300);
      const out = new Uint8Array(Math.max(16, source.length - drop));
      out.set(source.subarray(0, cut));
      out.set(source.subarray(Math.min(source.length, cut + drop)).subarray(0, out.length - cut), cut);
      new DataView(out.buffer).setBigUint64(8, BigInt(out.length), true);
      return out;
    }
    default: {
      const out = source.slice();
      out[Math.floor(next() * 16)]! ^= 1 + Math.floor(next() * 255);
      return out;
    }
  }
}
