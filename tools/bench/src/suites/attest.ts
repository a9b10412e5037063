import { createPublicKey, verify, X509Certificate } from 'node:crypto';
import { clearCertificateCache, parseSnpReport, parseSpdmEvidence, parseTdxQuote, verifyEvidence } from '@flare/cc-attest';
import { createTestAuthority, defaultGpuMeasurements, synthesizeGpuEvidence, synthesizeRim, synthesizeSnpEvidence, synthesizeTdxCollateral, synthesizeTdxEvidence } from '@flare/cc-attest/testing';
import { time, type Row, type Suite } from '../harness.js';

// Attestation verification throughput per evidence type, with a warm certificate cache (parsed certificates
// and verified chain links are cached by fingerprint), against the bare signature check of the same
// evidence measured in the same run: the ratio says what parsing, chain, binding and policy checks cost on
// top of the one signature that cannot be avoided. Evidence is synthetic (the test authority's vendor-shaped
// chains), so the suite runs without ../shared/vectors; real evidence has the same sizes and algorithms
// except the AMD ARK/ASK (RSA-4096 there, RSA-2048 here; cached in the warm case either way).
export const suite: Suite = {
  name: 'attest',
  description: 'attestation verifications per second (SNP, TDX with collateral, GPU with and without RIM), warm and cold certificate cache, vs the bare evidence signature check',
  async run(): Promise<Row[]> {
    const auth = createTestAuthority();
    const at = new Date('2030-01-01T00:00:00Z');
    const nonce = new Uint8Array(64).fill(7);
    const trust = auth.trust;
    const ops = (ms: number) => 1000 / ms;
    const rows: Row[] = [];

    // SNP: report + VCEK (chain VCEK <- ASK <- ARK).
    const snp = synthesizeSnpEvidence(auth, { reportData: nonce });
    const report = parseSnpReport(snp.evidence);
    const vcekKey = new X509Certificate(snp.certificates[0]!).publicKey;
    const snpSig = Buffer.concat([report.signatureR, report.signatureS]);
    const snpBase = await time(() => verify('sha384', report.signed, { key: vcekKey, dsaEncoding: 'ieee-p1363' }, snpSig), { minMs: 1000 });
    const snpWarm = await time(() => verifyEvidence({ type: 'snp', ...snp, nonce, at, trust }), { minMs: 1500 });
    const snpCold = await time(
      async () => {
        clearCertificateCache();
        await verifyEvidence({ type: 'snp', ...snp, nonce, at, trust });
      },
      { minMs: 1500 },
    );
    const snpBaseline = { label: 'ECDSA P-384 verify of the report alone', value: ops(snpBase.median) };
    rows.push({ label: 'SNP verify, warm cache', value: ops(snpWarm.median), unit: 'ops/s', baseline: snpBaseline, higherIsBetter: true });
    rows.push({ label: 'SNP verify, cold cache (chain re-parsed and re-verified)', value: ops(snpCold.median), unit: 'ops/s', baseline: snpBaseline, higherIsBetter: true });

    // TDX: quote v4 + TCB info + QE identity.
    const tdx = synthesizeTdxEvidence(auth, { reportData: nonce });
    const collateral = synthesizeTdxCollateral(auth);
    const quote = parseTdxQuote(tdx.evidence);
    const attKey = createPublicKey({
      key: { kty: 'EC', crv: 'P-256', x: Buffer.from(quote.attestationKey.subarray(0, 32)).toString('base64url'), y: Buffer.from(quote.attestationKey.subarray(32)).toString('base64url') },
      format: 'jwk',
    });
    const tdxBase = await time(() => verify('sha256', quote.signed, { key: attKey, dsaEncoding: 'ieee-p1363' }, quote.signature), { minMs: 1000 });
    const tdxWarm = await time(() => verifyEvidence({ type: 'tdx', evidence: tdx.evidence, collateral, nonce, at, trust }), { minMs: 1500 });
    const tdxNoCol = await time(() => verifyEvidence({ type: 'tdx', evidence: tdx.evidence, nonce, at, trust }), { minMs: 1500 });
    const tdxBaseline = { label: 'ECDSA P-256 verify of the quote alone', value: ops(tdxBase.median) };
    rows.push({ label: 'TDX verify with collateral (TCB info, QE identity), warm cache', value: ops(tdxWarm.median), unit: 'ops/s', baseline: tdxBaseline, higherIsBetter: true });
    rows.push({ label: 'TDX verify without collateral, warm cache', value: ops(tdxNoCol.median), unit: 'ops/s', baseline: tdxBaseline, higherIsBetter: true });

    // GPU: Hopper-shaped SPDM evidence, 5-certificate chain, optional driver RIM (XML-DSig).
    const n32 = nonce.subarray(0, 32);
    const m = defaultGpuMeasurements();
    const gpu = synthesizeGpuEvidence(auth, { nonce: n32, measurements: m });
    const rim = synthesizeRim(auth, { version: '550.90.07', measurements: new Map([...m].map(([i, v]) => [i - 1, [v]] as const)) });
    const spdm = parseSpdmEvidence(gpu.evidence);
    const leafKey = new X509Certificate(gpu.certificates).publicKey;
    const gpuBase = await time(() => verify('sha384', spdm.signed, { key: leafKey, dsaEncoding: 'ieee-p1363' }, spdm.signature), { minMs: 1000 });
    const gpuWarm = await time(() => verifyEvidence({ type: 'gpu', evidence: gpu.evidence, certificates: [gpu.certificates], nonce: n32, at, trust }), { minMs: 1500 });
    const gpuRim = await time(() => verifyEvidence({ type: 'gpu', evidence: gpu.evidence, certificates: [gpu.certificates], rims: [rim], nonce: n32, at, trust }), { minMs: 1500 });
    const gpuBaseline = { label: 'ECDSA P-384 verify of the SPDM response alone', value: ops(gpuBase.median) };
    rows.push({ label: 'GPU verify (chain, FWID, signature, nonce), warm cache', value: ops(gpuWarm.median), unit: 'ops/s', baseline: gpuBaseline, higherIsBetter: true });
    rows.push({ label: 'GPU verify with a driver RIM (XML-DSig + measurements), warm cache', value: ops(gpuRim.median), unit: 'ops/s', baseline: gpuBaseline, higherIsBetter: true });
    return rows;
  },
};
