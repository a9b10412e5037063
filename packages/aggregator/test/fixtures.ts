// Test helpers: a seeded random source (tests never use Math.random), model builders, error-code capture.
import { model, type FLModel, type Tensor } from '@flare/core';
import fc from 'fast-check';

/** A seeded PRNG (mulberry32, Tommy Ettinger's public-domain generator): uniform in [0, 1). */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Standard normal samples from a uniform source (Box-Muller). */
export function gaussian(u: () => number): () => number {
  return () => {
    const a = Math.max(u(), Number.MIN_VALUE);
    return Math.sqrt(-2 * Math.log(a)) * Math.cos(2 * Math.PI * u());
  };
}

/** A one-tensor float64 model `w` of the given values. */
export function vec(values: readonly number[], kind: FLModel['kind'] = 'diff', meta: FLModel['meta'] = {}): FLModel {
  return model({ w: { dtype: 'float64', shape: [values.length], data: Float64Array.from(values) } }, kind, meta);
}

/** A model from named float32 tensors (flat shapes). */
export function f32(tensors: Record<string, readonly number[]>, kind: FLModel['kind'] = 'diff', meta: FLModel['meta'] = {}): FLModel {
  const params = new Map<string, Tensor>();
  for (const [name, v] of Object.entries(tensors)) params.set(name, { dtype: 'float32', shape: [v.length], data: Float32Array.from(v) });
  return model(params, kind, meta);
}

/** The values of tensor `name` as a plain array. */
export function values(m: FLModel, name = 'w'): number[] {
  const t = m.params.get(name);
  if (t === undefined) throw new Error(`no tensor ${name}`);
  return Array.from(t.data as ArrayLike<number>);
}

/** Byte-for-byte equality of two models' tensors (names in order, dtypes, shapes, data bits). */
export function sameBits(a: FLModel, b: FLModel): boolean {
  const ea = [...a.params];
  const eb = [...b.params];
  if (ea.length !== eb.length) return false;
  return ea.every(([name, t], i) => {
    const [nb, u] = eb[i]!;
    if (name !== nb || t.dtype !== u.dtype || t.shape.join() !== u.shape.join()) return false;
    const x = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
    const y = new Uint8Array(u.data.buffer, u.data.byteOffset, u.data.byteLength);
    return x.length === y.length && x.every((v, k) => v === y[k]);
  });
}

/**
 * Doubles in the range exact-sum.ts sums exactly in any order: 0, or a magnitude in [1e-6, max]. Addends of one
 * coordinate that span more than about 2^100 (1e-40 next to 1e3) are summed to within 2^-104 of the sum but not
 * bit for bit in every order, as exact-sum.ts documents; order-independence properties draw from this range.
 */
export function boundedDouble(max: number): fc.Arbitrary<number> {
  return fc.oneof(fc.constant(0), fc.tuple(fc.boolean(), fc.double({ min: 1e-6, max, noNaN: true })).map(([neg, x]) => (neg ? -x : x)));
}
