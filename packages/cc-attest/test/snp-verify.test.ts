import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { AttestError } from '@flare/core';
import { verifySnpEvidence } from '../src/index.js';
import { synthesizeSnpEvidence, type TestAuthority } from '../src/testing/index.js';
import { derBitString as bits, derContext as ctx, derInteger as int, derOidEncode as oid, derSequence as seq, derTimeEncode as time } from '@flare/core';
import { name } from '../src/synthetic/certs.js';

const concat = (...parts: Uint8Array[]): Uint8Array => new Uint8Array(Buffer.concat(parts));
import { sign, constants } from 'node:crypto';
import { AT, authority, failures, nonce64 } from './helpers.js';

let auth: TestAuthority;
beforeAll(() => {
  auth = authority();
});

const crl = (serials: string[], signer = auth.amd.Milan.ark, thisUpdate = new Date('2029-01-01Z'), nextUpdate = new Date('2031-01-01Z')) => {
  const hash = seq(oid('2.16.840.1.101.3.4.2.2'), new Uint8Array([5, 0]));
  const alg = seq(oid('1.2.840.113549.1.1.10'), seq(ctx(0, hash), ctx(1, seq(oid('1.2.840.113549.1.1.8'), hash)), ctx(2, int(48)), ctx(3, int(1))));
  const revoked = serials.map((s) => seq(int(Buffer.from(s, 'hex')), time(thisUpdate)));
  const tbs = seq(int(1), alg, name(signer.subject), time(thisUpdate), time(nextUpdate), ...(revoked.length ? [seq(...revoked)] : []));
  const sig = sign('sha384', tbs, { key: signer.key.privateKey, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 48 });
  return seq(tbs, alg, bits(new Uint8Array(sig)));
};


const verify = (e: { evidence: Uint8Array; certificates: string[] }, extra: Partial<Parameters<typeof verifySnpEvidence>[0]> = {}) =>
  verifySnpEvidence({ evidence: e.evidence, certificates: e.certificates, at: AT, trust: auth.trust, ...extra });

describe('verifySnpEvidence: synthetic evidence that verifies', () => {
  it.each([
    ['Milan', 2],
    ['Milan', 3],
    ['Genoa', 3],
    ['Genoa', 5],
    ['Turin', 5],
  ] as const)('%s report version %i with its VCEK', async (product, version) => {
    const e = synthesizeSnpEvidence(auth, { product, version, reportData: nonce64() });
    const r = await verify(e, { nonce: nonce64() });
    expect(failures(r)).toEqual([]);
    expect(r.ok).toBe(true);
    expect(r.claims.product).toBe(product);
    expect(r.chain.map((c) => c.role)).toEqual(['vcek', 'ask', 'ark']);
    expect(r.trust).toBe('test');
  });

  it('a VLEK report chains through the ASVK and skips the chip id', async () => {
    const r = await verify(synthesizeSnpEvidence(auth, { signingKey: 'vlek' }));
    expect(r.ok).toBe(true);
    expect(r.chain.map((c) => c.role)).toEqual(['vlek', 'asvk', 'ark']);
    expect(r.checks.find((c) => c.id === 'snp.chip-id')?.status).toBe('skip');
  });

  it('Turin: the 8-byte hwID matches the first 8 bytes of CHIP_ID, and FMC is compared', async () => {
    const e = synthesizeSnpEvidence(auth, { product: 'Turin', version: 5, tcb: { fmc: 1, bootloader: 1, tee: 0, snp: 2, microcode: 71 } });
    const r = await verify(e);
    expect(r.ok).toBe(true);
    expect(r.claims.reportedTcb).toMatchObject({ fmc: 1, bootloader: 1, snp: 2, microcode: 71 });
    const bad = synthesizeSnpEvidence(auth, { product: 'Turin', version: 5, tcb: { fmc: 1, bootloader: 1, tee: 0, snp: 2, microcode: 71 }, certTcb: { fmc: 0, bootloader: 1, tee: 0, snp: 2, microcode: 71 } });
    expect(failures(await verify(bad))).toEqual(['snp.tcb:E_ATTEST_TCB_MISMATCH']);
  });

  it('accepts a hwID wrapped in an OCTET STRING (go-sev-guest and snpguest accept both encodings)', async () => {
    const chip = new Uint8Array(64).fill(0x42);
    const wrapped = concat(new Uint8Array([0x04, 0x40]), chip);
    const r = await verify(synthesizeSnpEvidence(auth, { chipId: chip, certHwId: wrapped }));
    expect(r.ok).toBe(true);
    expect(r.checks.find((c) => c.id === 'snp.chip-id')?.detail).toMatch(/octet-string/);
  });

  it('compares the certificate with REPORTED_TCB, not CURRENT_TCB (trustee test-report pitfall)', async () => {
    const r = await verify(synthesizeSnpEvidence(auth, { currentTcb: { bootloader: 3, tee: 0, snp: 8, microcode: 206 } }));
    expect(r.ok).toBe(true);
  });

  it('skips the chip-id check when MASK_CHIP_KEY is set', async () => {
    const r = await verify(synthesizeSnpEvidence(auth, { maskChipKey: true }));
    expect(r.ok).toBe(true);
    expect(r.checks.find((c) => c.id === 'snp.chip-id')?.status).toBe('skip');
  });
});

describe('verifySnpEvidence: each check failing on its own', () => {
  it('refuses evidence under the vendor roots when it chains to another ARK (E_ATTEST_CHAIN)', async () => {
    const e = synthesizeSnpEvidence(auth);
    const r = await verifySnpEvidence({ evidence: e.evidence, certificates: e.certificates, at: AT });
    expect(failures(r)).toEqual(['snp.chain:E_ATTEST_CHAIN']);
  });

  it('refuses a supplied ARK that is not the pinned one (E_ATTEST_CHAIN)', async () => {
    const e = synthesizeSnpEvidence(auth);
    const r = await verify({ ...e, certificates: [...e.certificates, auth.amd.Genoa.ark.pem] });
    expect(failures(r)).toEqual(['snp.chain:E_ATTEST_CHAIN']);
    const other = await verify({ ...e, certificates: [...e.certificates] }, { trust: { ...auth.trust, amdArk: { ...auth.trust.amdArk, Milan: auth.amd.Genoa.ark.pem } } });
    expect(failures(other)).toContain('snp.chain:E_ATTEST_CHAIN');
  });

  it('refuses an expired VCEK (E_ATTEST_CERT_EXPIRED)', async () => {
    const r = await verify(synthesizeSnpEvidence(auth, { certNotAfter: new Date('2029-01-01T00:00:00Z') }));
    expect(failures(r)).toEqual(['snp.chain:E_ATTEST_CERT_EXPIRED']);
  });

  it('refuses a report whose signature is not by the VCEK (E_ATTEST_SIGNATURE)', async () => {
    expect(failures(await verify(synthesizeSnpEvidence(auth, { wrongSigner: true })))).toEqual(['snp.report-signature:E_ATTEST_SIGNATURE']);
  });

  it('refuses a VCEK certified for another TCB (E_ATTEST_TCB_MISMATCH)', async () => {
    const r = await verify(synthesizeSnpEvidence(auth, { certTcb: { bootloader: 3, tee: 0, snp: 8, microcode: 114 } }));
    expect(failures(r)).toEqual(['snp.tcb:E_ATTEST_TCB_MISMATCH']);
  });

  it('refuses a REPORTED_TCB above CURRENT_TCB (E_ATTEST_TCB_MISMATCH)', async () => {
    const r = await verify(synthesizeSnpEvidence(auth, { currentTcb: { bootloader: 3, tee: 0, snp: 7, microcode: 115 } }));
    expect(failures(r)).toEqual(['snp.tcb-current:E_ATTEST_TCB_MISMATCH']);
  });

  it('refuses a VCEK of another chip (E_ATTEST_CHIP_ID)', async () => {
    const r = await verify(synthesizeSnpEvidence(auth, { certHwId: new Uint8Array(64).fill(1) }));
    expect(failures(r)).toEqual(['snp.chip-id:E_ATTEST_CHIP_ID']);
  });

  it('refuses a report that declares VLEK but is verified by a VCEK (E_ATTEST_SIGNING_KEY)', async () => {
    const r = await verify(synthesizeSnpEvidence(auth, { declaredSigningKey: 1 }));
    expect(failures(r)).toEqual(['snp.signing-key:E_ATTEST_SIGNING_KEY']);
  });

  it('refuses a report whose CPUID product differs from the VCEK product (E_ATTEST_PRODUCT)', async () => {
    const r = await verify(synthesizeSnpEvidence(auth, { product: 'Genoa', certProductName: 'Milan-B0' }));
    expect(failures(r)).toContain('snp.product:E_ATTEST_PRODUCT');
    const expected = await verify(synthesizeSnpEvidence(auth), { product: 'Genoa' });
    expect(failures(expected)).toContain('snp.product:E_ATTEST_PRODUCT');
  });

  it('refuses another machine stepping than expected (E_ATTEST_PRODUCT)', async () => {
    const e = synthesizeSnpEvidence(auth, { version: 3 });
    expect((await verify(e, { stepping: 1 })).ok).toBe(true);
    expect(failures(await verify(e, { stepping: 2 }))).toEqual(['snp.product:E_ATTEST_PRODUCT']);
  });

  it('refuses REPORT_DATA without the session nonce (E_ATTEST_NONCE)', async () => {
    const r = await verify(synthesizeSnpEvidence(auth, { reportData: nonce64(1) }), { nonce: nonce64(2) });
    expect(failures(r)).toEqual(['snp.nonce:E_ATTEST_NONCE']);
    const prefix = await verify(synthesizeSnpEvidence(auth, { reportData: concat(new Uint8Array(32).fill(3), new Uint8Array(32)) }), { nonce: new Uint8Array(32).fill(3) });
    expect(prefix.ok).toBe(true);
  });

  it('reports a failed KDS fetch as a check (E_ATTEST_FETCH)', async () => {
    const e = synthesizeSnpEvidence(auth);
    const r = await verifySnpEvidence({ evidence: e.evidence, at: AT, trust: auth.trust, fetcher: { get: async () => Promise.reject(new AttestError('E_ATTEST_FETCH', 'offline')) } });
    expect(failures(r)[0]).toBe('snp.fetch:E_ATTEST_FETCH');
  });

  it('fails without a VCEK and without network access (E_ATTEST_FETCH)', async () => {
    const e = synthesizeSnpEvidence(auth);
    const r = await verifySnpEvidence({ evidence: e.evidence, at: AT, trust: auth.trust });
    expect(failures(r)[0]).toBe('snp.key-certificate:E_ATTEST_FETCH');
  });

  it('fetches the VCEK from KDS only through a supplied fetcher, with the KDS URL of the chip and TCB', async () => {
    const e = synthesizeSnpEvidence(auth, { product: 'Turin', version: 5 });
    const urls: string[] = [];
    const der = Buffer.from(e.certificates[0]!.replace(/-----[A-Z ]+-----|\s/g, ''), 'base64');
    const get = async (u: string) => (urls.push(u), { body: u.endsWith('/crl') ? crl([], auth.amd.Turin.ark) : new Uint8Array(der), headers: {} });
    const r = await verifySnpEvidence({ evidence: e.evidence, at: AT, trust: auth.trust, fetcher: { get } });
    expect(failures(r)).toEqual([]);
    expect(r.checks.find((c) => c.id === 'snp.crl')?.status).toBe('pass');
    expect(urls[1]).toBe('https://kdsintf.amd.com/vcek/v1/Turin/crl');
    expect(urls[0]).toMatch(/^https:\/\/kdsintf\.amd\.com\/vcek\/v1\/Turin\/[0-9a-f]{16}\?fmcSPL=0&blSPL=3&teeSPL=0&snpSPL=8&ucodeSPL=115$/);
  });
});

describe('verifySnpEvidence: CRL', () => {
  it('passes when the ARK-signed CRL lists neither the ASK nor the VCEK', async () => {
    const r = await verify(synthesizeSnpEvidence(auth), { crl: crl(['7777']) });
    expect(r.checks.find((c) => c.id === 'snp.crl')?.status).toBe('pass');
  });

  it('refuses a revoked VCEK (E_ATTEST_REVOKED)', async () => {
    const e = synthesizeSnpEvidence(auth);
    const first = await verify(e);
    const serial = first.chain[0]!.serial;
    expect(failures(await verify(e, { crl: crl([serial]) }))).toEqual(['snp.crl:E_ATTEST_REVOKED']);
  });

  it('refuses a CRL not signed by the ARK (E_ATTEST_CRL) and a stale CRL (E_ATTEST_CERT_EXPIRED)', async () => {
    const e = synthesizeSnpEvidence(auth);
    expect(failures(await verify(e, { crl: crl([], auth.amd.Genoa.ark) }))).toEqual(['snp.crl:E_ATTEST_CRL']);
    expect(failures(await verify(e, { crl: crl([], undefined, new Date('2028-01-01Z'), new Date('2029-01-01Z')) }))).toEqual(['snp.crl:E_ATTEST_CERT_EXPIRED']);
    expect(failures(await verify(e, { crl: new Uint8Array([1, 2, 3]) }))).toEqual(['snp.crl:E_ATTEST_CRL']);
  });
});

describe('verifySnpEvidence: tampering', () => {
  it('every single-byte change in the signed range 0x000-0x29F fails verification (property)', async () => {
    const e = synthesizeSnpEvidence(auth, { reportData: nonce64() });
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 0, max: 0x29f }), fc.integer({ min: 1, max: 255 }), async (offset, mask) => {
        const bytes = Uint8Array.from(e.evidence);
        bytes[offset]! ^= mask;
        let ok: boolean;
        try {
          ok = (await verify({ ...e, evidence: bytes })).ok;
        } catch {
          ok = false; // refused while parsing (reserved bits, version)
        }
        expect(ok).toBe(false);
      }),
      { numRuns: 150, seed: 42 },
    );
  });

  it('a forged report hash does not match the signed bytes (sanity of the test itself)', () => {
    const e = synthesizeSnpEvidence(auth);
    expect(createHash('sha384').update(e.evidence.subarray(0, 0x2a0)).digest('hex')).toHaveLength(96);
  });
});
