import { META, type AuditEventInput } from '@flare/core';
import { describe, expect, it } from 'vitest';
import { FedAdam, FedAvgM, ServerOptAggregator, TrimmedMeanAggregator } from '../src/index.js';
import { expectFlareCode } from '@flare/core/testing';
import { f32, sameBits, values, vec } from './fixtures.js';

describe('ServerOptAggregator', () => {
  it('applies the optimizer to the averaged diff and returns the new global model (kind full)', () => {
    const agg = new ServerOptAggregator({ optimizer: new FedAvgM({ eta: 2 }), global: vec([1, 1], 'full'), kind: 'diff', round: 0 });
    agg.accept(vec([1, 0]), { from: 'a', round: 0 });
    agg.accept(vec([3, 2]), { from: 'b', round: 0 });
    const next = agg.result(); // delta = [2, 1]; x = [1, 1] + 2 [2, 1]
    expect(values(next)).toEqual([5, 3]);
    expect(next.kind).toBe('full');
    expect(next.meta[META.CURRENT_ROUND]).toBe(0);
    expect(agg.method).toBe('fedavgm');
  });

  it('uses aggregate - global as the pseudo-gradient of full contributions', () => {
    const agg = new ServerOptAggregator({ optimizer: new FedAvgM({ eta: 0.5 }), global: vec([10], 'full'), kind: 'full' });
    agg.accept(vec([14], 'full'), { from: 'a' });
    expect(values(agg.result())).toEqual([12]);
  });

  it('takes one optimizer step per round however often result() is called, and starts the next round from it', () => {
    const adam = new FedAdam({ eta: 0.1 });
    const agg = new ServerOptAggregator({ optimizer: adam, global: vec([0], 'full') });
    agg.accept(vec([1]), { from: 'a' });
    const first = agg.result();
    expect(sameBits(agg.result(), first)).toBe(true);
    expect(adam.steps).toBe(1);
    expect(sameBits(agg.global, vec([0], 'full'))).toBe(true);
    agg.reset();
    expect(sameBits(agg.global, first)).toBe(true);
    agg.accept(vec([1]), { from: 'a' });
    agg.result();
    expect(adam.steps).toBe(2);
  });

  it('resumes from a checkpoint (global model + optimizer state) bit for bit', () => {
    const rounds = [[0.5, -1], [0.25, 0.75], [-0.5, 0.1], [1, 1]];
    const run = (from: number, to: number, agg: ServerOptAggregator) => {
      for (let r = from; r < to; r++) {
        agg.accept(f32({ w: rounds[r]! }), { from: 'a' });
        agg.accept(f32({ w: rounds[r]!.map((v) => v / 2) }), { from: 'b' });
        agg.result();
        agg.reset();
      }
      return agg;
    };
    const initial = f32({ w: [1, 1] }, 'full');
    const straight = run(0, 4, new ServerOptAggregator({ optimizer: new FedAdam({ eta: 0.05 }), global: initial }));
    const half = run(0, 2, new ServerOptAggregator({ optimizer: new FedAdam({ eta: 0.05 }), global: initial }));
    const checkpoint = { global: half.global, state: half.optimizer.saveState() };
    const optimizer = new FedAdam({ eta: 0.05 });
    optimizer.loadState(checkpoint.state, checkpoint.global);
    const resumed = run(2, 4, new ServerOptAggregator({ optimizer, global: checkpoint.global }));
    expect(sameBits(resumed.global, straight.global)).toBe(true);
  });

  it('refuses at accept a contribution with a tensor the global model lacks (E_MODEL_MISMATCH)', () => {
    const agg = new ServerOptAggregator({ optimizer: new FedAvgM(), global: f32({ w: [0] }, 'full') });
    expectFlareCode(() => agg.accept(f32({ w: [1], extra: [1] }), { from: 'a' }), 'E_MODEL_MISMATCH');
    expectFlareCode(() => agg.result(), 'E_AGG_EMPTY');
  });

  it('runs after a robust aggregator (trimmed mean, then FedAvgM)', () => {
    const inner = new TrimmedMeanAggregator({ beta: 0.2 });
    const agg = new ServerOptAggregator({ optimizer: new FedAvgM(), global: vec([0], 'full'), inner });
    [1, 2, 3, 4, 1000].forEach((v, i) => agg.accept(vec([v]), { from: `s${i}` }));
    expect(values(agg.result())).toEqual([3]);
    expect(agg.method).toBe('trimmed-mean+fedavgm');
  });

  it('norm-bounds contributions around the global model when asked', () => {
    const agg = new ServerOptAggregator({ optimizer: new FedAvgM(), global: vec([10], 'full'), kind: 'full', normBound: { maxNorm: 1 } });
    agg.accept(vec([110], 'full'), { from: 'a' });
    expect(values(agg.result())).toEqual([11]);
    expect(() => new ServerOptAggregator({ optimizer: new FedAvgM(), global: vec([0], 'full'), normBound: { maxNorm: -1 } })).toThrow(RangeError);
  });

  it('reports the aggregation to the audit hook', () => {
    const events: AuditEventInput[] = [];
    const agg = new ServerOptAggregator({ optimizer: new FedAvgM(), global: vec([0], 'full'), round: 2, audit: (e) => (events.push(e), undefined) });
    agg.accept(vec([1]), { from: 'a', round: 2 });
    agg.result();
    expect(events.at(-1)).toMatchObject({ action: 'round_aggregated', data: { method: 'fedavgm', round: 2, contributions: 1 } });
  });

  it('needs a full global model (TypeError)', () => {
    expect(() => new ServerOptAggregator({ optimizer: new FedAvgM(), global: vec([0], 'diff') })).toThrow(TypeError);
  });
});
