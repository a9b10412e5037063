// The exact accumulators of FedAvg (internal): per tensor, the pair (hi, lo) of float64 arrays that
// exact-sum.ts's TwoSum updates, kept in one WebAssembly memory and updated by SIMD kernels
// (wasm/exact-sum.wat, two float64 lanes per instruction: about 2x a plain JavaScript axpy loop here, where
// the scalar JavaScript TwoSum runs at 0.6-0.7x of it; `npm run bench -- aggregator`). The memory is reused
// round after round: after the first round, accumulating allocates nothing. When WebAssembly is unavailable,
// turned off (FLARE_AGGREGATOR_WASM=0), or its memory cannot grow (wasm32 stops at 4 GiB), a slot falls back
// to JavaScript arrays and exact-sum.ts's scalar kernels: the same bits either way.

import type { FloatArray } from '@flare/core';
import { addScaled } from './exact-sum.js';
import { EXACT_SUM_WASM } from './wasm/exact-sum-wasm.js';

// The few WebAssembly types used here (the compiler's lib for this package has no DOM or WebAssembly types).
interface WasmMemory {
  readonly buffer: ArrayBuffer;
  grow(pages: number): number;
}
interface Kernels {
  readonly memory: WasmMemory;
  addF32(hi: number, lo: number, x: number, n: number, w: number): number;
  addF64(hi: number, lo: number, x: number, n: number, w: number): number;
}
declare const WebAssembly: {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports?: object) => { readonly exports: unknown };
};

const PAGE = 65536;
let compiled: object | null | undefined;

/** The compiled kernels module, once per process; null when WebAssembly (with SIMD) is unavailable or turned off. */
function kernelsModule(): object | null {
  if (compiled !== undefined) return compiled;
  try {
    compiled = process.env['FLARE_AGGREGATOR_WASM'] === '0' ? null : new WebAssembly.Module(Buffer.from(EXACT_SUM_WASM, 'base64'));
  } catch {
    compiled = null;
  }
  return compiled;
}

/** One tensor's accumulator: where its hi and lo halves live. */
export type AccumulatorSlot =
  | { readonly length: number; readonly at: number; readonly hi?: undefined; readonly lo?: undefined }
  | { readonly length: number; readonly at?: undefined; readonly hi: Float64Array; readonly lo: Float64Array };

const align = (n: number): number => (n + 15) & ~15;

/**
 * Exact accumulators for one aggregator. `slot(n)` reserves a zeroed pair for n values; `add` adds a weighted
 * contribution; `sums` reads the halves; `reset()` frees every slot for the next round, keeping the memory.
 */
export class ExactAccumulators {
  readonly #kernels: Kernels | undefined;
  /** Bytes of wasm memory in use by slots; the staging area for a contribution's values starts after them. */
  #used = 0;
  #jsBytes = 0;

  constructor() {
    const module = kernelsModule();
    this.#kernels = module === null ? undefined : (new WebAssembly.Instance(module).exports as Kernels);
  }

  /** Whether the SIMD kernels are in use (for reports). */
  get simd(): boolean {
    return this.#kernels !== undefined;
  }

  /** Bytes held for accumulators: the wasm memory (it only grows) plus fallback arrays. */
  get byteLength(): number {
    return (this.#kernels?.memory.buffer.byteLength ?? 0) + this.#jsBytes;
  }

  /** Makes room for `bytes` of wasm memory in total; false when the memory cannot grow that far. */
  #reserve(bytes: number): boolean {
    const memory = this.#kernels!.memory;
    const missing = bytes - memory.buffer.byteLength;
    if (missing <= 0) return true;
    try {
      memory.grow(Math.ceil(missing / PAGE));
      return true;
    } catch {
      return false;
    }
  }

  /** A zeroed accumulator for `length` values. */
  slot(length: number): AccumulatorSlot {
    const at = this.#used;
    const end = at + align(16 * length);
    if (this.#kernels !== undefined && this.#reserve(end)) {
      new Uint8Array(this.#kernels.memory.buffer, at, 16 * length).fill(0);
      this.#used = end;
      return { length, at };
    }
    this.#jsBytes += 16 * length;
    return { length, hi: new Float64Array(length), lo: new Float64Array(length) };
  }

  /**
   * Adds `w * x[i]` into the slot for i < end; returns -1, or the index from which nothing was written
   * because a weighted value or sum was not finite (everything before was: roll back with -w and that end).
   */
  add(slot: AccumulatorSlot, x: FloatArray, w: number, end: number = x.length): number {
    const kernels = this.#kernels;
    if (slot.at === undefined || kernels === undefined) return addScaled(slot.hi!, slot.lo!, x, w, end);
    const staging = this.#used;
    if (!this.#reserve(staging + x.BYTES_PER_ELEMENT * end)) {
      // No room to stage the values: read the slot's halves in place with the scalar kernels.
      const { hi, lo } = this.sums(slot);
      return addScaled(hi, lo, x, w, end);
    }
    const buffer = kernels.memory.buffer;
    const at = slot.at;
    const lo = at + 8 * slot.length;
    if (x instanceof Float32Array) {
      new Float32Array(buffer, staging, end).set(end === x.length ? x : x.subarray(0, end));
      return kernels.addF32(at, lo, staging, end, w);
    }
    new Float64Array(buffer, staging, end).set(end === x.length ? x : x.subarray(0, end));
    return kernels.addF64(at, lo, staging, end, w);
  }

  /** The slot's hi and lo halves (views of the wasm memory: valid until the next `slot` or `add`). */
  sums(slot: AccumulatorSlot): { readonly hi: Float64Array; readonly lo: Float64Array } {
    if (slot.at === undefined) return { hi: slot.hi, lo: slot.lo };
    const buffer = this.#kernels!.memory.buffer;
    return { hi: new Float64Array(buffer, slot.at, slot.length), lo: new Float64Array(buffer, slot.at + 8 * slot.length, slot.length) };
  }

  /** A mark to {@link ExactAccumulators.release} to: slots reserved after it can be given back. */
  mark(): number {
    return this.#used;
  }

  /** Gives back the wasm slots reserved since `mark` (a refused contribution's fresh slots). */
  release(mark: number): void {
    if (mark <= this.#used) this.#used = mark;
  }

  /** Frees every slot (their values become meaningless); the memory is kept for the next round. */
  reset(): void {
    this.#used = 0;
    this.#jsBytes = 0;
  }
}
