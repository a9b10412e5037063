import { describe, expect, it } from 'vitest';
import { parseAttestationPolicy, verifyEvidence, verifySnpEvidence, VENDOR_TRUST, type SnpClaims } from '../src/index.js';
import { createHash } from 'node:crypto';
import { bin, failures, hexFile, text } from './vectors.js';

// Every real SEV-SNP report in ../shared/vectors/attest/snp: each positive verifies against the pinned AMD
// roots at a pinned time, each negative fails for the reason its README states, and any byte flipped in the
// signed range of any positive makes it fail.

interface Positive {
  readonly report: string;
  readonly cert: string;
  readonly at: string;
  readonly product: 'Milan' | 'Genoa' | 'Turin';
  readonly version: number;
  readonly signer?: 'vcek' | 'vlek';
}

const POSITIVES: readonly Positive[] = [
  { report: 'snp/go-sev-guest/attestation.bin', cert: 'snp/go-sev-guest/vcek_milan.der', at: '2022-09-24T01:00:00Z', product: 'Milan', version: 2 },
  { report: 'snp/virtee-sev/report_milan.hex', cert: 'snp/virtee-sev/vcek_milan.der', at: '2024-01-01T00:00:00Z', product: 'Milan', version: 2 },
  { report: 'snp/trustee/test-report.bin', cert: 'snp/trustee/test-vcek.der', at: '2024-01-01T00:00:00Z', product: 'Milan', version: 2 },
  { report: 'snp/trustee/test-vlek-report.bin', cert: 'snp/trustee/test-vlek.der', at: '2025-06-01T00:00:00Z', product: 'Milan', version: 3, signer: 'vlek' },
  { report: 'snp/trustee/e2e-genoa-report.reconstructed.bin', cert: 'snp/trustee/e2e-genoa-vcek.der', at: '2025-10-01T00:00:00Z', product: 'Genoa', version: 3 },
  { report: 'snp/trustee-azure-snp-vtpm/az-milan-snp-report.bin', cert: 'snp/trustee-azure-snp-vtpm/vcek-milan-with-chain.pem', at: '2024-01-01T00:00:00Z', product: 'Milan', version: 2 },
  { report: 'snp/trustee-azure-snp-vtpm/az-genoa-snp-report.bin', cert: 'snp/trustee-azure-snp-vtpm/vcek-genoa.pem', at: '2025-10-01T00:00:00Z', product: 'Genoa', version: 3 },
  { report: 'snp/project-oak/genoa_oc.report.bin', cert: 'snp/project-oak/genoa_oc.vcek.der', at: '2025-10-01T08:00:00Z', product: 'Genoa', version: 5 },
  { report: 'snp/project-oak/turin_oc.report.bin', cert: 'snp/project-oak/turin_oc.vcek.der', at: '2025-10-01T08:00:00Z', product: 'Turin', version: 5 },
  { report: 'snp/project-oak/milan_oc_release.report.bin', cert: 'snp/project-oak/milan_oc_release.vcek.der', at: '2025-10-01T08:00:00Z', product: 'Milan', version: 3 },
  { report: 'snp/project-oak/milan_oc_staging.report.bin', cert: 'snp/project-oak/milan_oc_release.vcek.der', at: '2025-10-01T08:00:00Z', product: 'Milan', version: 3 },
  { report: 'snp/project-oak/milan_rk_release.report.bin', cert: 'snp/project-oak/milan_rk_release.vcek.der', at: '2025-10-01T08:00:00Z', product: 'Milan', version: 3 },
  { report: 'snp/project-oak/milan_rk_staging.report.bin', cert: 'snp/project-oak/milan_rk_release.vcek.der', at: '2025-10-01T08:00:00Z', product: 'Milan', version: 3 },
  { report: 'snp/project-oak/cb.report.bin', cert: 'snp/project-oak/cb.vcek.der', at: '2025-10-01T08:00:00Z', product: 'Milan', version: 3 },
];

const load = (p: Positive) => ({ evidence: p.report.endsWith('.hex') ? hexFile(p.report) : bin(p.report), certificates: [p.cert.endsWith('.pem') ? text(p.cert) : bin(p.cert)] });

describe('SEV-SNP positives verify against the pinned AMD roots', () => {
  it.each(POSITIVES.map((p) => [p.report, p] as const))('%s', async (_name, p) => {
    const r = await verifySnpEvidence({ ...load(p), at: new Date(p.at) });
    expect(failures(r)).toEqual([]);
    expect(r.trust).toBe('vendor');
    expect(r.claims).toMatchObject({ product: p.product, version: p.version, signingKey: p.signer ?? 'vcek' });
    expect(r.chain.map((c) => c.role)).toEqual(p.signer === 'vlek' ? ['vlek', 'asvk', 'ark'] : ['vcek', 'ask', 'ark']);
  });

  it('Azure HCL reports verify and bind the runtime JSON (report_data[0:32] = SHA-256) (trustee az-snp-vtpm)', async () => {
    for (const [hcl, cert, at] of [
      ['snp/trustee-azure-snp-vtpm/az-milan-hcl-report.bin', 'snp/trustee-azure-snp-vtpm/vcek-milan-with-chain.pem', '2024-01-01T00:00:00Z'],
      ['snp/trustee-azure-snp-vtpm/az-genoa-hcl-report.bin', 'snp/trustee-azure-snp-vtpm/vcek-genoa.pem', '2025-10-01T00:00:00Z'],
    ] as const) {
      const r = await verifySnpEvidence({ evidence: bin(hcl), certificates: [text(cert)], at: new Date(at) });
      expect(failures(r)).toEqual([]);
      expect(r.checks.find((c) => c.id === 'snp.hcl-binding')?.status).toBe('pass');
    }
  });
});

describe('SEV-SNP decoded fields match the sources', () => {
  it('go-sev-guest attestation.bin (README): policy 0xb0000 with DEBUG, TCB 2/0/5/68, report_data 0102030405', async () => {
    const r = await verifySnpEvidence({ ...load(POSITIVES[0]!), at: new Date(POSITIVES[0]!.at), nonce: new Uint8Array([1, 2, 3, 4, 5]) });
    const c: SnpClaims = r.claims;
    expect(r.ok).toBe(true);
    expect(c.policy).toBe('00000000000b0000');
    expect(c.debug).toBe(true);
    expect(c.reportedTcb).toMatchObject({ bootloader: 2, tee: 0, snp: 5, microcode: 68 });
    expect(c.measurement).toBe('b07af9620f3b839b47996422ddec6058338951d984e312115131ea82705eaf5b6bdf8a9ece31a5a608eb0cf2e4872b01');
    expect(c.chipId.startsWith('3ac3fe21e13fb099')).toBe(true);
    expect(c.reportIdMa).toBe('ff'.repeat(32));
    expect(c.currentVersion).toBe('1.49.3');
  });

  it('project-oak turin_oc (README): Turin TCB layout fmc 0, bl 1, tee 0, snp 2, ucode 71; 8-byte chip id; PLATFORM_INFO 0x67', async () => {
    const p = POSITIVES.find((x) => x.product === 'Turin')!;
    const c = (await verifySnpEvidence({ ...load(p), at: new Date(p.at) })).claims;
    expect(c.reportedTcb).toEqual({ fmc: 0, bootloader: 1, tee: 0, snp: 2, microcode: 71, raw: '4700000002000100' });
    expect(c.chipId).toBe(`3b42092f69c656d3${'00'.repeat(56)}`);
    expect(c.platformInfo).toBe('0000000000000067');
    expect(c.cpuid).toEqual({ family: 0x1a, model: 0x02, stepping: 0x01 });
    expect(c.keyCertificate).toMatchObject({ productName: 'Turin', tcb: { fmc: 0, bootloader: 1, tee: 0, snp: 2, microcode: 71 } });
  });

  it('project-oak genoa_oc (README): v5 mitigation vectors = 1', async () => {
    const p = POSITIVES.find((x) => x.report.includes('genoa_oc'))!;
    const c = (await verifySnpEvidence({ ...load(p), at: new Date(p.at) })).claims;
    expect(c.launchMitVector).toBe('0000000000000001');
    expect(c.currentMitVector).toBe('0000000000000001');
    expect(c.reportedTcb).toMatchObject({ bootloader: 10, tee: 0, snp: 25, microcode: 84 });
  });

  it('trustee test-report (README): CURRENT_TCB ucode 206 differs from REPORTED_TCB 115, and it still verifies', async () => {
    const c = (await verifySnpEvidence({ ...load(POSITIVES[2]!), at: new Date(POSITIVES[2]!.at) })).claims;
    expect(c.currentTcb).toMatchObject({ microcode: 206 });
    expect(c.reportedTcb).toMatchObject({ bootloader: 3, tee: 0, snp: 8, microcode: 115 });
    expect(c.guestSvn).toBe(4);
  });

  it('trustee test-vlek-report (README): VLEK, VMPL 1, CSP_ID cc-us-east-2.amazonaws.com', async () => {
    const p = POSITIVES[3]!;
    const c = (await verifySnpEvidence({ ...load(p), at: new Date(p.at) })).claims;
    expect(c.vmpl).toBe(1);
    expect(c.keyCertificate?.cspId).toBe('CN=cc-us-east-2.amazonaws.com');
    expect(c.chipId).toBe('00'.repeat(64));
  });
});

describe('SEV-SNP negatives fail for the reason their README states', () => {
  const milan = POSITIVES[2]!;

  it('go-sev-guest attestation.bin has DEBUG set: a policy forbidding debug refuses it (E_ATTEST_POLICY_DEBUG)', async () => {
    const p = POSITIVES[0]!;
    const r = await verifyEvidence({ type: 'snp', ...load(p), at: new Date(p.at), policy: parseAttestationPolicy({ version: 1, freshness: { requireNonce: false }, snp: {} }) });
    expect(failures(r)).toEqual(['policy.snp.debug:E_ATTEST_POLICY_DEBUG']);
  });

  it('go-sev-guest TestRealAttestationVerification: Milan stepping 0 verifies; "expected product stepping 12, got 0" (E_ATTEST_PRODUCT)', async () => {
    const p = POSITIVES[0]!;
    expect((await verifySnpEvidence({ ...load(p), at: new Date(p.at), product: 'Milan', stepping: 0 })).ok).toBe(true);
    const r = await verifySnpEvidence({ ...load(p), at: new Date(p.at), product: 'Milan', stepping: 12 });
    expect(failures(r)).toEqual(['snp.product:E_ATTEST_PRODUCT']);
    expect(r.failure?.detail).toBe('expected product stepping 12, got 0');
  });

  it('go-sev-guest: expecting another product fails (E_ATTEST_PRODUCT)', async () => {
    const p = POSITIVES[0]!;
    expect(failures(await verifySnpEvidence({ ...load(p), at: new Date(p.at), product: 'Genoa' }))).toContain('snp.product:E_ATTEST_PRODUCT');
  });

  it('virtee milan_chain_invalid: byte 40 of the VCEK ^= 0xff fails the chain', async () => {
    const vcek = Uint8Array.from(bin('snp/virtee-sev/vcek_milan.der'));
    vcek[40]! ^= 0xff;
    const r = await verifyEvidence({ type: 'snp', evidence: hexFile('snp/virtee-sev/report_milan.hex'), certificates: [vcek], at: new Date('2024-01-01Z') });
    expect(r.ok).toBe(false);
    expect(r.failure?.code).toMatch(/E_ATTEST_(CHAIN|MALFORMED)/);
  });

  it('virtee milan_report_invalid: byte 21 of the report ^= 0x80 fails the signature (E_ATTEST_SIGNATURE)', async () => {
    const p = POSITIVES[1]!;
    const e = load(p);
    e.evidence[21]! ^= 0x80;
    expect(failures(await verifySnpEvidence({ ...e, at: new Date(p.at) }))).toEqual(['snp.report-signature:E_ATTEST_SIGNATURE']);
  });

  it('trustee check_vcek_signature_failure: VCEK byte 42 += 1 fails', async () => {
    const vcek = Uint8Array.from(bin(milan.cert));
    vcek[42] = (vcek[42]! + 1) & 0xff;
    const r = await verifyEvidence({ type: 'snp', evidence: bin(milan.report), certificates: [vcek], at: new Date(milan.at) });
    expect(r.ok).toBe(false);
  });

  it('trustee check_milan_chain_signature_failure: the ASVK used as the ASK fails the chain (E_ATTEST_CHAIN)', async () => {
    const trust = { ...VENDOR_TRUST, amdIntermediates: [text('snp/go-sev-guest/ask_ark_milan_vlek.pem')] };
    expect(failures(await verifySnpEvidence({ ...load(milan), at: new Date(milan.at), trust }))).toEqual(['snp.chain:E_ATTEST_CHAIN']);
  });

  it('trustee check_report_signature_failure: report byte 42 += 1 fails the signature (E_ATTEST_SIGNATURE)', async () => {
    const e = load(milan);
    e.evidence[42] = (e.evidence[42]! + 1) & 0xff;
    expect(failures(await verifySnpEvidence({ ...e, at: new Date(milan.at) }))).toEqual(['snp.report-signature:E_ATTEST_SIGNATURE']);
  });

  it.each([2, 3])('trustee check_report_tcb_failure: report byte 384 (REPORTED_TCB.bl) += 1 fails the TCB check (E_ATTEST_TCB_MISMATCH) [%i]', async (i) => {
    const p = POSITIVES[i]!;
    const e = load(p);
    e.evidence[384] = (e.evidence[384]! + 1) & 0xff;
    const f = failures(await verifySnpEvidence({ ...e, at: new Date(p.at) }));
    expect(f).toContain('snp.tcb:E_ATTEST_TCB_MISMATCH');
    expect(f).toContain('snp.report-signature:E_ATTEST_SIGNATURE');
  });

  it('trustee test-vcek-invalid-{legacy,new}: both hwID encodings parse (00..3f), and the doctored signatures fail the chain', async () => {
    for (const f of ['snp/trustee/test-vcek-invalid-legacy.der', 'snp/trustee/test-vcek-invalid-new.der']) {
      const r = await verifySnpEvidence({ evidence: bin(milan.report), certificates: [bin(f)], at: new Date(milan.at) });
      expect(r.checks.find((c) => c.id === 'snp.key-certificate')?.status).toBe('pass');
      expect(failures(r)).toContain('snp.chain:E_ATTEST_CHAIN');
      expect(failures(r)).toContain('snp.chip-id:E_ATTEST_CHIP_ID');
    }
  });

  it('trustee VLEK expired 2025-12-10: at 2026-01-01 the chain fails (E_ATTEST_CERT_EXPIRED)', async () => {
    const p = POSITIVES[3]!;
    expect(failures(await verifySnpEvidence({ ...load(p), at: new Date('2026-01-01Z') }))).toEqual(['snp.chain:E_ATTEST_CERT_EXPIRED']);
  });

  it('oak milan_ark_does_not_sign_vcek: without the ASK the VCEK does not chain to the ARK (E_ATTEST_CHAIN)', async () => {
    const p = POSITIVES.find((x) => x.report.includes('milan_oc_release'))!;
    const trust = { ...VENDOR_TRUST, amdIntermediates: [] };
    expect(failures(await verifySnpEvidence({ ...load(p), at: new Date(p.at), trust }))).toEqual(['snp.chain:E_ATTEST_CHAIN']);
  });

  it('oak ark_does_not_sign_ask: the Milan ARK does not verify the Genoa or Turin chains (E_ATTEST_CHAIN)', async () => {
    for (const product of ['Genoa', 'Turin'] as const) {
      const p = POSITIVES.find((x) => x.product === product)!;
      const trust = { ...VENDOR_TRUST, amdArk: { ...VENDOR_TRUST.amdArk, [product]: VENDOR_TRUST.amdArk.Milan } };
      expect(failures(await verifySnpEvidence({ ...load(p), at: new Date(p.at), trust }))).toContain('snp.chain:E_ATTEST_CHAIN');
    }
  });

  it('a VCEK of another report (another chip) fails the chip id and TCB checks', async () => {
    const r = await verifySnpEvidence({ evidence: bin(POSITIVES[0]!.report), certificates: [bin(milan.cert)], at: new Date('2024-01-01Z') });
    expect(failures(r)).toEqual(expect.arrayContaining(['snp.report-signature:E_ATTEST_SIGNATURE', 'snp.chip-id:E_ATTEST_CHIP_ID', 'snp.tcb:E_ATTEST_TCB_MISMATCH']));
  });
});

describe('SEV-SNP: flipping any byte of the signed range 0x000-0x29F of any positive makes it fail', () => {
  it.each(POSITIVES.map((p) => [p.report, p] as const))('%s', async (_n, p) => {
    const base = load(p);
    const digest = createHash('sha256').update(base.evidence).digest('hex');
    let accepted = 0;
    for (let i = 0; i < 0x2a0; i++) {
      const e = Uint8Array.from(base.evidence);
      e[i]! ^= 0xff;
      if ((await verifyEvidence({ type: 'snp', evidence: e, certificates: base.certificates, at: new Date(p.at) })).ok) accepted++;
    }
    expect(accepted).toBe(0);
    expect(createHash('sha256').update(base.evidence).digest('hex')).toBe(digest);
  });
});
