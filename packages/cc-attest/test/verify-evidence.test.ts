import { describe, expect, it } from 'vitest';
import { deriveAttestationNonce, parseAttestationPolicy, verifyEvidence } from '../src/index.js';
import { synthesizeSnpEvidence, TestAttester } from '../src/testing/index.js';
import { AT, authority, failures } from './helpers.js';

const auth = authority();
const ekm = new Uint8Array(64).fill(0x5a);

describe('verifyEvidence', () => {
  it.each(['snp', 'tdx', 'gpu'] as const)('verifies %s evidence from the test attester bound to the session nonce', async (type) => {
    const nonce = deriveAttestationNonce(ekm, { type, attester: 'site-1', purpose: 'login' });
    const [e] = await new TestAttester(auth, { type }).collect(nonce);
    const r = await verifyEvidence({ ...e!, nonce, at: AT, trust: auth.trust });
    expect(failures(r)).toEqual([]);
    expect(r.type).toBe(type);
  });

  it('refuses evidence relayed by another participant: its nonce was derived for another name (E_ATTEST_NONCE)', async () => {
    const theirs = deriveAttestationNonce(ekm, { type: 'snp', attester: 'site-2' });
    const [e] = await new TestAttester(auth, { type: 'snp' }).collect(theirs);
    const mine = deriveAttestationNonce(ekm, { type: 'snp', attester: 'site-1' });
    const r = await verifyEvidence({ ...e!, nonce: mine, at: AT, trust: auth.trust });
    expect(r.failure).toMatchObject({ id: 'snp.nonce', code: 'E_ATTEST_NONCE' });
  });

  it('refuses evidence replayed from another session (E_ATTEST_NONCE)', async () => {
    const old = deriveAttestationNonce(new Uint8Array(64).fill(1), { type: 'gpu', attester: 'site-1' });
    const [e] = await new TestAttester(auth, { type: 'gpu' }).collect(old);
    const now = deriveAttestationNonce(new Uint8Array(64).fill(2), { type: 'gpu', attester: 'site-1' });
    expect((await verifyEvidence({ ...e!, nonce: now, at: AT, trust: auth.trust })).failure?.code).toBe('E_ATTEST_NONCE');
  });

  it('turns malformed evidence into a failed parse check instead of throwing', async () => {
    const r = await verifyEvidence({ type: 'snp', evidence: new Uint8Array(10), at: AT });
    expect(r.ok).toBe(false);
    expect(r.failure).toMatchObject({ id: 'snp.parse', code: 'E_ATTEST_MALFORMED' });
  });

  it('appends the policy checks and fails on the first unmet rule', async () => {
    const e = synthesizeSnpEvidence(auth, { vmpl: 2 });
    const r = await verifyEvidence({ type: 'snp', ...e, at: AT, trust: auth.trust, policy: parseAttestationPolicy({ version: 1, freshness: { requireNonce: false }, snp: {} }) });
    expect(failures(r)).toEqual(['policy.snp.vmpl:E_ATTEST_POLICY_VMPL']);
  });

  it('throws TypeError for programmer misuse', async () => {
    await expect(verifyEvidence({ type: 'snp', evidence: new Uint8Array(1), at: new Date('x') })).rejects.toThrow(TypeError);
    await expect(verifyEvidence({ type: 'sgx' as 'snp', evidence: new Uint8Array(1), at: AT })).rejects.toThrow(TypeError);
  });
});
