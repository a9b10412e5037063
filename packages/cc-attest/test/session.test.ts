import { describe, expect, it } from 'vitest';
import { encodeAttestationEvidence, parseAttestationEvidence, parseAttestationPolicy, produceSessionEvidence, verifySessionEvidence } from '../src/index.js';
import { synthesizeTdxCollateral, TestAttester } from '../src/testing/index.js';
import { AT, authority } from './helpers.js';

const auth = authority();
const ekm = new Uint8Array(64).fill(0x33);
const policy = parseAttestationPolicy({ version: 1, require: ['snp', 'gpu'], snp: {}, gpu: {} });
const attesters = [new TestAttester(auth, { type: 'snp' }), new TestAttester(auth, { type: 'gpu' })];
const issuedAt = new Date(AT.getTime() - 5_000);

describe('produceSessionEvidence / verifySessionEvidence', () => {
  it('a site with genuine evidence bound to the session passes the policy (through the wire form)', async () => {
    const evidence = await produceSessionEvidence(attesters, { keyingMaterial: ekm, purpose: 'login', self: 'site-1', types: ['snp', 'gpu'] });
    const received = evidence.map((e) => parseAttestationEvidence(JSON.parse(JSON.stringify(encodeAttestationEvidence(e)))));
    const v = await verifySessionEvidence({ keyingMaterial: ekm, purpose: 'login', peer: 'site-1', evidence: received, policy, at: AT, issuedAt, trust: auth.trust });
    expect(v.failure).toBeUndefined();
    expect(v.ok).toBe(true);
    expect(v.results.map((r) => r.type)).toEqual(['snp', 'gpu']);
  });

  it('refuses evidence another site produced (relay: E_ATTEST_NONCE)', async () => {
    const evidence = await produceSessionEvidence(attesters, { keyingMaterial: ekm, purpose: 'login', self: 'site-2', types: ['snp', 'gpu'] });
    const v = await verifySessionEvidence({ keyingMaterial: ekm, purpose: 'login', peer: 'site-1', evidence, policy, at: AT, issuedAt, trust: auth.trust });
    expect(v.ok).toBe(false);
    expect(v.failure?.code).toBe('E_ATTEST_NONCE');
  });

  it('refuses evidence made for another purpose (login evidence replayed at deploy: E_ATTEST_NONCE)', async () => {
    const evidence = await produceSessionEvidence(attesters, { keyingMaterial: ekm, purpose: 'login', self: 'site-1', types: ['snp', 'gpu'] });
    const v = await verifySessionEvidence({ keyingMaterial: ekm, purpose: 'deploy:job-1', peer: 'site-1', evidence, policy, at: AT, issuedAt, trust: auth.trust });
    expect(v.failure?.code).toBe('E_ATTEST_NONCE');
  });

  it('refuses a site with failing evidence: debug guest (E_ATTEST_POLICY_DEBUG), missing GPU (E_ATTEST_MISSING_EVIDENCE), stale (E_ATTEST_STALE)', async () => {
    const debug = [new TestAttester(auth, { type: 'snp', snp: { policy: 0x30000n | (1n << 19n) } }), attesters[1]!];
    const e1 = await produceSessionEvidence(debug, { keyingMaterial: ekm, purpose: 'login', self: 'site-1', types: ['snp', 'gpu'] });
    expect((await verifySessionEvidence({ keyingMaterial: ekm, purpose: 'login', peer: 'site-1', evidence: e1, policy, at: AT, issuedAt, trust: auth.trust })).failure?.code).toBe('E_ATTEST_POLICY_DEBUG');
    const e2 = await produceSessionEvidence(attesters, { keyingMaterial: ekm, purpose: 'login', self: 'site-1', types: ['snp'] });
    expect((await verifySessionEvidence({ keyingMaterial: ekm, purpose: 'login', peer: 'site-1', evidence: e2, policy, at: AT, issuedAt, trust: auth.trust })).failure?.code).toBe('E_ATTEST_MISSING_EVIDENCE');
    const e3 = await produceSessionEvidence(attesters, { keyingMaterial: ekm, purpose: 'login', self: 'site-1', types: ['snp', 'gpu'] });
    const late = await verifySessionEvidence({ keyingMaterial: ekm, purpose: 'login', peer: 'site-1', evidence: e3, policy, at: AT, issuedAt: new Date(AT.getTime() - 3_600_000), trust: auth.trust });
    expect(late.failure?.code).toBe('E_ATTEST_STALE');
  });

  it('TDX with the site collateral and an accepted OutOfDate status', async () => {
    const tdx = [new TestAttester(auth, { type: 'tdx', tdx: { pceSvn: 11 } })];
    const p = parseAttestationPolicy({ version: 1, require: ['tdx'], tdx: { acceptedTcbStatuses: ['UpToDate', 'OutOfDate'] } });
    const evidence = await produceSessionEvidence(tdx, { keyingMaterial: ekm, purpose: 'periodic:1', self: 'server', types: ['tdx'] });
    const v = await verifySessionEvidence({ keyingMaterial: ekm, purpose: 'periodic:1', peer: 'server', evidence, policy: p, at: AT, issuedAt, trust: auth.trust, tdxCollateral: synthesizeTdxCollateral(auth, { requirePceSvn: 13 }) });
    expect(v.failure).toBeUndefined();
    expect(v.results[0]?.claims['tcbStatus']).toBe('OutOfDate');
  });

  it('fails clearly when no attester can produce a required type (E_ATTEST_ATTESTER)', async () => {
    await expect(produceSessionEvidence([attesters[0]!], { keyingMaterial: ekm, purpose: 'login', self: 'x', types: ['gpu'] })).rejects.toMatchObject({ code: 'E_ATTEST_ATTESTER' });
  });
});
