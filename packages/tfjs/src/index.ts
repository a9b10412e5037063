// @flare/tfjs: TensorFlow.js learner for FLARE-TS: wasm or cpu backend, tfjs-node-gpu when installed.
export { selectBackend } from './backend.js';
export type { BackendChoice, BackendName, SelectBackendOptions } from './backend.js';
export { readWeights, writeWeights } from './weights.js';
export { TfjsLearner, evaluateOn } from './learner.js';
export { denseNetwork } from './network.js';
export type { DenseLayer } from './network.js';
export type { Dataset, OptimizerName, TfjsLearnerOptions } from './learner.js';
export type { DpSgdOptions, DpSgdReport, GaussianMechanism, RandomWords } from './dp-sgd.js';
