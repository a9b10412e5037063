import type { Aggregator, AuditHook, FLModel } from '@flare/core';

/**
 * One contribution to a standalone aggregation function. `weight` defaults to 1; `from` names the site
 * (contributions from the same named site are refused as duplicates, E_AGG_DUPLICATE).
 */
export interface WeightedUpdate {
  readonly model: FLModel;
  readonly weight?: number;
  readonly from?: string;
}

/**
 * The streaming aggregators of this package: core's {@link Aggregator} plus the round they aggregate and
 * the sites they counted. `reset(round)` starts the next round (without an argument: the current round + 1,
 * when a round is known).
 */
export interface RoundAggregator extends Aggregator {
  /** The registered name of the method (`fedavg`, `trimmed-mean`, ...). */
  readonly method: string;
  /** The kind contributions must have (and the result has, except for server optimizers, which return weights). */
  readonly kind: FLModel['kind'];
  /** The round being aggregated, when known. */
  readonly round: number | undefined;
  /** The sites whose contributions were accepted this round, sorted. */
  contributors(): string[];
  reset(round?: number): void;
}

/** Options every streaming aggregator accepts. */
export interface StreamingOptions {
  /** The kind contributions must have: `'diff'` (weight differences, FLARE's default) or `'full'` (weights). */
  readonly kind?: FLModel['kind'];
  /** The round to aggregate first; contributions for another round are refused (E_AGG_ROUND). */
  readonly round?: number;
  /** Receives `contribution_refused` and `round_aggregated` events (no model data, no secrets). */
  readonly audit?: AuditHook;
}
