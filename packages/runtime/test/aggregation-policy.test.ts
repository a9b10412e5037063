import { isFlareError } from '@flare/core';
import { describe, expect, it } from 'vitest';
import { parseJobDefinition } from '../src/protocol/job-definition.js';
import { aggregatorSpecFor, parseAggregationPolicy } from '../src/server/aggregation-policy.js';
import { jobDefinition } from './helpers.js';

const def = (aggregator?: unknown) => parseJobDefinition(jobDefinition(aggregator === undefined ? {} : { aggregator: aggregator as never }));
const code = (f: () => unknown): string | undefined => {
  try {
    f();
  } catch (e) {
    return isFlareError(e) ? e.code : String(e);
  }
  return undefined;
};

describe('the server aggregation policy (local/aggregation.json)', () => {
  it('a job naming no aggregator gets FedAvg with the adaptive norm bound (the secure default)', () => {
    expect(aggregatorSpecFor(def())).toEqual({ name: 'fedavg', args: { normBound: 'adaptive' } });
  });

  it('by default a job may name a robust or norm-bounded aggregator, and may not opt out into plain FedAvg or FedAdam (E_RUNTIME_AGGREGATOR_POLICY)', () => {
    expect(aggregatorSpecFor(def({ name: 'krum', args: { f: 1 } })).name).toBe('krum');
    expect(aggregatorSpecFor(def({ name: 'norm-bound', args: { maxNorm: 5 }, aggregator: { name: 'fedadam' } })).name).toBe('norm-bound');
    expect(aggregatorSpecFor(def({ name: 'fedadam', args: { normBound: 'adaptive' } })).name).toBe('fedadam');
    expect(code(() => aggregatorSpecFor(def({ name: 'fedavg' })))).toBe('E_RUNTIME_AGGREGATOR_POLICY');
    expect(code(() => aggregatorSpecFor(def({ name: 'fedadam', args: { eta: 0.1 } })))).toBe('E_RUNTIME_AGGREGATOR_POLICY');
  });

  it('"require": "none" lets a job opt out; "robust" refuses a norm bound alone; its own default must meet it', () => {
    expect(aggregatorSpecFor(def({ name: 'fedavg' }), parseAggregationPolicy({ require: 'none' })).name).toBe('fedavg');
    const robust = parseAggregationPolicy({ require: 'robust', default: { name: 'median' } });
    expect(code(() => aggregatorSpecFor(def({ name: 'fedavg', args: { normBound: { maxNorm: 1 } } }), robust))).toBe('E_RUNTIME_AGGREGATOR_POLICY');
    expect(aggregatorSpecFor(def(), robust)).toEqual({ name: 'median' });
    expect(code(() => parseAggregationPolicy({ require: 'robust' }))).toBe('E_RUNTIME_AGGREGATOR_POLICY');
  });

  it('refuses a malformed policy file, naming the field (E_RUNTIME_AGGREGATOR_POLICY)', () => {
    expect(code(() => parseAggregationPolicy('{ "require": "nothing" }'))).toBe('E_RUNTIME_AGGREGATOR_POLICY');
    expect(code(() => parseAggregationPolicy('{ "requires": "none" }'))).toBe('E_RUNTIME_AGGREGATOR_POLICY');
    expect(code(() => parseAggregationPolicy('{ "default": { "name": "fedmagic" } }'))).toBe('E_RUNTIME_AGGREGATOR_POLICY');
    expect(code(() => parseAggregationPolicy('not json'))).toBe('E_RUNTIME_AGGREGATOR_POLICY');
    expect(parseAggregationPolicy(new TextEncoder().encode('{ "format_version": "1.0", "max_steps": 100 }')).max_steps).toBe(100);
  });
});
