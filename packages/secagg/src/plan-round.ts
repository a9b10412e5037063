import type { RoundConfig } from './config.js';
import { checkRoundConfig } from './config.js';
import { PROTOCOL } from './crypto.js';
import { planSecAggGraph, type GraphPlan, type GraphPlanOptions } from './plan-graph.js';
import { planEncoding, type EncodingPlan, type EncodingPlanOptions } from './plan-encoding.js';

/** What {@link planSecAggRound} needs. */
export interface RoundPlanOptions extends Omit<GraphPlanOptions, 'sites'> {
  readonly job: string;
  readonly round: number;
  /** The participants (any order; the configuration sorts them). */
  readonly sites: readonly string[];
  /** The float update each site contributes, or null to sum ring elements given directly (`length` then required). */
  readonly encoding: Omit<EncodingPlanOptions, 'sites' | 'bits' | 'noise'> & {
    /**
     * Distributed DP: the honest sites' noise on the sum has standard deviation multiplier·clip. The statement
     * counts on the graph plan's `minHonestInSum` honest sites unless `honestSites` says fewer.
     */
    readonly noise?: { readonly multiplier: number; readonly honestSites?: number } | null;
  } | null;
  /** Ring Z_{2^bits} (default 32). */
  readonly bits?: number;
  /** Ring elements per input when `encoding` is null. */
  readonly length?: number;
}

/** A round's configuration with the reasoning behind it. */
export interface RoundPlan {
  readonly config: RoundConfig;
  readonly graph: GraphPlan;
  readonly encoding: EncodingPlan | null;
}

/**
 * Plans a whole round before it starts: the neighbourhood size and threshold for the stated corruption and
 * dropout fractions ({@link planSecAggGraph}), the encoding for the ring, and with distributed DP each site's
 * noise so that the honest sites the threshold guarantees in any learnable sum carry the target noise
 * ({@link planEncoding}). The configuration is checked as every site will check it.
 *
 * @throws SecAggError E_SECAGG_PARAMS when no parameters meet the bounds, E_SECAGG_CONFIG for a bad site list.
 * @example
 * ```ts
 * const { config } = planSecAggRound({
 *   job: 'job-1', round: 0, sites,
 *   corruptFraction: 0.05, dropoutFraction: 0.1,
 *   bits: 20,
 *   encoding: { dimension: 1_000_000, clip: 1, noise: { multiplier: 1 } },
 * });
 * ```
 */
export function planSecAggRound(options: RoundPlanOptions): RoundPlan {
  const sites = [...options.sites].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const graph = planSecAggGraph({ ...options, sites: sites.length });
  const bits = options.bits ?? 32;
  let encoding: EncodingPlan | null = null;
  let length: number;
  if (options.encoding === null) {
    if (options.length === undefined) throw new RangeError('"length" is required when "encoding" is null');
    length = options.length;
  } else {
    const noise = options.encoding.noise ?? null;
    encoding = planEncoding({
      ...options.encoding,
      bits,
      sites: sites.length,
      noise: noise === null ? null : { multiplier: noise.multiplier, honestSites: Math.min(noise.honestSites ?? graph.minHonestInSum, graph.minHonestInSum) },
    });
    length = encoding.length;
  }
  // Semi-honest: the guarantee counts every honest survivor, so the round stops once more sites drop than it
  // was planned for. Active: the threshold itself bounds what the server can learn.
  const survivorsNeeded = Math.max(
    graph.threshold,
    graph.server === 'semi-honest' ? sites.length - graph.dropoutSites : 0,
    encoding?.encoding.noise?.honestSites ?? 0,
  );
  const config = checkRoundConfig({
    protocol: PROTOCOL,
    job: options.job,
    round: options.round,
    sites,
    degree: graph.degree,
    threshold: graph.threshold,
    minSurvivors: Math.min(survivorsNeeded, sites.length),
    bits,
    length,
    encoding: encoding?.encoding ?? null,
  });
  return { config, graph, encoding };
}
