import { createPrivateKey } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { deriveEpochKeys, exportKeyingMaterial, hkdfSha256, macEquals, messageMac, NonceCache } from '../src/index.js';
import { sharedSecret } from '../src/x25519.js';

const range = (from: number, to: number): Uint8Array => Uint8Array.from({ length: to - from + 1 }, (_, i) => from + i);
const toHex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

describe('hkdfSha256 (RFC 5869 appendix A test vectors)', () => {
  it('RFC 5869 A.1 basic test case with SHA-256', () => {
    const okm = hkdfSha256(new Uint8Array(22).fill(0x0b), range(0x00, 0x0c), range(0xf0, 0xf9), 42);
    expect(toHex(okm)).toBe('3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865');
  });

  it('RFC 5869 A.2 longer inputs/outputs with SHA-256', () => {
    const okm = hkdfSha256(range(0x00, 0x4f), range(0x60, 0xaf), range(0xb0, 0xff), 82);
    expect(toHex(okm)).toBe(
      'b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c59045a99cac7827271cb41c65e590e09da3275600c2f09b8367793a9aca3db71cc30c58179ec3e87c14c01d5c1f3434f1d87',
    );
  });

  it('RFC 5869 A.3 zero-length salt and info with SHA-256', () => {
    const okm = hkdfSha256(new Uint8Array(22).fill(0x0b), new Uint8Array(0), new Uint8Array(0), 42);
    expect(toHex(okm)).toBe('8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8');
  });

  it('rejects lengths HKDF cannot produce (RangeError)', () => {
    expect(() => hkdfSha256(new Uint8Array(1), new Uint8Array(0), '', 0)).toThrow(RangeError);
    expect(() => hkdfSha256(new Uint8Array(1), new Uint8Array(0), '', 255 * 32 + 1)).toThrow(RangeError);
  });
});

describe('X25519 (RFC 7748 section 6.1 test vector)', () => {
  it('Alice and Bob derive the published shared secret', () => {
    const pkcs8 = (raw: string): Buffer => Buffer.concat([Buffer.from('302e020100300506032b656e04220420', 'hex'), Buffer.from(raw, 'hex')]);
    const alice = createPrivateKey({ key: pkcs8('77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a'), format: 'der', type: 'pkcs8' });
    const bobPublic = Buffer.from('de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f', 'hex').toString('base64url');
    expect(toHex(sharedSecret(alice, bobPublic))).toBe('4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742');
  });

  it('refuses a low-order public key (all-zero shared secret, RFC 7748 section 6.1) with E_AUTH_HANDSHAKE', () => {
    const alice = createPrivateKey({ key: Buffer.concat([Buffer.from('302e020100300506032b656e04220420', 'hex'), Buffer.alloc(32, 7)]), format: 'der', type: 'pkcs8' });
    expect(() => sharedSecret(alice, Buffer.alloc(32).toString('base64url'))).toThrow(expect.objectContaining({ code: 'E_AUTH_HANDSHAKE' }));
  });
});

describe('key schedule', () => {
  const shared = new Uint8Array(32).fill(1);
  const th = new Uint8Array(32).fill(2);

  it('derives five distinct 32-byte keys, changed by the transcript and by the channel binding', () => {
    const k = deriveEpochKeys(shared, th);
    const all = [k.c2s, k.s2c, k.confirmClient, k.confirmServer, k.exporter].map(toHex);
    expect(new Set(all).size).toBe(5);
    expect(toHex(deriveEpochKeys(shared, new Uint8Array(32).fill(3)).c2s)).not.toBe(toHex(k.c2s));
    expect(toHex(deriveEpochKeys(shared, th, new Uint8Array(32).fill(4)).c2s)).not.toBe(toHex(k.c2s));
    expect(toHex(deriveEpochKeys(shared, th).c2s)).toBe(toHex(k.c2s));
  });

  it('exports keying material distinct per label and per length', () => {
    const { exporter } = deriveEpochKeys(shared, th);
    fc.assert(
      fc.property(fc.string({ minLength: 1, maxLength: 40 }), fc.string({ minLength: 1, maxLength: 40 }), (a, b) => {
        fc.pre(a !== b);
        return toHex(exportKeyingMaterial(exporter, a, 32)) !== toHex(exportKeyingMaterial(exporter, b, 32));
      }),
      { seed: 42, numRuns: 200 },
    );
    expect(toHex(exportKeyingMaterial(exporter, 'x', 32))).not.toBe(toHex(exportKeyingMaterial(exporter, 'x', 64).subarray(0, 32)));
    expect(() => exportKeyingMaterial(exporter, '', 32)).toThrow(RangeError);
  });
});

describe('messageMac', () => {
  const key = new Uint8Array(32).fill(9);
  const base = { sid: 's', seq: 3, ts: 1000, epoch: 0, header: { type: 'task', round: 1 }, payloadLength: 3, payloadDigest: new Uint8Array(32) };

  it('does not depend on header key order (RFC 8785 canonical JSON)', () => {
    const a = messageMac(key, base);
    const b = messageMac(key, { ...base, header: { round: 1, type: 'task' } });
    expect(macEquals(a, b)).toBe(true);
  });

  it('changes with every covered field', () => {
    const ref = messageMac(key, base);
    const variants = [
      { ...base, sid: 't' },
      { ...base, seq: 4 },
      { ...base, ts: 1001 },
      { ...base, epoch: 1 },
      { ...base, header: { type: 'task', round: 2 } },
      { ...base, payloadLength: 4 },
      { ...base, payloadDigest: new Uint8Array(32).fill(1) },
    ];
    for (const v of variants) expect(macEquals(ref, messageMac(key, v))).toBe(false);
    expect(macEquals(ref, messageMac(new Uint8Array(32).fill(8), base))).toBe(false);
    expect(macEquals(ref, ref.subarray(0, 31))).toBe(false);
  });
});

describe('NonceCache', () => {
  it('refuses a nonce seen within its lifetime and forgets it after', () => {
    const cache = new NonceCache(1000);
    expect(cache.add('a', 0)).toBe(true);
    expect(cache.add('a', 999)).toBe(false);
    expect(cache.add('a', 1001)).toBe(true);
  });

  it('stays within its memory bound', () => {
    const cache = new NonceCache(1_000_000, 10);
    for (let i = 0; i < 100; i++) cache.add(String(i), i);
    expect(cache.size).toBe(10);
    expect(() => new NonceCache(0)).toThrow(RangeError);
  });
});
