import { createHash } from 'node:crypto';
import { model, tensor, type FilterContext, type FLModel, type JsonValue, type Tensor } from '@flare/core';
import { expect } from 'vitest';

/** A filter context for tests, collecting audit events. */
export function filterContext(events: unknown[] = []): FilterContext {
  return { site: 'site-1', job: 'job-1', round: 0, audit: (e) => (events.push(e), undefined) };
}

/** A deterministic PRNG in [0, 1) (mulberry32): test data only. */
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

/** Float32 values in [-1, 1). */
export function uniform(n: number, next: () => number): Float32Array {
  return Float32Array.from({ length: n }, () => next() * 2 - 1);
}

/** A small model: a 2-D weight, a bias and an int64 counter. */
export function smallModel(seed: number, kind: FLModel['kind'] = 'diff'): FLModel {
  const next = rng(seed);
  return model(
    {
      'fc.weight': tensor(uniform(5000, next), [50, 100]),
      'fc.bias': tensor(uniform(50, next), [50]),
      'bn.num_batches_tracked': tensor(BigInt64Array.from([BigInt(100 + seed)]), [], 'int64'),
    },
    kind,
    { NUM_STEPS_CURRENT_ROUND: 10 },
  );
}

/** A copy of `m` with one tensor's bytes replaced (and, optionally, the envelope digest updated to match). */
export function withCiphertext(m: FLModel, index: number, bytes: Uint8Array, fixDigest: boolean): FLModel {
  const params = new Map<string, Tensor>(m.params);
  params.set(`flare.he.ct.${index}`, tensor(bytes, [bytes.length], 'uint8'));
  const meta = structuredClone(m.meta) as Record<string, JsonValue>;
  if (fixDigest) {
    const he = meta['flare.he'] as { digests: string[] };
    he.digests[index] = createHash('sha256').update(bytes).digest('hex');
  }
  return { params, kind: m.kind, meta };
}

/** The bytes of ciphertext tensor `index`. */
export function ciphertext(m: FLModel, index: number): Uint8Array {
  return m.params.get(`flare.he.ct.${index}`)!.data as Uint8Array;
}

/** A copy of `m` with its envelope changed by `edit`. */
export function withEnvelope(m: FLModel, edit: (he: Record<string, JsonValue>) => void): FLModel {
  const meta = structuredClone(m.meta) as Record<string, JsonValue>;
  edit(meta['flare.he'] as Record<string, JsonValue>);
  return { params: new Map(m.params), kind: m.kind, meta };
}


/** Largest |a - b| over two float arrays. */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}
