import type { FLModel } from '@flare/core';
import { isEncryptedModel, openEncryptedModel } from './envelope.js';
import { sealHeapBytes } from './seal/library.js';

/** Size figures of an encrypted model, or undefined for a plain one (for overhead reports). */
export interface HeModelStats {
  readonly ciphertexts: number;
  /** Bytes of all ciphertext tensors. */
  readonly ciphertextBytes: number;
  /** Values packed into the ciphertexts. */
  readonly encryptedValues: number;
  /** Tensors left in plaintext. */
  readonly plainTensors: number;
}

/**
 * Counts ciphertexts, their bytes and the values they carry (no validation beyond the envelope's shape).
 * @example
 * ```ts
 * const s = heModelStats(update); if (s) console.log(`${s.ciphertextBytes / s.encryptedValues} bytes per value`);
 * ```
 */
export function heModelStats(m: FLModel): HeModelStats | undefined {
  if (!isEncryptedModel(m)) return undefined;
  const { envelope, ciphertexts, plain } = openEncryptedModel(m);
  return {
    ciphertexts: ciphertexts.length,
    ciphertextBytes: ciphertexts.reduce((a, c) => a + c.length, 0),
    encryptedValues: envelope.length,
    plainTensors: plain.size,
  };
}

/**
 * Bytes of the SEAL WebAssembly heap (memory only grows; a flat figure across rounds means no leak), or
 * undefined before SEAL is loaded or when the heap could not be observed.
 */
export function heWasmHeapBytes(): number | undefined {
  return sealHeapBytes();
}
