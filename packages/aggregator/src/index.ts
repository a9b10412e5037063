// @flare/aggregator: streaming FedAvg with FLARE's semantics, the FedOpt family of server optimizers, and
// Byzantine-robust aggregation, all on @flare/core's FLModel and Aggregator contracts.

export type { ResultIntoOptions, RoundAggregator, StreamingOptions, WeightedUpdate } from './types.js';
export type { TensorExclusion } from './exclusion.js';
export type { BufferedOptions } from './buffered.js';

export { FedAvgAggregator, fedAvg } from './fed-avg.js';
export type { FedAvgOptions } from './fed-avg.js';

export { CoordinateMedianAggregator, coordinateMedian } from './coordinate-median.js';
export type { CoordinateMedianAggregatorOptions, CoordinateMedianOptions } from './coordinate-median.js';
export { TrimmedMeanAggregator, trimmedMean } from './trimmed-mean.js';
export type { TrimmedMeanAggregatorOptions, TrimmedMeanOptions } from './trimmed-mean.js';
export { KrumAggregator, MultiKrumAggregator, krum, krumScores, multiKrum } from './krum.js';
export type { KrumAggregatorOptions, KrumOptions, MultiKrumAggregatorOptions, MultiKrumOptions } from './krum.js';
export { BulyanAggregator, bulyan } from './bulyan.js';
export type { BulyanAggregatorOptions, BulyanOptions } from './bulyan.js';
export { closestMean } from './closest-mean.js';
export type { ClosestMeanOptions } from './closest-mean.js';
export { GeometricMedianAggregator, geometricMedian } from './geometric-median.js';
export type { GeometricMedianAggregatorOptions, GeometricMedianOptions } from './geometric-median.js';
export { NormBoundAggregator, normBound } from './norm-bound.js';
export type { NormBoundAggregatorOptions, NormBoundOptions } from './norm-bound.js';
export { AdaptiveNormBoundAggregator, DEFAULT_NORM_MULTIPLE } from './adaptive-norm-bound.js';
export type { AdaptiveBoundHistory, AdaptiveNormBoundOptions } from './adaptive-norm-bound.js';

export type { ServerOptimizer, ServerOptimizerName } from './server-optimizer.js';
export { FedAvgM } from './fed-avg-m.js';
export type { FedAvgMOptions } from './fed-avg-m.js';
export { FedAdagrad } from './fed-adagrad.js';
export type { FedAdagradOptions } from './fed-adagrad.js';
export { FedAdam } from './fed-adam.js';
export type { FedAdamOptions } from './fed-adam.js';
export { FedYogi } from './fed-yogi.js';
export type { FedYogiOptions } from './fed-yogi.js';
export { ServerOptAggregator } from './server-opt-aggregator.js';
export type { ServerOptAggregatorOptions } from './server-opt-aggregator.js';

export {
  AGGREGATOR_NAMES,
  AggregatorSpecSchema,
  DEFAULT_AGGREGATOR_SPEC,
  NormBoundSpecSchema,
  ServerOptimizerSpecSchema,
  createAggregator,
  parseAggregatorSpec,
} from './spec.js';
export type { AggregatorEnv, AggregatorName, AggregatorSpec, NormBoundSpec, ServerOptimizerSpec } from './spec.js';
export { saveAggregatorState } from './state.js';
