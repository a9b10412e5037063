import type { Aggregator, AuditHook, FLModel, ModelManifest } from '@flare/core';

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
 * the sites they counted. `beginRound(r)` starts round r, and starts it again on a retry; `reset()` without
 * an argument starts the next round after a result, and the same round again before one.
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
  /**
   * Starts aggregating `round`, forgetting every contribution accepted since the last start: call it at the
   * start of every attempt of a round; a retry of round r calls `beginRound(r)` again and its contributions
   * (for round r) are accepted.
   */
  beginRound(round: number): void;
  /**
   * `reset(r)` is `beginRound(r)`. Without an argument: after `result()`, the next round (current + 1 when a
   * round is known); before it (the round did not complete), the same round again.
   */
  reset(round?: number): void;
  /**
   * The round's result written into `out`'s tensors instead of new ones (with `add`, added to them: for
   * `'diff'` results, `global += average`), closing the round as `result()` does; returns the result's meta
   * and metrics. Present on FedAvg and the norm-bound wrappers; with it, a round allocates nothing model-sized.
   */
  resultInto?(out: FLModel, options?: ResultIntoOptions): Pick<FLModel, 'meta' | 'metrics'>;
}

/** Options of {@link RoundAggregator.resultInto}. */
export interface ResultIntoOptions {
  /** Add the result to `out` instead of replacing `out`'s values (only for `'diff'` results). */
  readonly add?: boolean;
}

/** Options every streaming aggregator accepts. */
export interface StreamingOptions {
  /** The kind contributions must have: `'diff'` (weight differences, FLARE's default) or `'full'` (weights). */
  readonly kind?: FLModel['kind'];
  /** The round to aggregate first; contributions for another round are refused (E_AGG_ROUND). */
  readonly round?: number;
  /** Receives `contribution_refused` and `round_aggregated` events (no model data, no secrets). */
  readonly audit?: AuditHook;
  /**
   * The tensors (names, dtypes, shapes) contributions may have: core's `manifestOf(global)`. Others are
   * refused (E_MODEL_MISMATCH). Without it (and without `template`), the first contribution sets them.
   */
  readonly manifest?: ModelManifest;
}
