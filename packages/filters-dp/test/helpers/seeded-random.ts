import { createCipheriv, createHash } from 'node:crypto';
import type { DpRandomSource } from '../../src/random-source.js';

/**
 * A deterministic DpRandomSource for tests only: the AES-256-CTR keystream under a key derived from `seed`.
 * Fixed seeds make the statistical tests reproducible; the filters never use this outside tests.
 */
export function seededRandom(seed: string): DpRandomSource {
  const key = createHash('sha256').update(`flare-ts test seed ${seed}`).digest();
  const cipher = createCipheriv('aes-256-ctr', key, Buffer.alloc(16));
  return {
    fill(words: Uint32Array): void {
      const bytes = new Uint8Array(words.buffer, words.byteOffset, words.byteLength);
      const stream = cipher.update(new Uint8Array(bytes.length));
      bytes.set(stream);
    },
  };
}

/** A DpRandomSource that replays fixed 32-bit words, then `filler` forever: for exact-path tests. */
export function replayRandom(words: readonly number[], filler = 0): DpRandomSource {
  let i = 0;
  return {
    fill(out: Uint32Array): void {
      for (let k = 0; k < out.length; k++) out[k] = i < words.length ? words[i++]! : filler;
    },
  };
}
