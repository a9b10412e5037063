// A round that does not complete (too few sites) is run again with the same number: every aggregator must
// accept the retry's contributions (today's bug: reset() advanced the round and refused them all, E_AGG_ROUND).
import { manifestOf } from '@flare/core';
import { describe, expect, it } from 'vitest';
import { AGGREGATOR_NAMES, FedAvgAggregator, createAggregator, type RoundAggregator } from '../src/index.js';
import { expectFlareCode } from '@flare/core/testing';
import { f32, values } from './fixtures.js';

const global = () => f32({ w: [0, 0] }, 'full');
const update = (v: number) => f32({ w: [v, -v] });

/** A spec of every name, with arguments that work with 5 contributions. */
function specOf(name: (typeof AGGREGATOR_NAMES)[number]): unknown {
  switch (name) {
    case 'trimmed-mean':
      return { name, args: { beta: 0.2 } };
    case 'krum':
    case 'bulyan':
      return { name, args: { f: 0 } };
    case 'multi-krum':
      return { name, args: { f: 1, m: 2 } };
    case 'norm-bound':
      return { name, args: 'adaptive', aggregator: { name: 'median' } };
    default:
      return { name };
  }
}

describe('a round retry', () => {
  it('reset() before result() restarts the same round: the retry\'s contributions are accepted', () => {
    const agg = new FedAvgAggregator({ round: 2 });
    agg.accept(update(1), { from: 'site-1', round: 2 }); // the only result: min_clients not met, no result()
    agg.reset();
    expect(agg.round).toBe(2);
    agg.accept(update(1), { from: 'site-1', round: 2 });
    agg.accept(update(3), { from: 'site-2', round: 2 });
    expect(values(agg.result())).toEqual([2, -2]);
    agg.reset();
    expect(agg.round).toBe(3); // after a result, the next round
  });

  it('the same when the round was only known from the contributions (pinned, not configured)', () => {
    const agg = new FedAvgAggregator();
    agg.accept(update(1), { from: 'site-1', round: 5 });
    agg.reset();
    agg.accept(update(1), { from: 'site-1', round: 5 });
    expect(agg.round).toBe(5);
  });

  it('beginRound(r) starts round r exactly, and again on a retry', () => {
    const agg = new FedAvgAggregator();
    agg.beginRound(4);
    expectFlareCode(() => agg.accept(update(1), { from: 'a', round: 3 }), 'E_AGG_ROUND');
    agg.accept(update(1), { from: 'a', round: 4 });
    agg.beginRound(4);
    expect(agg.contributors()).toEqual([]);
    agg.accept(update(2), { from: 'a', round: 4 });
    expect(values(agg.result())).toEqual([2, -2]);
    expect(() => agg.beginRound(-1)).toThrow(RangeError);
    expect(() => agg.beginRound(undefined as never)).toThrow(TypeError);
  });

  for (const name of AGGREGATOR_NAMES) {
    it(`${name}: a retried round (beginRound with the same number) accepts every site again and aggregates the retry only`, () => {
      const agg: RoundAggregator = createAggregator(specOf(name), { global: global(), round: 0, manifest: manifestOf(global()) });
      agg.beginRound(0);
      agg.accept(update(100), { from: 'site-1', round: 0 }); // a first attempt that does not complete
      agg.beginRound(0);
      for (let i = 1; i <= 5; i++) agg.accept(update(1), { from: `site-${i}`, round: 0 });
      const out = agg.result();
      expect(agg.contributors()).toEqual(['site-1', 'site-2', 'site-3', 'site-4', 'site-5']);
      // Every method gives [1, -1] (or the global model moved by it) for five identical updates: the
      // first attempt's 100 left no trace.
      const w = values(out);
      expect(Math.abs(w[0]!)).toBeLessThan(50);
      agg.beginRound(1);
      expect(agg.round).toBe(1);
      agg.accept(update(1), { from: 'site-1', round: 1 });
      expectFlareCode(() => agg.accept(update(1), { from: 'site-2', round: 0 }), 'E_AGG_ROUND');
    });
  }
});
