import { expectFlareCode } from '@flare/core/testing';
import { describe, expect, it } from 'vitest';
import { seededRandom, splitValidation, toDataset, type TabularData } from '../src/data/tabular.js';

const rows = (n: number): TabularData => ({ x: Float32Array.from({ length: n * 2 }, (_, i) => i), labels: Float32Array.from({ length: n }, (_, i) => i % 3), features: 2, n });

describe('splitValidation', () => {
  it('holds out round(fraction x n) rows, the same ones for the same seed, and every row once', () => {
    const d = rows(50);
    const a = splitValidation(d, 0.2, 7);
    const b = splitValidation(d, 0.2, 7);
    expect(a.validation.n).toBe(10);
    expect(a.train.n).toBe(40);
    expect([...a.validation.x]).toEqual([...b.validation.x]);
    expect([...splitValidation(d, 0.2, 8).validation.x]).not.toEqual([...a.validation.x]);
    const firsts = [...a.train.x, ...a.validation.x].filter((_, i) => i % 2 === 0).sort((p, q) => p - q);
    expect(firsts).toEqual(Array.from({ length: 50 }, (_, i) => 2 * i));
  });

  it('refuses a split that leaves nothing to train on (E_ML_DATA_SHAPE)', () => {
    expectFlareCode(() => splitValidation(rows(1), 0.5, 1), 'E_ML_DATA_SHAPE');
  });
});

describe('toDataset', () => {
  it("one-hot encodes class indices over the job's classes", () => {
    const d = toDataset(rows(3), { task: 'classification', classes: 4 });
    expect(d.labelWidth).toBe(4);
    expect([...d.y]).toEqual([1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0]);
  });

  it('refuses a class index the model has no output for (E_ML_DATA_LABEL)', () => {
    const e = expectFlareCode(() => toDataset(rows(3), { task: 'classification', classes: 2 }, "dataset 'x'"), 'E_ML_DATA_LABEL');
    expect(e.message).toMatch(/^dataset 'x': row 3 has a class index outside 0\.\.1/);
  });

  it('seededRandom is deterministic and in [0, 1)', () => {
    const a = seededRandom(3);
    const b = seededRandom(3);
    const xs = Array.from({ length: 1000 }, () => a());
    expect(xs).toEqual(Array.from({ length: 1000 }, () => b()));
    expect(xs.every((v) => v >= 0 && v < 1)).toBe(true);
  });
});
