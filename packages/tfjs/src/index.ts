// @flare/tfjs: TensorFlow.js learner for FLARE-TS: wasm or cpu backend, tfjs-node-gpu when installed.
// Nothing is exported until its issue lands: no stubs that pretend.
export {};
