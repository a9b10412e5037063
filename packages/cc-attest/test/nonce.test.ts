import { hkdfSync } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ATTESTATION_EXPORTER_LABEL, ATTESTATION_EXPORTER_LENGTH, deriveAttestationNonce } from '../src/index.js';

const ekm = new Uint8Array(64).map((_, i) => i);

describe('deriveAttestationNonce', () => {
  it('documents the exporter label and length the runtime passes to @flare/auth', () => {
    expect(ATTESTATION_EXPORTER_LABEL).toBe('flare attestation');
    expect(ATTESTATION_EXPORTER_LENGTH).toBe(64);
  });

  it('gives 64 bytes for snp and tdx (REPORT_DATA) and 32 for gpu (SPDM nonce)', () => {
    expect(deriveAttestationNonce(ekm, { type: 'snp', attester: 'site-1' })).toHaveLength(64);
    expect(deriveAttestationNonce(ekm, { type: 'tdx', attester: 'site-1' })).toHaveLength(64);
    expect(deriveAttestationNonce(ekm, { type: 'gpu', attester: 'site-1' })).toHaveLength(32);
  });

  it('is HKDF-SHA512 (RFC 5869) with a length-prefixed info naming type, attester and purpose', () => {
    const info = Buffer.concat([Buffer.from('flare-ts attestation nonce v1'), Buffer.from([0, 3]), Buffer.from('snp'), Buffer.from([0, 6]), Buffer.from('site-1'), Buffer.from([0, 5]), Buffer.from('login')]);
    const expected = new Uint8Array(hkdfSync('sha512', ekm, new Uint8Array(0), info, 64));
    expect(deriveAttestationNonce(ekm, { type: 'snp', attester: 'site-1', purpose: 'login' })).toEqual(expected);
  });

  it('binds the session, the attester and the purpose: any change gives another nonce (property)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 64, maxLength: 64 }), fc.string({ minLength: 1, maxLength: 20 }), fc.string({ minLength: 1, maxLength: 20 }), (k, a, b) => {
        fc.pre(a !== b);
        const x = Buffer.from(deriveAttestationNonce(k, { type: 'snp', attester: a }));
        expect(x.equals(Buffer.from(deriveAttestationNonce(k, { type: 'snp', attester: b })))).toBe(false);
        expect(x.equals(Buffer.from(deriveAttestationNonce(k, { type: 'snp', attester: a, purpose: b })))).toBe(false);
        const k2 = Uint8Array.from(k);
        k2[0]! ^= 1;
        expect(x.equals(Buffer.from(deriveAttestationNonce(k2, { type: 'snp', attester: a })))).toBe(false);
      }),
      { numRuns: 100, seed: 7 },
    );
  });

  it('refuses short keying material and an empty attester name (programmer misuse)', () => {
    expect(() => deriveAttestationNonce(new Uint8Array(16), { type: 'snp', attester: 'a' })).toThrow(RangeError);
    expect(() => deriveAttestationNonce(ekm, { type: 'snp', attester: '' })).toThrow(TypeError);
  });
});
