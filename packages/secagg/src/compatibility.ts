import { SecAggError } from '@flare/core';

/** What a job asks for, as far as secure aggregation is concerned. */
export interface SecAggJobSpec {
  /** The aggregator's name, as @flare/aggregator spells it ('fedavg', 'krum', ...). */
  readonly aggregator: string;
  /** True when the aggregator bounds each site's update norm at the server (its `normBound` argument). */
  readonly serverNormBound?: boolean;
  /** How sites are weighted in the mean: equally (default), or by a weight each site reports (steps, samples, a table). */
  readonly weighting?: 'uniform' | 'per-site';
  /** Homomorphic encryption of updates (@flare/filters-he). */
  readonly homomorphicEncryption?: boolean;
  /** Filters the server runs on each site's result before aggregation. */
  readonly serverResultFilters?: readonly string[];
  /** Distributed discrete Gaussian noise through this package. */
  readonly distributedDp?: boolean;
  /** Confidential-computing attestation of the participants (@flare/cc-attest). */
  readonly attestation?: boolean;
  /** Differential-privacy filters at the sites before secure aggregation (@flare/filters-dp). */
  readonly localDp?: boolean;
}

/** Aggregators that only need the sum of the updates (FedAvg and the FedOpt family apply their step to the mean). */
export const SECAGG_AGGREGATORS: readonly string[] = Object.freeze(['fedavg', 'fedavgm', 'fedadagrad', 'fedadam', 'fedyogi']);

/** Aggregators that must see each update: they cannot run on masked inputs. */
export const ROBUST_AGGREGATORS: readonly string[] = Object.freeze(['median', 'trimmed-mean', 'krum', 'multi-krum', 'bulyan', 'geometric-median']);

/**
 * Decides whether a job may run with secure aggregation, before the round starts. Allowed: a mean-based
 * aggregator ({@link SECAGG_AGGREGATORS}), site-side filters (local DP), attestation, distributed DP with equal
 * weights. Refused, with E_SECAGG_INCOMPATIBLE naming the setting:
 * - robust aggregators (median, trimmed mean, Krum, Bulyan, geometric median) and a server-side norm bound:
 *   they need each update, which the server never sees (bound norms at the sites: the encoder clips);
 * - filters the server runs on single results, for the same reason;
 * - homomorphic encryption: it hides the updates another way; ciphertexts cannot be masked in Z_{2^k}; pick one;
 * - per-site weights with distributed DP: a weight scales a site's contribution, and with it the sensitivity the
 *   noise was calibrated for (without DP, sites pre-scale their update and add their weight as one more summed
 *   value);
 * - any aggregator not known to need only the sum (fail closed).
 *
 * @throws SecAggError E_SECAGG_INCOMPATIBLE.
 * @example
 * ```ts
 * checkSecAggCompatibility({ aggregator: 'fedavg', distributedDp: true, attestation: true }); // ok
 * checkSecAggCompatibility({ aggregator: 'krum' }); // throws E_SECAGG_INCOMPATIBLE
 * ```
 */
export function checkSecAggCompatibility(spec: SecAggJobSpec): void {
  const refuse = (setting: string, why: string): never => {
    throw new SecAggError('E_SECAGG_INCOMPATIBLE', `secure aggregation cannot run with ${setting}: ${why}`);
  };
  if (ROBUST_AGGREGATORS.includes(spec.aggregator)) {
    refuse(`the ${spec.aggregator} aggregator`, 'a robust aggregator needs each site\'s update, and the server only ever sees their sum');
  }
  if (!SECAGG_AGGREGATORS.includes(spec.aggregator)) {
    refuse(`the ${JSON.stringify(spec.aggregator)} aggregator`, `only ${SECAGG_AGGREGATORS.join(', ')} are known to need nothing but the sum`);
  }
  if (spec.serverNormBound === true) refuse('a server-side norm bound', 'the server cannot measure an update it cannot see; sites clip before encoding');
  if (spec.serverResultFilters !== undefined && spec.serverResultFilters.length > 0) {
    refuse(`server result filters (${spec.serverResultFilters.join(', ')})`, 'they read each site\'s result, which stays masked');
  }
  if (spec.homomorphicEncryption === true) refuse('homomorphic encryption', 'both hide the updates from the server; CKKS ciphertexts cannot be masked in the ring: choose one');
  if (spec.distributedDp === true && spec.weighting === 'per-site') {
    refuse('per-site weights and distributed DP', 'a weight scales a site\'s contribution beyond the clip bound the noise was calibrated for');
  }
}
