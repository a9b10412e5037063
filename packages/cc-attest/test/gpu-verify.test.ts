import { describe, expect, it } from 'vitest';
import { formatVbiosVersion, parseGpuEvidenceBundle, parseSpdmEvidence, verifyGpuEvidence } from '../src/index.js';
import { defaultGpuMeasurements, synthesizeGpuEvidence, synthesizeRim } from '../src/testing/index.js';
import { AT, authority, failures, nonce32 } from './helpers.js';

const auth = authority();
const goldenFor = (m: Map<number, Uint8Array>) => new Map<number, readonly Uint8Array[]>([...m].map(([i, v]) => [i - 1, [v]]));
const verify = (e: { evidence: Uint8Array; certificates: string }, extra: Partial<Parameters<typeof verifyGpuEvidence>[0]> = {}) =>
  verifyGpuEvidence({ evidence: e.evidence, certificates: [e.certificates], at: AT, trust: auth.trust, ...extra });

describe('verifyGpuEvidence: synthetic evidence that verifies', () => {
  it('chain to the device root, FWID binding, signature, nonce and RIM measurements', async () => {
    const m = defaultGpuMeasurements();
    const e = synthesizeGpuEvidence(auth, { nonce: nonce32(), measurements: m });
    const rim = synthesizeRim(auth, { version: '550.90.07', measurements: goldenFor(m) });
    const r = await verify(e, { nonce: nonce32(), rims: [rim] });
    expect(failures(r)).toEqual([]);
    expect(r.claims).toMatchObject({ arch: 'HOPPER', driverVersion: '550.90.07', vbiosVersion: '96.00.9f.00.01', measurementsCompared: true });
    expect(r.claims.rimIds).toEqual({ driver: 'NV_GPU_DRIVER_GH100_550.90.07', vbios: 'NV_GPU_VBIOS_1010_0200_882_96009F0001' });
    expect(r.chain).toHaveLength(5);
  });

  it('computes the signed range from parsed lengths: a trailing byte does not break it (trustee CoCo quirk)', async () => {
    expect((await verify(synthesizeGpuEvidence(auth, { trailing: 1 }))).ok).toBe(true);
  });

  it('skips the FWID check when the report has no FWID (driver 535)', async () => {
    const r = await verify(synthesizeGpuEvidence(auth, { omitFwid: true }));
    expect(r.ok).toBe(true);
    expect(r.checks.find((c) => c.id === 'gpu.fwid')?.status).toBe('skip');
  });

  it('accepts a golden value among several alternatives (Hash0..HashN)', async () => {
    const m = defaultGpuMeasurements();
    const golden = goldenFor(m);
    golden.set(0, [new Uint8Array(48).fill(1), m.get(1)!]);
    const r = await verify(synthesizeGpuEvidence(auth, { measurements: m }), { rims: [synthesizeRim(auth, { version: '550.90.07', measurements: golden })] });
    expect(r.ok).toBe(true);
  });
});

describe('verifyGpuEvidence: each check failing on its own', () => {
  it('refuses a chain to another root (E_ATTEST_CHAIN)', async () => {
    const e = synthesizeGpuEvidence(auth);
    const r = await verifyGpuEvidence({ evidence: e.evidence, certificates: [e.certificates], at: AT });
    expect(failures(r)).toEqual(['gpu.chain:E_ATTEST_CHAIN']);
  });

  it('refuses a chain with the root only, as trustee case 2 (E_ATTEST_CHAIN)', async () => {
    const e = synthesizeGpuEvidence(auth);
    const r = await verify({ ...e, certificates: auth.nvidia.root.pem });
    expect(failures(r)).toContain('gpu.chain:E_ATTEST_CHAIN');
  });

  it('refuses an FWID that differs from the leaf certificate (E_ATTEST_FWID)', async () => {
    expect(failures(await verify(synthesizeGpuEvidence(auth, { opaqueFwid: new Uint8Array(48).fill(3) })))).toEqual(['gpu.fwid:E_ATTEST_FWID']);
  });

  it('refuses a response not signed by the leaf key (E_ATTEST_SIGNATURE)', async () => {
    expect(failures(await verify(synthesizeGpuEvidence(auth, { wrongSigner: true })))).toEqual(['gpu.signature:E_ATTEST_SIGNATURE']);
  });

  it('refuses a request nonce other than the session nonce (E_ATTEST_NONCE)', async () => {
    expect(failures(await verify(synthesizeGpuEvidence(auth, { nonce: nonce32(1) }), { nonce: nonce32(2) }))).toEqual(['gpu.nonce:E_ATTEST_NONCE']);
  });

  it('refuses a measurement that matches no golden value (E_ATTEST_MEASUREMENT), unless the index is allowed', async () => {
    const m = defaultGpuMeasurements();
    const golden = goldenFor(m);
    golden.set(6, [new Uint8Array(48).fill(0xee)]);
    const rims = [synthesizeRim(auth, { version: '550.90.07', measurements: golden })];
    const e = synthesizeGpuEvidence(auth, { measurements: m });
    const r = await verify(e, { rims });
    expect(failures(r)).toEqual(['gpu.measurements:E_ATTEST_MEASUREMENT']);
    expect(r.claims.mismatchedIndices).toEqual([6]);
    expect((await verify(e, { rims, allowedMismatchIndices: [6] })).ok).toBe(true);
  });

  it('refuses a RIM edited after signing (E_ATTEST_RIM)', async () => {
    const m = defaultGpuMeasurements();
    const rim = synthesizeRim(auth, { version: '550.90.07', measurements: goldenFor(m), tamperAfterSigning: true });
    expect(failures(await verify(synthesizeGpuEvidence(auth, { measurements: m }), { rims: [rim] }))).toEqual(['gpu.rim[0]:E_ATTEST_RIM']);
  });

  it('refuses a RIM with a bad XML signature (E_ATTEST_RIM)', async () => {
    const m = defaultGpuMeasurements();
    const rim = synthesizeRim(auth, { version: '550.90.07', measurements: goldenFor(m), wrongSigner: true });
    expect(failures(await verify(synthesizeGpuEvidence(auth, { measurements: m }), { rims: [rim] }))).toEqual(['gpu.rim[0]:E_ATTEST_RIM']);
  });

  it('refuses a RIM for another driver version (E_ATTEST_RIM)', async () => {
    const m = defaultGpuMeasurements();
    const rim = synthesizeRim(auth, { version: '545.00', measurements: goldenFor(m) });
    expect(failures(await verify(synthesizeGpuEvidence(auth, { measurements: m }), { rims: [rim] }))).toEqual(['gpu.rim[0]:E_ATTEST_RIM']);
  });

  it('refuses two RIMs that both claim an index (E_ATTEST_RIM)', async () => {
    const m = defaultGpuMeasurements();
    const driver = synthesizeRim(auth, { version: '550.90.07', measurements: goldenFor(m) });
    const vbios = synthesizeRim(auth, { version: '96.00.9f.00.01', measurements: new Map([[0, [m.get(1)!]]]) });
    expect(failures(await verify(synthesizeGpuEvidence(auth, { measurements: m }), { rims: [driver, vbios] }))).toEqual(['gpu.measurements:E_ATTEST_RIM']);
  });

  it('refuses NVML-reported versions that differ from the evidence (E_ATTEST_MEASUREMENT)', async () => {
    expect(failures(await verify(synthesizeGpuEvidence(auth), { reported: { driverVersion: '560.00' } }))).toEqual(['gpu.versions:E_ATTEST_MEASUREMENT']);
  });
});

describe('parseSpdmEvidence and formatVbiosVersion', () => {
  it('formats VBIOS_VERSION as nvtrust does: 009f009601000000 -> 96.00.9f.00.01', () => {
    expect(formatVbiosVersion(Uint8Array.from(Buffer.from('009f009601000000', 'hex')))).toBe('96.00.9f.00.01');
    expect(formatVbiosVersion(new Uint8Array(Buffer.from('96.10.73.00.01\0', 'latin1')))).toBe('96.10.73.00.01');
  });

  it.each([
    ['an SPDM 1.0 request', (b: Uint8Array) => ((b[0] = 0x10), b), 'E_ATTEST_UNSUPPORTED'],
    ['a request without signature', (b: Uint8Array) => ((b[2] = 0), b), 'E_ATTEST_MALFORMED'],
    ['a truncated response', (b: Uint8Array) => b.subarray(0, 300), 'E_ATTEST_MALFORMED'],
    ['a record length past the end', (b: Uint8Array) => ((b[37 + 7] = 0x7f), b), 'E_ATTEST_MALFORMED'],
  ])('refuses %s (%s)', (_w, mutate, code) => {
    const b = Uint8Array.from(synthesizeGpuEvidence(auth).evidence);
    expect(() => parseSpdmEvidence(mutate(b))).toThrow(expect.objectContaining({ code }));
  });
});

describe('parseGpuEvidenceBundle', () => {
  it('reads the NVIDIA SDK JSON array', () => {
    const e = synthesizeGpuEvidence(auth, { nonce: nonce32() });
    const json = JSON.stringify([{ arch: 'HOPPER', nonce: Buffer.from(nonce32()).toString('hex'), evidence: Buffer.from(e.evidence).toString('base64'), certificate: Buffer.from(e.certificates).toString('base64'), driver_version: '550.90.07' }]);
    const [entry] = parseGpuEvidenceBundle(json);
    expect(entry!.arch).toBe('HOPPER');
    expect(Buffer.from(entry!.evidence).equals(Buffer.from(e.evidence))).toBe(true);
    expect(entry!.driverVersion).toBe('550.90.07');
  });
  it('refuses other shapes (E_ATTEST_MALFORMED)', () => {
    expect(() => parseGpuEvidenceBundle('[{"arch":"HOPPER"}]')).toThrow(expect.objectContaining({ code: 'E_ATTEST_MALFORMED' }));
    expect(() => parseGpuEvidenceBundle('{')).toThrow(expect.objectContaining({ code: 'E_ATTEST_MALFORMED' }));
  });
});
