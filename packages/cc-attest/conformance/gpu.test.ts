import { describe, expect, it } from 'vitest';
import { NVIDIA_RIM_ROOT_CA, parseGpuEvidenceBundle, parseSpdmEvidence, SPDM_REQUEST_SIZE, VENDOR_TRUST, verifyEvidence, verifyGpuEvidence, verifyRim } from '../src/index.js';
import { parseCertificates } from '../src/cert.js';
import { failures, hex, hexFile, text } from './vectors.js';

// Every real NVIDIA evidence in ../shared/vectors/attest/gpu: Hopper, Blackwell and NVSwitch.

const N = 'gpu/nvtrust-local-gpu-verifier/';
const S = 'gpu/nvidia-attestation-sdk/';
const T = 'gpu/trustee-nvidia/';
const NONCE_931D = '931d8dd0add203ac3d8b4fbde75e115278eefcdceac5b87671a748f32364dfcb';

interface Case {
  readonly name: string;
  readonly evidence: Uint8Array;
  readonly chain: string;
  readonly at: string;
  readonly nonce: string | undefined;
  readonly arch: string;
}

const single = (name: string, ev: string, chain: string, at: string, nonce: string | undefined, arch = 'HOPPER'): Case => ({ name, evidence: hexFile(ev), chain: text(chain), at, nonce, arch });
const bundle = (file: string, at: string): Case[] =>
  parseGpuEvidenceBundle(text(file)).map((e, i) => ({ name: `${file}[${i}]`, evidence: e.evidence, chain: e.certificates, at, nonce: Buffer.from(e.nonce).toString('hex'), arch: e.arch === 'LS10' ? 'LS10' : 'HOPPER' }));

const POSITIVES: readonly Case[] = [
  single('nvtrust hopperAttestationReport', `${N}hopperAttestationReport.hex`, `${N}hopperCertChain.pem`, '2025-03-01T00:00:00Z', NONCE_931D),
  single('sdk unit_hopper (580.159.03)', `${S}unit_hopperAttestationReport.hex`, `${S}unit_hopperCertChain.pem`, '2026-07-01T00:00:00Z', '5bb22e377702d4e1e8215a903ba094826b9ac7f731dee1fe8102958bf2840aca'),
  single('sdk sample_hopper (535.86.09, no FWID)', `${S}sample_hopperAttestationReport.hex`, `${S}sample_hopperCertChain.pem`, '2025-06-01T00:00:00Z', '27a328247bf7935c993341cf587be6f05986ccce4fe7ba2c54100bd616a58f66'),
  single('sdk sample_hopperExpired (570.124.03)', `${S}sample_hopperAttestationReportExpired.hex`, `${S}sample_hopperCertChainExpired.pem`, '2025-06-01T00:00:00Z', NONCE_931D),
  single('sdk sample_blackwell (GB100)', `${S}sample_blackwellAttestationReport.hex`, `${S}sample_blackwellCertChain.pem`, '2025-06-01T00:00:00Z', NONCE_931D, 'BLACKWELL'),
  single('trustee hopper_coco_report1 (trailing byte)', `${T}hopper_coco_report1.hex`, `${T}hopper_coco_certs1.pem`, '2026-02-01T00:00:00Z', '87d8e24ab336adafe228d49e83d745f6dba4ae505372b6a5704820856b343fec'),
  ...bundle('gpu/nvtrust-ppcie/gpu_evidence.json', '2026-03-01T00:00:00Z'),
  ...bundle('gpu/nvtrust-ppcie/switch_evidence.json', '2026-03-01T00:00:00Z'),
  ...bundle(`${S}hopper_evidence.json`, '2026-03-01T00:00:00Z'),
  ...bundle(`${S}hopper_evidence_cert_hold.json`, '2026-03-01T00:00:00Z'),
];

const verifyCase = (c: Case, extra: Partial<Parameters<typeof verifyGpuEvidence>[0]> = {}) =>
  verifyGpuEvidence({ evidence: c.evidence, certificates: [c.chain], at: new Date(c.at), ...(c.nonce ? { nonce: hex(c.nonce) } : {}), ...extra });

describe('GPU positives: device chain to the pinned NVIDIA root, FWID, SPDM signature, nonce', () => {
  it.each(POSITIVES.map((c) => [c.name, c] as const))('%s', async (_n, c) => {
    const r = await verifyCase(c);
    expect(failures(r)).toEqual([]);
    expect(r.claims.arch).toBe(c.arch);
    expect(r.chain).toHaveLength(5);
  });

  it('FWID binding is checked where the report has one (Hopper 2.23.133.5.4.1 and Blackwell 2.23.133.5.4.1.1 forms)', async () => {
    for (const c of POSITIVES.filter((x) => x.arch !== 'LS10' && !x.name.includes('535'))) {
      expect((await verifyCase(c)).checks.find((k) => k.id === 'gpu.fwid')?.status).toBe('pass');
    }
    const bw = await verifyCase(POSITIVES.find((c) => c.arch === 'BLACKWELL')!);
    expect(bw.claims.fwid?.startsWith('d090cab1')).toBe(true);
  });
});

describe('GPU decoded fields match the sources', () => {
  it('nvtrust sample matches trustee hopperAttestationReport-claims.json', async () => {
    const expected = JSON.parse(text(`${T}hopperAttestationReport-claims.json`)) as { config: Record<string, string>; measurements: Record<string, string> };
    const c = (await verifyCase(POSITIVES[0]!)).claims;
    expect(c.driverVersion).toBe(expected.config['driver_version']);
    expect(c.vbiosVersion).toBe(expected.config['vbios_version']);
    expect(c.fwid).toBe(expected.config['fwid']);
    expect(c.opaque['BOARD_ID']).toBe(expected.config['board_id']);
    expect(c.opaque['PROJECT']).toBe(expected.config['project']);
    expect(c.opaque['CHIP_SKU']).toBe(expected.config['chip_sku']);
    expect(c.measurements).toEqual(expected.measurements);
  });

  it('sdk unit_hopper matches spdm_parsed_output.json and spdm_req_parsed_output.json', () => {
    const resp = JSON.parse(text(`${S}spdm_parsed_output.json`)) as { Nonce: string; OpaqueLength: number; Signature: string; NumberOfBlocks: number; MeasurementRecord: { MeasurementBlocks: Record<string, { DMTFSpecMeasurementValue: string }> } };
    const req = JSON.parse(text(`${S}spdm_req_parsed_output.json`)) as { Nonce: string };
    const e = parseSpdmEvidence(hexFile(`${S}unit_hopperAttestationReport.hex`));
    expect(`0x${Buffer.from(e.nonce).toString('hex')}`).toBe(req.Nonce);
    expect(`0x${Buffer.from(e.responderNonce).toString('hex')}`).toBe(resp.Nonce);
    expect(`0x${Buffer.from(e.signature).toString('hex')}`).toBe(resp.Signature);
    expect(e.blocks).toHaveLength(resp.NumberOfBlocks);
    for (const b of e.blocks) expect(`0x${Buffer.from(b.value).toString('hex')}`).toBe(resp.MeasurementRecord.MeasurementBlocks[String(b.index)]!.DMTFSpecMeasurementValue);
    const opaqueLength = e.signed.length - SPDM_REQUEST_SIZE - 8 - 3520 - 32 - 2;
    expect(opaqueLength).toBe(resp.OpaqueLength);
  });

  it('PPCIe: FEATURE_FLAG PPCIE on the GPUs; NVSwitch VBIOS version text', async () => {
    const gpu = (await verifyCase(POSITIVES.find((c) => c.name.includes('gpu_evidence'))!)).claims;
    expect(gpu.opaque['FEATURE_FLAG']).toBe('0200');
    const sw = (await verifyCase(POSITIVES.find((c) => c.arch === 'LS10')!)).claims;
    expect(sw.vbiosVersion).toBe('96.10.73.00.01');
  });
});

describe('GPU negatives fail for the reason their README states', () => {
  it('sdk invalid_signature: ReportInvalidSignature + CertChainExpired fails the signature (and the FWID binding)', async () => {
    const c = single('x', `${S}sample_hopperAttestationReportInvalidSignature.hex`, `${S}sample_hopperCertChainExpired.pem`, '2025-06-01T00:00:00Z', NONCE_931D);
    expect(failures(await verifyCase(c))).toEqual(['gpu.fwid:E_ATTEST_FWID', 'gpu.signature:E_ATTEST_SIGNATURE']);
  });

  it('sdk bad_nonce: the sample report with expected nonce 00..00 (E_ATTEST_NONCE)', async () => {
    expect(failures(await verifyCase({ ...POSITIVES[2]!, nonce: '00'.repeat(32) }))).toEqual(['gpu.nonce:E_ATTEST_NONCE']);
  });

  it('trustee case 2 (root only) and case 3 (intermediate missing) fail the chain (E_ATTEST_CHAIN)', async () => {
    for (const f of ['hopper_cert_chain_case2.pem', 'hopper_cert_chain_case3.pem']) {
      expect(failures(await verifyCase({ ...POSITIVES[0]!, chain: text(`${T}${f}`) }))).toContain('gpu.chain:E_ATTEST_CHAIN');
    }
  });

  it('trustee case 4 (signing certificate missing): no FWID in the first certificate (E_ATTEST_FWID) and the signature fails', async () => {
    const f = failures(await verifyCase({ ...POSITIVES[0]!, chain: text(`${T}hopper_cert_chain_case4.pem`) }));
    expect(f).toEqual(expect.arrayContaining(['gpu.fwid:E_ATTEST_FWID', 'gpu.signature:E_ATTEST_SIGNATURE']));
  });

  it('trustee hopper_signing_cert.pem: its FWID is f5c384ae...b1f75d', async () => {
    const { certificateFwid } = await import('../src/index.js');
    expect(Buffer.from(certificateFwid(text(`${T}hopper_signing_cert.pem`))!).toString('hex')).toBe('f5c384aebb579217a2c66b17ed0f28e6a9b8d639041acd7b4721cec004f7275494ba94bb5cdfdb3055ee051762b1f75d');
  });

  it('nvtrust RIMs are for driver 545.00 and VBIOS 96.00.5E, not this report (E_ATTEST_RIM)', async () => {
    const r = await verifyCase(POSITIVES[0]!, { rims: [text(`${N}Driver_RIM_test_no_gpu.swidtag`), text(`${N}1010_0200_882_96005E0001_test_no_gpu.swidtag`)] });
    expect(failures(r)).toEqual(['gpu.rim[0]:E_ATTEST_RIM', 'gpu.rim[1]:E_ATTEST_RIM']);
  });

  it('sdk measurements_mismatch: the driver RIM was edited after signing (E_ATTEST_RIM) and the VBIOS RIM golden value at index 9 differs (E_ATTEST_MEASUREMENT)', async () => {
    const r = await verifyCase(POSITIVES[2]!, { rims: [text(`${S}NV_GPU_DRIVER_GH100_535.86.09_measurement_mismatch.xml`), text(`${S}NV_GPU_VBIOS_1010_0200_882_96005E0001_measurement_mismatch.xml`)] });
    expect(failures(r)).toEqual(['gpu.rim[0]:E_ATTEST_RIM', 'gpu.measurements:E_ATTEST_MEASUREMENT']);
    expect(r.claims.mismatchedIndices).toEqual([9]);
  });

  it('sdk expired_driver_rim: the RIM signer was valid 2025-01-01 to 2025-01-02 (E_ATTEST_CERT_EXPIRED)', async () => {
    const r = await verifyCase(POSITIVES[3]!, { rims: [text(`${S}NV_GPU_DRIVER_GH100_570.124.03_expired.xml`)] });
    expect(failures(r)).toEqual(['gpu.rim[0]:E_ATTEST_CERT_EXPIRED']);
  });
});

describe('RIM XML signatures against the pinned NVIDIA RIM root (README table)', () => {
  it.each([
    [`${S}NV_GPU_DRIVER_GH100_550.144.03.xml`, '2026-01-01T00:00:00Z', true, undefined],
    [`${N}Driver_RIM_test_no_gpu.swidtag`, '2025-03-01T00:00:00Z', true, undefined],
    [`${N}1010_0200_882_96005E0001_test_no_gpu.swidtag`, '2025-03-01T00:00:00Z', true, undefined],
    [`${N}1010_0200_882_96005E0001_PROD.swidtag`, '2025-03-01T00:00:00Z', true, undefined],
    [`${S}NV_GPU_VBIOS_1010_0200_882_96005E0001_measurement_mismatch.xml`, '2025-06-01T00:00:00Z', true, undefined],
    [`${S}incorrect_signature_driver_rim.xml`, '2026-01-01T00:00:00Z', false, 'E_ATTEST_RIM'],
    [`${S}incorrect_cert_chain_driver_rim.xml`, '2026-01-01T00:00:00Z', false, 'E_ATTEST_CHAIN'],
    [`${S}NV_GPU_DRIVER_GH100_570.124.03_expired.xml`, '2025-06-01T00:00:00Z', false, 'E_ATTEST_CERT_EXPIRED'],
    [`${S}NV_GPU_DRIVER_GH100_535.86.09_measurement_mismatch.xml`, '2026-01-01T00:00:00Z', false, 'E_ATTEST_RIM'],
  ] as const)('%s', (file, at, ok, code) => {
    const r = verifyRim(text(file), new Date(at));
    expect(r.ok).toBe(ok);
    if (!r.ok) expect(r.code).toBe(code);
  });

  it('the valid RIM fails against incorrect_rim_root.pem (E_ATTEST_CHAIN)', () => {
    expect(verifyRim(text(`${S}NV_GPU_DRIVER_GH100_550.144.03.xml`), new Date('2026-01-01Z'), text(`${S}incorrect_rim_root.pem`))).toMatchObject({ ok: false, code: 'E_ATTEST_CHAIN' });
  });

  it('rim_root.pem in the SDK is the pinned root', () => {
    expect(parseCertificates(text(`${S}rim_root.pem`))[0]!.sha256).toBe(NVIDIA_RIM_ROOT_CA.sha256);
    expect(VENDOR_TRUST.nvidiaRimRoot).toBe(NVIDIA_RIM_ROOT_CA.pem);
  });
});

describe('GPU: flipping any byte of the signed range (request || response up to the signature) makes it fail', () => {
  // Every positive, every byte (about 8 s per Hopper evidence here).
  it.each(POSITIVES.map((c) => [c.name, c] as const))('%s', async (_n, c) => {
    const signedLength = parseSpdmEvidence(c.evidence).signed.length;
    let accepted = 0;
    for (let i = 0; i < signedLength; i++) {
      const e = Uint8Array.from(c.evidence);
      e[i]! ^= 0xff;
      if ((await verifyEvidence({ type: 'gpu', evidence: e, certificates: [c.chain], at: new Date(c.at) })).ok) accepted++;
    }
    expect(accepted).toBe(0);
  });
});
