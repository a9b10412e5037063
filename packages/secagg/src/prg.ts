import { createCipheriv } from 'node:crypto';

// The mask PRG: the AES-256-CTR keystream of a 32-byte seed (NIST SP 800-38A §6.5), read as little-endian 32-bit
// words. The ring is Z_{2^bits} with bits <= 32 and 2^bits divides 2^32, so a uniform word reduced mod 2^bits is
// uniform in the ring: there is no modulo bias to remove. Masks are added in Z_{2^32} (Uint32Array arithmetic
// wraps) and reduced to the ring once, at the end, which is the same sum mod 2^bits. Internal.

// 256 KiB of keystream per call into OpenSSL: larger chunks measured no faster here and cost more memory.
const CHUNK_BYTES = 256 * 1024;
const ZEROS = new Uint8Array(CHUNK_BYTES);
const ZERO_IV = new Uint8Array(16);
const LITTLE_ENDIAN = new Uint8Array(Uint32Array.of(1).buffer)[0] === 1;

/**
 * acc[i] += sign · w_i (mod 2^32) for the first acc.length keystream words w_i of AES-256-CTR(key, iv).
 * Each (key, iv) expands one mask: the protocol derives a fresh key per mask and keeps the IV at zero.
 */
export function addMask(acc: Uint32Array, key: Uint8Array, sign: 1 | -1, iv: Uint8Array = ZERO_IV): void {
  if (key.length !== 32) throw new RangeError(`a mask key is 32 bytes, got ${key.length}`);
  const cipher = createCipheriv('aes-256-ctr', key, iv);
  const total = acc.length;
  let at = 0;
  while (at < total) {
    const words = Math.min(CHUNK_BYTES >> 2, total - at);
    const stream = cipher.update(words === CHUNK_BYTES >> 2 ? ZEROS : ZEROS.subarray(0, words * 4));
    const w = wordsOf(stream);
    // Two loops rather than a multiply by sign: each stays a plain add or subtract that V8 keeps in int32/uint32.
    if (sign === 1) {
      for (let i = 0; i < words; i++) acc[at + i] = acc[at + i]! + w[i]!;
    } else {
      for (let i = 0; i < words; i++) acc[at + i] = acc[at + i]! - w[i]!;
    }
    at += words;
  }
}

/** The keystream words for `count` words (tests: the SP 800-38A vectors). */
export function maskWords(key: Uint8Array, count: number, iv: Uint8Array = ZERO_IV): Uint32Array {
  const out = new Uint32Array(count);
  addMask(out, key, 1, iv);
  return out;
}

function wordsOf(bytes: Buffer): Uint32Array {
  const n = bytes.length >> 2;
  if (LITTLE_ENDIAN && bytes.byteOffset % 4 === 0) return new Uint32Array(bytes.buffer, bytes.byteOffset, n);
  const out = new Uint32Array(n);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  for (let i = 0; i < n; i++) out[i] = view.getUint32(4 * i, true);
  return out;
}
