// @flare/filters-he: CKKS encryption filters and encrypted aggregation on node-seal.
export { DEFAULT_HE_PARAMS, HeBuilderArgs, MAX_COEFF_BITS_128, heParamsFromBuilderArgs, paramsFingerprint, resolveHeParams } from './params.js';
export type { HeParams } from './params.js';
export { generateHeKeys, loadHeContext } from './context.js';
export type { HeContext } from './context.js';
export { heEncrypt } from './encrypt.js';
export type { HeEncryptOptions } from './encrypt.js';
export { heDecrypt } from './decrypt.js';
export type { HeDecryptOptions } from './decrypt.js';
export { HeAggregator } from './aggregator.js';
export type { HeAggregatorOptions } from './aggregator.js';
export { heAddDiff } from './add-diff.js';
export { HE_META_KEY, HE_TENSOR_PREFIX, HeEnvelopeSchema, isEncryptedModel } from './envelope.js';
export { heModelStats, heWasmHeapBytes } from './stats.js';
export type { HeModelStats } from './stats.js';
export { HE_CLIENT_CONTEXT_FILE, HE_SERVER_CONTEXT_FILE, heAggregatorFromKit, loadHeContextFromKit } from './kit.js';
export { HE_BUILDER_PATH, HE_STATE_FILE, heKitBuilder } from './kit-builder.js';
export { HeDecryptArgs, HeEncryptArgs, heDecryptFactory, heEncryptFactory } from './factories.js';
export type { HeContextSource } from './factories.js';
