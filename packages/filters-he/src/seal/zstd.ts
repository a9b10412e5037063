import { ZSTDDecoder } from 'zstddec';

// Received ciphertexts are decompressed here, never by SEAL: SEAL 4.1's WebAssembly build aborts or reads out of
// bounds on truncated or corrupted zstd streams (measured: a few hundred random mutations of a valid ciphertext
// were enough), which would take the module down. zstddec is the reference zstd decoder compiled to its own,
// separate WebAssembly instance; a hostile stream can only make it return an error, which we see as a length
// that differs from the one the frame must decompress to.

let decoder: ZSTDDecoder | undefined;
let ready: Promise<void> | undefined;

/** Instantiates the zstd decoder once per process. */
export function loadZstd(): Promise<void> {
  ready ??= (async () => {
    const d = new ZSTDDecoder();
    await d.init();
    decoder = d;
  })().catch((cause: unknown) => {
    ready = undefined;
    throw cause;
  });
  return ready;
}

/**
 * Decompresses one zstd frame that must produce exactly `expected` bytes; returns undefined when it does not
 * (corrupt, truncated or hostile input). {@link loadZstd} must have completed.
 */
export function inflateExact(frame: Uint8Array, expected: number): Uint8Array | undefined {
  if (decoder === undefined) throw new TypeError('zstd decoder used before loadZstd() completed');
  let out: Uint8Array;
  try {
    out = decoder.decode(frame, expected);
  } catch {
    return undefined;
  }
  return out.length === expected ? out : undefined;
}
