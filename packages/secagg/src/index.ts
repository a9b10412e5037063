// @flare/secagg: masking secure aggregation (SecAgg+, Bell et al. CCS 2020) that survives dropouts, with the
// distributed discrete Gaussian (Kairouz, Liu, Steinke ICML 2021) so the server learns only a noisy sum.
// Flat named exports only.

export { SecAggClient } from './client.js';
export type { ClientPhase, SecAggClientOptions } from './client.js';
export { SecAggServer } from './server.js';
export type { SecAggResult, SecAggServerOptions, ServerPhase } from './server.js';
export type { SecAggSigner, SecAggVerifier } from './participants.js';

export { checkRoundConfig, contextDigest, EncodingSchema, MAX_RING_LENGTH, MAX_SITES, RoundConfigSchema, ringLength } from './config.js';
export type { Encoding, RoundConfig } from './config.js';
export { planSecAggRound } from './plan-round.js';
export type { RoundPlan, RoundPlanOptions } from './plan-round.js';
export { planSecAggGraph } from './plan-graph.js';
export type { GraphPlan, GraphPlanOptions, ServerModel } from './plan-graph.js';
export { checkEncoding, encodingBounds, MAX_WRAP_PROBABILITY, planEncoding, roundedL2Bound } from './plan-encoding.js';
export type { EncodingPlan, EncodingPlanOptions } from './plan-encoding.js';

export { cryptoRandomWords, decodeSum, encodeUpdate } from './encode.js';
export type { DiscreteGaussianSampler, EncodeOptions, RandomWords } from './encode.js';
export { distributedDpPrivacy } from './privacy.js';
export { exactDiscreteGaussian } from './discrete-gaussian.js';
export type { DistributedDpPrivacy } from './privacy.js';

export { checkSecAggCompatibility, ROBUST_AGGREGATORS, SECAGG_AGGREGATORS } from './compatibility.js';
export type { SecAggJobSpec } from './compatibility.js';
