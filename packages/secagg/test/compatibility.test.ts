import { describe, expect, it } from 'vitest';
import { checkSecAggCompatibility, ROBUST_AGGREGATORS, SECAGG_AGGREGATORS } from '../src/compatibility.js';

const incompatible = (what: string) => expect.objectContaining({ code: 'E_SECAGG_INCOMPATIBLE', message: expect.stringContaining(what) });

describe('which jobs may run with secure aggregation', () => {
  it('allows mean-based aggregators with distributed DP, local DP and attestation', () => {
    for (const aggregator of SECAGG_AGGREGATORS) {
      expect(() => checkSecAggCompatibility({ aggregator, distributedDp: true, localDp: true, attestation: true })).not.toThrow();
    }
    expect(() => checkSecAggCompatibility({ aggregator: 'fedavg', weighting: 'per-site' })).not.toThrow();
  });

  it.each(ROBUST_AGGREGATORS)('refuses the robust aggregator %s (E_SECAGG_INCOMPATIBLE)', (aggregator) => {
    expect(() => checkSecAggCompatibility({ aggregator })).toThrow(incompatible(aggregator));
  });

  it('refuses an unknown aggregator, a server-side norm bound, server result filters, HE, and per-site weights with distributed DP (E_SECAGG_INCOMPATIBLE)', () => {
    expect(() => checkSecAggCompatibility({ aggregator: 'my-custom' })).toThrow(incompatible('my-custom'));
    expect(() => checkSecAggCompatibility({ aggregator: 'fedavg', serverNormBound: true })).toThrow(incompatible('norm bound'));
    expect(() => checkSecAggCompatibility({ aggregator: 'fedavg', serverResultFilters: ['validator'] })).toThrow(incompatible('validator'));
    expect(() => checkSecAggCompatibility({ aggregator: 'fedavg', homomorphicEncryption: true })).toThrow(incompatible('homomorphic'));
    expect(() => checkSecAggCompatibility({ aggregator: 'fedadam', distributedDp: true, weighting: 'per-site' })).toThrow(incompatible('per-site'));
  });
});
