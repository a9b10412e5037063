import { createHash, verify, X509Certificate } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { parseAttestationPolicy, parseTdxTcbInfo, parseTdxQeIdentity, verifyEvidence, verifyTdxEvidence, type TdxCollateral } from '../src/index.js';
import { bin, failures, text } from './vectors.js';

// Every real TDX quote in ../shared/vectors/attest/tdx, with the PCS collateral that ships with them.

const POSITIVES = [
  ['tdx/go-tdx-guest/tdx_prod_quote_SPR_E4.bin', '2023-07-01T01:00:00Z', 4],
  ['tdx/go-tdx-guest/quote_v5_sample.bin', '2026-02-03T01:00:00Z', 5],
  ['tdx/go-tdx-guest/gcp-cos-113-tdx-quote.bin', '2025-10-28T00:00:00Z', 4],
  ['tdx/project-oak/tdx_oc.quote.bin', '2025-10-28T00:00:00Z', 4],
  ['tdx/trustee/tdx_quote_4.bin', '2025-10-28T00:00:00Z', 4],
  ['tdx/trustee/tdx_quote_5.bin', '2025-10-28T00:00:00Z', 5],
  ['tdx/trustee/tdx_quote_6.bin', '2025-10-28T00:00:00Z', 4],
  ['tdx/trustee/az-tdx-vtpm-td-quote.bin', '2025-10-28T00:00:00Z', 4],
] as const;

const G = 'tdx/go-tdx-guest/';
const sprCollateral = (): TdxCollateral => ({
  tcbInfo: text(`${G}sample_tcbInfo_response.json`),
  qeIdentity: text(`${G}sample_qeIdentity_response.json`),
  tcbInfoIssuerChain: text(`${G}tcbInfoIssuerChain.pem`),
  pckCrl: bin(`${G}pckcrl.der`),
  rootCrl: bin(`${G}rootcrl.der`),
});

describe('TDX positives: PCK chain to the pinned Intel SGX Root CA, QE report, QE binding, quote signature', () => {
  it.each(POSITIVES.map((p) => [p[0], p] as const))('%s', async (_n, [file, at, version]) => {
    const r = await verifyTdxEvidence({ evidence: bin(file), at: new Date(at) });
    expect(failures(r)).toEqual([]);
    expect(r.claims.version).toBe(version);
    expect(r.trust).toBe('vendor');
  });
});

describe('TDX decoded fields match the sources', () => {
  it('trustee tdx_quote_4 matches parse_tdx_claims_expected.json field by field', async () => {
    const expected = JSON.parse(text('tdx/trustee/tdx_quote_4.parse_tdx_claims_expected.json')) as { quote: { body: Record<string, string>; header: Record<string, string> } };
    const c = (await verifyTdxEvidence({ evidence: bin('tdx/trustee/tdx_quote_4.bin'), at: new Date('2025-10-28Z') })).claims;
    const b = expected.quote.body;
    expect(c.mrTd).toBe(b['mr_td']);
    expect(c.mrSeam).toBe(b['mr_seam']);
    expect(c.mrSignerSeam).toBe(b['mrsigner_seam']);
    expect(c.mrConfigId).toBe(b['mr_config_id']);
    expect(c.mrOwner).toBe(b['mr_owner']);
    expect(c.mrOwnerConfig).toBe(b['mr_owner_config']);
    expect(c.rtmrs).toEqual([b['rtmr_0'], b['rtmr_1'], b['rtmr_2'], b['rtmr_3']]);
    expect(c.reportData).toBe(b['report_data']);
    expect(c.teeTcbSvn).toBe(b['tcb_svn']);
    expect(c.seamAttributes).toBe(b['seam_attributes']);
    expect(c.tdAttributes).toBe(b['td_attributes']);
    expect(c.xfam).toBe(b['xfam']);
    expect(c.debug).toBe(true); // td_attributes byte 0 = 0x01
  });

  it('go-tdx-guest: FMSPCs and QE ISVSVNs from the README', async () => {
    const spr = (await verifyTdxEvidence({ evidence: bin(`${G}tdx_prod_quote_SPR_E4.bin`), at: new Date('2023-07-01T01:00:00Z') })).claims;
    expect(spr.pck?.fmspc).toBe('50806f000000');
    expect(spr.qe.isvSvn).toBe(4);
    expect(spr.reportData).toBe('6c62dec1b8191749a31dab490be532a35944dea47caef1f980863993d9899545eb7406a38d1eed313b987a467dacead6f0c87a6d766c66f6f29f8acb281f1113');
    const v5 = (await verifyTdxEvidence({ evidence: bin(`${G}quote_v5_sample.bin`), at: new Date('2026-02-03T01:00:00Z') })).claims;
    expect(v5.bodyType).toBe('TDX 1.5');
    expect(v5.pck?.fmspc).toBe('90c06f000000');
    expect(v5.mrServiceTd).toBe('00'.repeat(48));
  });

  it('padded buffers: the GCP quote uses 4935 of 8000 bytes, tdx_quote_6 4936 of 5006', async () => {
    expect((await verifyTdxEvidence({ evidence: bin(`${G}gcp-cos-113-tdx-quote.bin`), at: new Date('2025-10-28Z') })).claims.quoteLength).toBe(4935);
    expect((await verifyTdxEvidence({ evidence: bin('tdx/trustee/tdx_quote_6.bin'), at: new Date('2025-10-28Z') })).claims.quoteLength).toBe(4936);
  });

  it('Azure TDX: SHA-256 of the HCL runtime JSON equals the quote report_data[0:32]', async () => {
    const hcl = bin('tdx/trustee/az-tdx-vtpm-hcl-report.bin');
    const size = Buffer.from(hcl).readUInt32LE(0x4c0 + 16);
    const digest = createHash('sha256').update(hcl.subarray(0x4c0 + 20, 0x4c0 + 20 + size)).digest('hex');
    expect(digest).toBe('9734504f161d104c74e3165c15f779b06a9bb40dfa71937817d7eee68e593839');
    const r = await verifyTdxEvidence({ evidence: bin('tdx/trustee/az-tdx-vtpm-td-quote.bin'), at: new Date('2025-10-28Z'), nonce: Buffer.from(digest, 'hex') });
    expect(r.checks.find((c) => c.id === 'tdx.nonce')?.status).toBe('pass');
  });
});

describe('TDX collateral', () => {
  it('SPR E4 + go-tdx-guest collateral at 2023-07-01: signatures, CRLs and QE identity pass; no TCB level matches (the README negative)', async () => {
    const r = await verifyTdxEvidence({ evidence: bin(`${G}tdx_prod_quote_SPR_E4.bin`), at: new Date('2023-07-01T01:00:00Z'), collateral: sprCollateral() });
    for (const id of ['tdx.crl', 'tdx.tcb-info', 'tdx.qe-identity']) expect(r.checks.find((c) => c.id === id)?.status).toBe('pass');
    expect(failures(r)).toEqual(['tdx.tcb-status:E_ATTEST_TCB_STATUS']);
    expect(r.checks.find((c) => c.id === 'tdx.tcb-status')?.detail).toMatch(/no matching TCB level/);
    expect(r.claims.qeTcbStatus).toBe('UpToDate');
  });

  it('go-tdx-guest TestObtainAndVerifyCollateral at 2053: the PCK chain and the collateral have expired (E_ATTEST_CERT_EXPIRED)', async () => {
    const r = await verifyTdxEvidence({ evidence: bin(`${G}tdx_prod_quote_SPR_E4.bin`), at: new Date('2053-07-01Z'), collateral: sprCollateral() });
    expect(failures(r)).toContain('tdx.pck-chain:E_ATTEST_CERT_EXPIRED');
    expect(r.failure?.code).toBe('E_ATTEST_CERT_EXPIRED');
  });

  it('trustee tdx_quote_6 + 2025 tcbInfo: module TDX_03 UpToDate, platform falls to OutOfDate (E_ATTEST_TCB_STATUS)', async () => {
    const collateral: TdxCollateral = { tcbInfo: text('tdx/trustee/tcbInfo.json'), qeIdentity: text('tdx/trustee/enclaveIdentity.json'), tcbInfoIssuerChain: text(`${G}tcbInfoIssuerChain.pem`) };
    const r = await verifyTdxEvidence({ evidence: bin('tdx/trustee/tdx_quote_6.bin'), at: new Date('2025-10-28T12:00:00Z'), collateral, acceptedTcbStatuses: ['UpToDate'] });
    expect(r.claims.tcbStatus).toBe('OutOfDate');
    expect(r.claims.pck).toMatchObject({ fmspc: '00a06d080000', pceSvn: 11 });
    expect(failures(r)).toContain('tdx.tcb-status:E_ATTEST_TCB_STATUS');
    // The copy of the Intel TCB signing certificate shipped here expired 2025-05-21 (the key is unchanged).
    expect(failures(r)).toContain('tdx.tcb-info:E_ATTEST_CERT_EXPIRED');
  });

  it('PCS signatures cover the exact raw bytes of "tcbInfo" / "enclaveIdentity" and verify with the TCB signing key', () => {
    const signer = new X509Certificate(text(`${G}tcbInfoIssuerChain.pem`));
    for (const doc of [
      parseTdxTcbInfo(text(`${G}sample_tcbInfo_response.json`)),
      parseTdxTcbInfo(text(`${G}sample_tcbinfo_response_v5.json`)),
      parseTdxTcbInfo(text('tdx/trustee/tcbInfo.json')),
      parseTdxQeIdentity(text(`${G}sample_qeIdentity_response.json`)),
      parseTdxQeIdentity(text('tdx/trustee/enclaveIdentity.json')),
    ]) {
      expect(verify('sha256', doc.signed, { key: signer.publicKey, dsaEncoding: 'ieee-p1363' }, doc.signature)).toBe(true);
    }
  });

  it('quote v5 + tcbinfo v5: the TCB level is UpToDate (tcbDate 2024-11-13)', async () => {
    const collateral: TdxCollateral = { tcbInfo: text(`${G}sample_tcbinfo_response_v5.json`), qeIdentity: text(`${G}sample_qeIdentity_response.json`), tcbInfoIssuerChain: text(`${G}tcbInfoIssuerChain.pem`) };
    const r = await verifyTdxEvidence({ evidence: bin(`${G}quote_v5_sample.bin`), at: new Date('2026-02-03T01:00:00Z'), collateral });
    expect(r.claims.tcbStatus).toBe('UpToDate');
    expect(r.claims.tcbDate).toBe('2024-11-13T00:00:00Z');
  });

  it('a debug TD (trustee tdx_quote_4) is refused by the default TDX policy (E_ATTEST_POLICY_DEBUG)', async () => {
    const policy = parseAttestationPolicy({ version: 1, freshness: { requireNonce: false }, tdx: { requireCollateral: false } });
    const r = await verifyEvidence({ type: 'tdx', evidence: bin('tdx/trustee/tdx_quote_4.bin'), at: new Date('2025-10-28Z'), policy });
    expect(failures(r)).toEqual(['policy.tdx.debug:E_ATTEST_POLICY_DEBUG']);
  });
});

describe('go-tdx-guest TestNegativeVerification: one byte set in the SPR E4 quote fails', () => {
  it.each([
    [0x00, 3, 'quote format not supported', 'tdx.parse:E_ATTEST_UNSUPPORTED'],
    [0x278, 0x10, 'certification data size mismatch', 'tdx.parse:E_ATTEST_MALFORMED'],
    [0x1e, 0x32, 'quote signature (header)', 'tdx.quote-signature:E_ATTEST_SIGNATURE'],
    [0x3c, 0x32, 'quote signature (TD body)', 'tdx.quote-signature:E_ATTEST_SIGNATURE'],
    [0x1343, 0x32, 'PCK chain invalid', undefined],
    [0x1329, 0x32, 'root certificate signature', undefined],
    [0xf5f, 0x32, 'intermediate certificate signature', undefined],
    [0xb77, 0x32, 'PCK leaf signature', undefined],
  ] as const)('byte 0x%s = 0x%s (%s)', async (offset, value, _why, expected) => {
    const e = Uint8Array.from(bin(`${G}tdx_prod_quote_SPR_E4.bin`));
    e[offset] = value;
    const r = await verifyEvidence({ type: 'tdx', evidence: e, at: new Date('2023-07-01T01:00:00Z') });
    expect(r.ok).toBe(false);
    if (expected !== undefined) expect(failures(r)).toContain(expected);
    else expect(r.failure?.code).toMatch(/E_ATTEST_(CHAIN|MALFORMED|SIGNATURE)/);
  });
});

describe('TDX: flipping any byte of the signed range (header, descriptor, TD report) of any positive makes it fail', () => {
  it.each(POSITIVES.map((p) => [p[0], p] as const))('%s', async (_n, [file, at, version]) => {
    const base = bin(file);
    const end = version === 5 ? 48 + 6 + (base[48] === 3 ? 648 : 584) : 48 + 584;
    let accepted = 0;
    for (let i = 0; i < end; i++) {
      const e = Uint8Array.from(base);
      e[i]! ^= 0xff;
      if ((await verifyEvidence({ type: 'tdx', evidence: e, at: new Date(at) })).ok) accepted++;
    }
    expect(accepted).toBe(0);
  });
});
