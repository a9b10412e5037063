import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { agree, open, seal, x25519FromScalar, x25519PublicKey } from '../src/crypto.js';

const hex = (s: string) => new Uint8Array(Buffer.from(s, 'hex'));
const toHex = (b: Uint8Array) => Buffer.from(b).toString('hex');

describe('key agreement and share encryption', () => {
  // RFC 7748 §6.1.
  const alice = hex('77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a');
  const bob = hex('5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb');

  it('RFC 7748 §6.1 X25519: public keys and the shared secret from raw scalars, both directions', () => {
    const a = x25519FromScalar(alice);
    const b = x25519FromScalar(bob);
    expect(toHex(a.publicKey)).toBe('8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a');
    expect(toHex(b.publicKey)).toBe('de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f');
    const shared = '4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742';
    expect(toHex(agree(a.privateKey, x25519PublicKey(b.publicKey)!)!)).toBe(shared);
    expect(toHex(agree(b.privateKey, x25519PublicKey(a.publicKey)!)!)).toBe(shared);
  });

  it('refuses an agreement with a low-order point (all-zero shared secret, RFC 7748 §6.1)', () => {
    const a = x25519FromScalar(alice);
    for (const point of [new Uint8Array(32), Uint8Array.of(1, ...new Uint8Array(31))]) {
      const key = x25519PublicKey(point);
      expect(key === undefined || agree(a.privateKey, key) === undefined).toBe(true);
    }
    expect(x25519PublicKey(new Uint8Array(31))).toBeUndefined();
  });

  it('AES-256-GCM shares open only with the same key and associated data, whole and unaltered', () => {
    const key = randomBytes(32);
    const aad = Uint8Array.of(1, 2, 3);
    const plaintext = randomBytes(64);
    const sealed = seal(key, plaintext, aad);
    expect(sealed.length).toBe(12 + 64 + 16);
    expect(open(key, sealed, aad, 64)).toEqual(new Uint8Array(plaintext));
    expect(open(key, sealed, Uint8Array.of(1, 2, 4), 64)).toBeUndefined();
    expect(open(randomBytes(32), sealed, aad, 64)).toBeUndefined();
    const flipped = sealed.slice();
    flipped[20]! ^= 1;
    expect(open(key, flipped, aad, 64)).toBeUndefined();
    expect(open(key, sealed.subarray(0, sealed.length - 1), aad, 64)).toBeUndefined();
  });
});
