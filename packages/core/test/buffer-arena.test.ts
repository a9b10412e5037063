import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { BufferArena, decodeModel, encodedByteLength, encodeModel, encodeModelInto, model, tensor } from '../src/index.js';
import { modelArb, sameModel } from './helpers.js';

describe('BufferArena', () => {
  it('hands out 8-byte-aligned, non-overlapping views and reuses the same memory after reset()', () => {
    const arena = new BufferArena({ blockBytes: 64 });
    const a = arena.alloc(3);
    const b = arena.alloc(10);
    const c = arena.alloc(100); // larger than a block: a block of its own
    for (const v of [a, b, c]) expect(v.byteOffset % 8).toBe(0);
    expect(b.buffer).toBe(a.buffer);
    expect(b.byteOffset).toBeGreaterThanOrEqual(a.byteOffset + a.length);
    const capacity = arena.capacity;
    arena.reset();
    const a2 = arena.alloc(3);
    const b2 = arena.alloc(10);
    const c2 = arena.alloc(100);
    expect([a2.buffer, b2.buffer, c2.buffer]).toEqual([a.buffer, b.buffer, c.buffer]);
    expect([a2.byteOffset, b2.byteOffset, c2.byteOffset]).toEqual([a.byteOffset, b.byteOffset, c.byteOffset]);
    expect(arena.capacity).toBe(capacity);
    expect(() => arena.alloc(-1)).toThrow(RangeError);
    expect(() => new BufferArena({ blockBytes: 0 })).toThrow(RangeError);
  });
});

describe('encodeModelInto / decodeModel with an arena', () => {
  it('encodes into caller memory exactly what encodeModel produces (property)', () => {
    fc.assert(
      fc.property(modelArb, fc.nat(9), (m, offset) => {
        const reference = encodeModel(m);
        expect(encodedByteLength(m)).toBe(reference.length);
        const out = new Uint8Array(offset + reference.length + 3).fill(0xee);
        expect(encodeModelInto(m, out, offset)).toBe(reference.length);
        expect(out.subarray(offset, offset + reference.length)).toEqual(reference);
        expect(out[offset + reference.length]).toBe(0xee);
      }),
      { numRuns: 200, seed: 2026120507 },
    );
  });

  it('refuses a buffer that is too small (RangeError), writing nothing', () => {
    const m = model({ w: tensor(new Float32Array([1, 2, 3])) });
    const out = new Uint8Array(encodedByteLength(m) - 1);
    expect(() => encodeModelInto(m, out)).toThrow(RangeError);
    expect(out.every((b) => b === 0)).toBe(true);
  });

  it('decodes misaligned input into arena memory: same model, and after the first model no new memory (property)', () => {
    fc.assert(
      fc.property(modelArb, (m) => {
        const bytes = encodeModel(m);
        const shifted = new Uint8Array(bytes.length + 1);
        shifted.set(bytes, 1);
        const arena = new BufferArena({ blockBytes: 1024 });
        const first = decodeModel(shifted.subarray(1), {}, { arena });
        expect(sameModel(first, m)).toBe(true);
        const capacity = arena.capacity;
        arena.reset();
        const again = decodeModel(shifted.subarray(1), {}, { arena });
        expect(sameModel(again, m)).toBe(true);
        expect(arena.capacity).toBe(capacity);
        for (const t of again.params.values()) if (t.data.byteLength > 0 && t.dtype !== 'uint8' && t.dtype !== 'bool') expect(t.data.buffer).not.toBe(shifted.buffer);
      }),
      { numRuns: 200, seed: 2026120508 },
    );
  });
});
