import { encodeFrame } from '@flare/core';
import { describe, expect, it } from 'vitest';
import { createAggregator, saveAggregatorState, type ServerOptAggregator } from '../src/index.js';
import { expectFlareCode } from '@flare/core/testing';
import { f32 } from './fixtures.js';

const global = () => f32({ w: [0, 0] }, 'full');

describe('saveAggregatorState', () => {
  it('is undefined for aggregators that carry nothing across rounds', () => {
    expect(saveAggregatorState(createAggregator({ name: 'fedavg' }))).toBeUndefined();
    expect(saveAggregatorState(createAggregator({ name: 'krum', args: { f: 1 } }))).toBeUndefined();
    expect(saveAggregatorState(createAggregator({ name: 'fedavg', args: { normBound: 'adaptive' } }))).toBeUndefined(); // no round done yet
  });

  it('round-trips a server optimizer\'s moments through createAggregator (and still takes its own saveState bytes)', () => {
    const spec = { name: 'fedyogi', args: { eta: 0.1 } };
    const agg = createAggregator(spec, { global: global() }) as ServerOptAggregator;
    agg.accept(f32({ w: [1, -1] }), { from: 'a' });
    const next = agg.result();
    const resumed = createAggregator(spec, { global: next, state: saveAggregatorState(agg)! }) as ServerOptAggregator;
    expect(resumed.optimizer.steps).toBe(1);
    expect((createAggregator(spec, { global: next, state: agg.optimizer.saveState() }) as ServerOptAggregator).optimizer.steps).toBe(1);
  });

  it('refuses a state of another optimizer, of an adaptive bound the aggregator lacks, or a malformed one (E_AGG_STATE)', () => {
    const agg = createAggregator({ name: 'fedadam', args: { normBound: 'adaptive' } }, { global: global() });
    agg.accept(f32({ w: [1, -1] }), { from: 'a' });
    const next = agg.result();
    const state = saveAggregatorState(agg)!;
    expectFlareCode(() => createAggregator({ name: 'fedyogi', args: { normBound: 'adaptive' } }, { global: next, state }), 'E_AGG_STATE');
    expectFlareCode(() => createAggregator({ name: 'fedadam' }, { global: next, state }), 'E_AGG_STATE');
    expectFlareCode(() => createAggregator({ name: 'fedavg' }, { global: next, state }), 'E_AGG_STATE');
    const forged = encodeFrame({ format: 'flare-ts/aggregator-state', version: 1, adaptive: { medianNorm: -5 }, optimizer: null });
    expectFlareCode(() => createAggregator({ name: 'fedavg', args: { normBound: 'adaptive' } }, { state: forged }), 'E_AGG_STATE');
    const extra = encodeFrame({ format: 'flare-ts/aggregator-state', version: 1, adaptive: null, optimizer: null, evil: true });
    expectFlareCode(() => createAggregator({ name: 'fedavg', args: { normBound: 'adaptive' } }, { state: extra }), 'E_AGG_STATE');
    expectFlareCode(() => createAggregator({ name: 'fedavg', args: { normBound: 'adaptive' } }, { state: state.subarray(0, 20) }), 'E_AGG_STATE');
  });
});
