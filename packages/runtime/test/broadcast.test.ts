import { describe, expect, it } from 'vitest';
import { Pacer } from '../src/server/broadcast.js';

const nextTurn = (): Promise<void> => new Promise((r) => setImmediate(r));

describe('Pacer (a fan-out to thousands of sites yields to the event loop between batches)', () => {
  it('lets callers through in order, at most one batch per turn of the event loop', async () => {
    const pacer = new Pacer(10);
    const done: number[] = [];
    const all = Array.from({ length: 35 }, (_, i) => pacer.turn().then(() => void done.push(i)));
    const seen: number[] = [];
    for (let i = 0; i < 100 && done.length < 35; i++) {
      await nextTurn();
      seen.push(done.length);
    }
    await Promise.all(all);
    expect(done).toEqual(Array.from({ length: 35 }, (_, i) => i));
    // Other work (here: this test's own turns) runs between the batches.
    expect(seen.length).toBeGreaterThanOrEqual(4);
    expect(seen.every((n, i) => n - (i === 0 ? 0 : seen[i - 1]!) <= 10)).toBe(true);
  });

  it('refuses a batch that is not a positive integer (RangeError)', () => {
    expect(() => new Pacer(0)).toThrow(RangeError);
  });
});
