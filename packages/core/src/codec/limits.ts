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
  /** Most entries in a safetensors `__metadata__` map (default 1,024; FLARE-TS writes at most 4). */
  readonly maxMetadataEntries?: number;
}

/**
 * The default bounds of `decodeModel`. The header is parsed on the caller's thread (the event loop, in a
 * server), so its size bounds how long one decode can block it: the worst 2 MiB header (one object of as many
 * keys as fit) parses in about a tenth of a second on a loaded 2-core VM (`npm run bench -- core`), where the
 * 16 MiB of earlier versions let one 15 MiB header of 1.1 M metadata keys block a server for 10-20 s. 2 MiB
 * holds the index of about 20,000 tensors; raise `maxHeaderBytes` for larger files you trust.
 */
export const MODEL_LIMITS = {
  maxHeaderBytes: 2 * 1024 * 1024,
  maxBytes: 4 * 1024 ** 3,
  maxTensors: 100_000,
  maxDims: 16,
  maxMetadataEntries: 1024,
} as const satisfies Required<DecodeLimits>;

/** The default bounds of `decodeFrame`: a 64 KiB header and a 64 MiB payload. */
export const FRAME_LIMITS = {
  maxHeaderBytes: 64 * 1024,
  maxBytes: 64 * 1024 * 1024,
  maxTensors: 0,
  maxDims: 0,
  maxMetadataEntries: 0,
} as const satisfies Required<DecodeLimits>;
