import { createRequire } from 'node:module';
import type { SEALLibrary } from 'node-seal/implementation/seal.js';

// The one place that knows how node-seal is loaded. node-seal 6.0.3 is the last version whose WebAssembly
// loads on Node 20 (7 needs the exception-handling proposal of Node >= 24); moving to 7 changes this file and
// engine.ts, nothing else. We load the "throws" Node build explicitly (it refuses transparent ciphertexts,
// i.e. results that would carry no encryption at all) through its CommonJS entry, which works on every Node 20.

type SealLoader = () => Promise<SEALLibrary>;

// The parts of the WebAssembly global we touch (our compiler lib is ES2023 without DOM, which declares it).
interface WasmMemory {
  readonly buffer: ArrayBuffer;
}
interface WasmGlobal {
  instantiate: (...args: unknown[]) => Promise<unknown>;
  readonly Instance: abstract new (...args: never[]) => { readonly exports: Record<string, unknown> };
  readonly Memory: abstract new (...args: never[]) => WasmMemory;
}

let loading: Promise<SEALLibrary> | undefined;
let wasmMemory: WasmMemory | undefined;

/**
 * Loads the SEAL WebAssembly module once per process and returns the shared library object.
 *
 * While the module instantiates, `WebAssembly.instantiate` is wrapped to note the instance's memory, so that
 * {@link sealHeapBytes} can report the WASM heap (the soak test and the benchmark watch it stay flat). The
 * wrapper passes every call through unchanged and is removed as soon as the module is ready.
 */
export function loadSeal(): Promise<SEALLibrary> {
  loading ??= instantiate();
  return loading;
}

async function instantiate(): Promise<SEALLibrary> {
  const require = createRequire(import.meta.url);
  const load = require('node-seal/throws_wasm_node_umd.js') as SealLoader;
  const wasm = (globalThis as unknown as { WebAssembly: WasmGlobal }).WebAssembly;
  const original = wasm.instantiate;
  const seen: WasmMemory[] = [];
  const capture = (result: unknown): void => {
    const instance = result instanceof wasm.Instance ? result : (result as { instance?: unknown } | undefined)?.instance;
    if (!(instance instanceof wasm.Instance)) return;
    for (const value of Object.values(instance.exports)) if (value instanceof wasm.Memory) seen.push(value);
  };
  const wrapped = async function (this: unknown, ...args: unknown[]): Promise<unknown> {
    const result: unknown = await Reflect.apply(original, this, args);
    capture(result);
    return result;
  };
  wasm.instantiate = wrapped;
  try {
    const lib = await load();
    // Only trust the capture when exactly one module instantiated during our load.
    if (seen.length === 1) wasmMemory = seen[0];
    return lib;
  } catch (cause) {
    loading = undefined;
    throw cause;
  } finally {
    if (wasm.instantiate === wrapped) wasm.instantiate = original;
  }
}

/** Bytes of the SEAL module's WebAssembly memory (it only grows), or undefined before loading. */
export function sealHeapBytes(): number | undefined {
  return wasmMemory?.buffer.byteLength;
}
