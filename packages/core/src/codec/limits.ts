/** Bounds a decoder enforces before it allocates anything sized by the input. */
export interface DecodeLimits {
  /** Largest header JSON, in bytes (default 16 MiB; safetensors' own reader allows 100 MB). */
  readonly maxHeaderBytes?: number;
  /** Largest data section (model) or payload (frame), in bytes (default 4 GiB for models, 64 MiB for frames). */
  readonly maxBytes?: number;
  /** Most tensors in one model (default 100,000). */
  readonly maxTensors?: number;
  /** Most dimensions in one tensor shape (default 16). */
  readonly maxDims?: number;
}

export const MODEL_LIMITS = {
  maxHeaderBytes: 16 * 1024 * 1024,
  maxBytes: 4 * 1024 ** 3,
  maxTensors: 100_000,
  maxDims: 16,
} as const satisfies Required<DecodeLimits>;

export const FRAME_LIMITS = {
  maxHeaderBytes: 64 * 1024,
  maxBytes: 64 * 1024 * 1024,
  maxTensors: 0,
  maxDims: 0,
} as const satisfies Required<DecodeLimits>;
