import { describe, expect, it } from 'vitest';
import { evaluatePolicy, parseAttestationPolicy, verifyEvidence, verifyGpuEvidence, type VerificationResult } from '../src/index.js';
import { synthesizeSnpEvidence, synthesizeTdxCollateral, synthesizeTdxEvidence, testMeasurement, synthesizeGpuEvidence } from '../src/testing/index.js';
import { AT, authority, failures, nonce64 } from './helpers.js';

const auth = authority();
const snp = async (o: Parameters<typeof synthesizeSnpEvidence>[1] = {}) => {
  const e = synthesizeSnpEvidence(auth, { reportData: nonce64(), ...o });
  return verifyEvidence({ type: 'snp', ...e, nonce: nonce64(), at: AT, trust: auth.trust });
};

describe('parseAttestationPolicy', () => {
  it('fills defaults: debug forbidden, VMPL 0, 600 s freshness, nonce required', () => {
    const p = parseAttestationPolicy('{"version":1,"snp":{}}');
    expect(p.freshness).toEqual({ maxAgeSeconds: 600, requireNonce: true });
    expect(p.snp).toMatchObject({ allowDebug: false, vmpls: [0], signingKeys: ['vcek', 'vlek'] });
    expect(p.require).toEqual([]);
  });

  it.each([
    ['an unknown field', '{"version":1,"snp":{"alowDebug":true}}'],
    ['a wrong version', '{"version":2}'],
    ['a short measurement', '{"version":1,"snp":{"measurements":["abcd"]}}'],
    ['an unknown evidence type', '{"version":1,"require":["sgx"]}'],
    ['a duplicate key', '{"version":1,"version":1}'],
    ['not JSON', '{version:1}'],
  ])('refuses %s (E_ATTEST_POLICY)', (_w, text) => {
    expect(() => parseAttestationPolicy(text)).toThrow(expect.objectContaining({ code: 'E_ATTEST_POLICY' }));
  });
});

describe('evaluatePolicy', () => {
  it('passes verified evidence that meets every rule', async () => {
    const p = parseAttestationPolicy({ version: 1, require: ['snp'], snp: { measurements: ['a5'.repeat(48)], minTcb: { snp: 8, microcode: 100 }, products: ['Milan'] } });
    const d = evaluatePolicy(p, [await snp()], { at: AT, issuedAt: new Date(AT.getTime() - 30_000) });
    expect(failures(d)).toEqual([]);
  });

  it('refuses DEBUG (E_ATTEST_POLICY_DEBUG) unless allowed', async () => {
    const r = await snp({ policy: 0x30000n | (1n << 19n) });
    expect(failures(evaluatePolicy(parseAttestationPolicy({ version: 1, snp: {} }), [r], { at: AT }))).toEqual(['policy.snp.debug:E_ATTEST_POLICY_DEBUG']);
    expect(evaluatePolicy(parseAttestationPolicy({ version: 1, snp: { allowDebug: true } }), [r], { at: AT }).ok).toBe(true);
  });

  it('refuses a VMPL outside the list (E_ATTEST_POLICY_VMPL)', async () => {
    expect(failures(evaluatePolicy(parseAttestationPolicy({ version: 1, snp: {} }), [await snp({ vmpl: 1 })], { at: AT }))).toEqual(['policy.snp.vmpl:E_ATTEST_POLICY_VMPL']);
  });

  it('refuses a signing key type the policy does not allow (E_ATTEST_SIGNING_KEY)', async () => {
    const p = parseAttestationPolicy({ version: 1, snp: { signingKeys: ['vcek'] } });
    expect(failures(evaluatePolicy(p, [await snp({ signingKey: 'vlek' })], { at: AT }))).toEqual(['policy.snp.signing-key:E_ATTEST_SIGNING_KEY']);
  });

  it('refuses a measurement not allowed (E_ATTEST_MEASUREMENT)', async () => {
    const p = parseAttestationPolicy({ version: 1, snp: { measurements: [testMeasurement('other image')] } });
    expect(failures(evaluatePolicy(p, [await snp()], { at: AT }))).toEqual(['policy.snp.measurement:E_ATTEST_MEASUREMENT']);
  });

  it('refuses a TCB below the minimum per component (E_ATTEST_POLICY_TCB)', async () => {
    const p = parseAttestationPolicy({ version: 1, snp: { minTcb: { microcode: 200 } } });
    const d = evaluatePolicy(p, [await snp()], { at: AT });
    expect(failures(d)).toEqual(['policy.snp.min-tcb:E_ATTEST_POLICY_TCB']);
    expect(d.failure?.detail).toMatch(/microcode 115 < 200/);
  });

  it('refuses provisional firmware unless allowed (E_ATTEST_POLICY_TCB)', async () => {
    const r = await snp({ currentTcb: { bootloader: 3, tee: 0, snp: 8, microcode: 120 } });
    expect(failures(evaluatePolicy(parseAttestationPolicy({ version: 1, snp: {} }), [r], { at: AT }))).toEqual(['policy.snp.committed:E_ATTEST_POLICY_TCB']);
    expect(evaluatePolicy(parseAttestationPolicy({ version: 1, snp: { allowProvisionalFirmware: true } }), [r], { at: AT }).ok).toBe(true);
  });

  it('refuses a migration agent (E_ATTEST_POLICY_VIOLATION)', async () => {
    const r = await snp({ policy: 0x30000n | (1n << 18n) });
    expect(failures(evaluatePolicy(parseAttestationPolicy({ version: 1, snp: {} }), [r], { at: AT }))).toEqual(['policy.snp.migration-agent:E_ATTEST_POLICY_VIOLATION']);
  });

  it('requires every listed evidence type (E_ATTEST_MISSING_EVIDENCE)', async () => {
    const p = parseAttestationPolicy({ version: 1, require: ['snp', 'gpu'] });
    expect(failures(evaluatePolicy(p, [await snp()], { at: AT }))).toEqual(['policy.require.gpu:E_ATTEST_MISSING_EVIDENCE']);
  });

  it('refuses evidence older than the freshness window, or not bound to a nonce (E_ATTEST_STALE)', async () => {
    const p = parseAttestationPolicy({ version: 1, freshness: { maxAgeSeconds: 60 } });
    expect(failures(evaluatePolicy(p, [await snp()], { at: AT, issuedAt: new Date(AT.getTime() - 61_000) }))).toEqual(['policy.freshness:E_ATTEST_STALE']);
    const e = synthesizeSnpEvidence(auth);
    const noNonce = await verifyEvidence({ type: 'snp', ...e, at: AT, trust: auth.trust });
    expect(failures(evaluatePolicy(p, [noNonce], { at: AT }))).toEqual(['policy.snp.nonce:E_ATTEST_STALE']);
  });

  it('refuses evidence that did not verify, with its own code', async () => {
    const e = synthesizeSnpEvidence(auth, { wrongSigner: true, reportData: nonce64() });
    const r = await verifyEvidence({ type: 'snp', ...e, nonce: nonce64(), at: AT, trust: auth.trust });
    expect(failures(evaluatePolicy(parseAttestationPolicy({ version: 1 }), [r], { at: AT }))).toEqual(['policy.snp.verified:E_ATTEST_SIGNATURE']);
  });

  it('TDX: refuses DEBUG, missing collateral, a non-accepted status and an unknown MRTD', async () => {
    const { evidence } = synthesizeTdxEvidence(auth, { reportData: nonce64(), tdAttributes: 1n });
    const r = await verifyEvidence({ type: 'tdx', evidence, nonce: nonce64(), at: AT, trust: auth.trust });
    const p = parseAttestationPolicy({ version: 1, tdx: { mrTd: [testMeasurement('td')] } });
    expect(failures(evaluatePolicy(p, [r], { at: AT }))).toEqual(['policy.tdx.debug:E_ATTEST_POLICY_DEBUG', 'policy.tdx.collateral:E_ATTEST_COLLATERAL', 'policy.tdx.mrtd:E_ATTEST_MEASUREMENT']);
    const ok = await verifyEvidence({ type: 'tdx', evidence: synthesizeTdxEvidence(auth, { reportData: nonce64() }).evidence, collateral: synthesizeTdxCollateral(auth), nonce: nonce64(), at: AT, trust: auth.trust });
    expect(evaluatePolicy(parseAttestationPolicy({ version: 1, tdx: { minTeeTcbSvn: [5, 0, 2] } }), [ok], { at: AT }).ok).toBe(true);
    expect(failures(evaluatePolicy(parseAttestationPolicy({ version: 1, tdx: { minTeeTcbSvn: [6] } }), [ok], { at: AT }))).toEqual(['policy.tdx.tee-tcb-svn:E_ATTEST_POLICY_TCB']);
  });

  it('GPU: requires RIM-compared measurements, allowed RIM ids and a minimum driver', async () => {
    const n = new Uint8Array(32).fill(4);
    const e = synthesizeGpuEvidence(auth, { nonce: n });
    const r: VerificationResult<unknown> = await verifyGpuEvidence({ evidence: e.evidence, certificates: [e.certificates], nonce: n, at: AT, trust: auth.trust });
    const p = parseAttestationPolicy({ version: 1, gpu: { rimIds: ['NV_GPU_DRIVER_GH100_999.0'], minDriverVersion: '560.1' } });
    expect(failures(evaluatePolicy(p, [r], { at: AT }))).toEqual(['policy.gpu.rims:E_ATTEST_MEASUREMENT', 'policy.gpu.rim-ids:E_ATTEST_MEASUREMENT', 'policy.gpu.driver:E_ATTEST_POLICY_TCB']);
  });
});
