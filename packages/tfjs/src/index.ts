// @flare/tfjs: TensorFlow.js learner for FLARE-TS: wasm or cpu backend, tfjs-node-gpu when installed.
export { selectBackend } from './backend.js';
export type { BackendChoice, BackendName, SelectBackendOptions } from './backend.js';
export { readWeights, writeWeights } from './weights.js';
export { TfjsLearner, evaluateOn } from './learner.js';
export { denseNetwork } from './network.js';
export type { DenseLayer } from './network.js';
export type { Dataset, OptimizerName, TfjsLearnerOptions } from './learner.js';
export type { DpSgdOptions, DpSgdReport, GaussianMechanism, RandomWords } from './dp-sgd.js';
export { loadCsv, parseCsv, DEFAULT_MAX_DATA_BYTES } from './data/csv.js';
export type { CsvData, CsvOptions } from './data/csv.js';
export { parseNpy } from './data/npy.js';
export type { NpyArray } from './data/npy.js';
export { loadArrays } from './data/arrays.js';
export type { ArrayFolderOptions } from './data/arrays.js';
export { MAX_DATA_VALUES, seededPermutation, seededRandom, selectRows, splitValidation, toDataset } from './data/tabular.js';
export type { LabelTask, TabularData } from './data/tabular.js';
