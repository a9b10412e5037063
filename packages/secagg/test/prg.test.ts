import { createCipheriv, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { addMask, maskWords } from '../src/prg.js';

const hex = (s: string) => new Uint8Array(Buffer.from(s, 'hex'));

describe('mask PRG (AES-256-CTR keystream as little-endian 32-bit words)', () => {
  it('NIST SP 800-38A F.5.5 CTR-AES256: the keystream is ciphertext XOR plaintext of the published blocks', () => {
    const key = hex('603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4');
    const counter = hex('f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff');
    const plaintext = hex('6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e5130c81c46a35ce411e5fbc1191a0a52eff69f2445df4f9b17ad2b417be66c3710');
    const ciphertext = hex('601ec313775789a5b7a7f504bbf3d228f443e3ca4d62b59aca84e990cacaf5c52b0930daa23de94ce87017ba2d84988ddfc9c58db67aada613c2dd08457941a6');
    const stream = ciphertext.map((c, i) => c ^ plaintext[i]!);
    const view = new DataView(stream.buffer);
    const expected = Uint32Array.from({ length: 16 }, (_, i) => view.getUint32(4 * i, true));
    expect(maskWords(key, 16, counter)).toEqual(expected);
    // Output block #1 of F.5.5 as printed: 0bdf7df1 59171633 ... read little-endian.
    expect(maskWords(key, 1, counter)[0]).toBe(0xf17ddf0b);
  });

  it('adds and subtracts masks mod 2^32 across chunk boundaries, so a mask and its negation cancel exactly', () => {
    const key = randomBytes(32);
    const n = (256 * 1024) / 4 + 777; // more than one 256 KiB chunk
    const acc = Uint32Array.from({ length: n }, (_, i) => (i * 2654435761) >>> 0);
    const before = acc.slice();
    addMask(acc, key, 1);
    expect(acc).not.toEqual(before);
    const direct = createCipheriv('aes-256-ctr', key, new Uint8Array(16)).update(new Uint8Array(n * 4));
    const words = new Uint32Array(direct.buffer, direct.byteOffset, n);
    for (const i of [0, 1, 65535, 65536, 65537, n - 1]) expect(acc[i]).toBe((before[i]! + words[i]!) >>> 0);
    addMask(acc, key, -1);
    expect(acc).toEqual(before);
  });

  it('refuses a key that is not 32 bytes', () => {
    expect(() => addMask(new Uint32Array(1), new Uint8Array(16), 1)).toThrow(RangeError);
  });
});
