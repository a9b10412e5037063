import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { adjacent, buildGraph, neighboursOf } from '../src/graph.js';

const seed = (n: number) => new Uint8Array(32).fill(n);

describe('Harary graph with random relabelling', () => {
  it('is k-regular and symmetric, and adjacent() agrees with neighboursOf() (property)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 4, max: 40 }).chain((n) => fc.tuple(fc.constant(n), fc.integer({ min: 1, max: Math.floor((n - 2) / 2) }).map((h) => 2 * h))),
        fc.integer({ min: 0, max: 255 }),
        ([n, k], s) => {
          fc.pre(k < n - 1);
          const g = buildGraph(n, k, seed(s));
          for (let i = 0; i < n; i++) {
            const ns = neighboursOf(g, i);
            expect(ns.length).toBe(k);
            expect(new Set(ns).size).toBe(k);
            expect(ns).not.toContain(i);
            for (const j of ns) expect(neighboursOf(g, j)).toContain(i);
            for (let j = 0; j < n; j++) expect(adjacent(g, i, j)).toBe(ns.includes(j));
          }
        },
      ),
      { numRuns: 30, seed: 2026120523 },
    );
  });

  it('is the complete graph at degree n - 1', () => {
    const g = buildGraph(7, 6, seed(1));
    expect(neighboursOf(g, 3)).toEqual([0, 1, 2, 4, 5, 6]);
  });

  it('is a fixed function of the seed, and another seed relabels it', () => {
    const a = buildGraph(50, 6, seed(1));
    expect(buildGraph(50, 6, seed(1)).order).toEqual(a.order);
    expect(buildGraph(50, 6, seed(2)).order).not.toEqual(a.order);
    expect([...a.order].sort((x, y) => x - y)).toEqual(Array.from({ length: 50 }, (_, i) => i));
  });
});
