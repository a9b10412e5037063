import { describe, expect, it } from 'vitest';
import { parseTdxQuote, verifyTdxEvidence, type TdxCollateral } from '../src/index.js';
import { synthesizeTdxCollateral, synthesizeTdxEvidence } from '../src/testing/index.js';
import { AT, authority, failures, nonce64 } from './helpers.js';

const auth = authority();
const verify = (evidence: Uint8Array, extra: Partial<Parameters<typeof verifyTdxEvidence>[0]> = {}) => verifyTdxEvidence({ evidence, at: AT, trust: auth.trust, ...extra });

describe('verifyTdxEvidence: synthetic quotes that verify', () => {
  it.each([4, 5] as const)('quote v%i with PCK chain, QE report, QE binding and quote signature', async (version) => {
    const { evidence } = synthesizeTdxEvidence(auth, { version, reportData: nonce64() });
    const r = await verify(evidence, { nonce: nonce64() });
    expect(failures(r)).toEqual([]);
    expect(r.claims.bodyType).toBe(version === 5 ? 'TDX 1.5' : 'TDX 1.0');
    expect(r.chain.map((c) => c.role)).toEqual(['pck', 'pck-ca', 'root']);
  });

  it('parses by declared sizes: an 8000-byte zero-padded buffer verifies', async () => {
    const { evidence } = synthesizeTdxEvidence(auth, { padding: 8000 - 4900 });
    const r = await verify(evidence);
    expect(r.ok).toBe(true);
    expect(r.claims.quoteLength).toBeLessThan(evidence.length);
  });

  it('with collateral: TCB info and QE identity signed by the TCB signing key give UpToDate', async () => {
    const { evidence } = synthesizeTdxEvidence(auth);
    const r = await verify(evidence, { collateral: synthesizeTdxCollateral(auth) });
    expect(failures(r)).toEqual([]);
    expect(r.claims.tcbStatus).toBe('UpToDate');
    expect(r.claims.qeTcbStatus).toBe('UpToDate');
    expect(r.claims.pck?.fmspc).toBe('00a06d080000');
  });
});

describe('verifyTdxEvidence: each check failing on its own', () => {
  it('refuses a PCK chain not ending at the pinned Intel root (E_ATTEST_CHAIN)', async () => {
    const r = await verifyTdxEvidence({ evidence: synthesizeTdxEvidence(auth).evidence, at: AT });
    expect(failures(r)).toEqual(['tdx.pck-chain:E_ATTEST_CHAIN']);
  });

  it('refuses an expired PCK certificate (E_ATTEST_CERT_EXPIRED)', async () => {
    const r = await verify(synthesizeTdxEvidence(auth, { pckNotAfter: new Date('2029-06-01Z') }).evidence);
    expect(failures(r)).toEqual(['tdx.pck-chain:E_ATTEST_CERT_EXPIRED']);
  });

  it('refuses a QE report not signed by the PCK key (E_ATTEST_SIGNATURE)', async () => {
    expect(failures(await verify(synthesizeTdxEvidence(auth, { wrongPckSigner: true }).evidence))).toEqual(['tdx.qe-report-signature:E_ATTEST_SIGNATURE']);
  });

  it('refuses a QE report that does not bind the attestation key (E_ATTEST_QE_BINDING)', async () => {
    expect(failures(await verify(synthesizeTdxEvidence(auth, { breakQeBinding: true }).evidence))).toEqual(['tdx.qe-binding:E_ATTEST_QE_BINDING']);
  });

  it('refuses a quote not signed by the attestation key (E_ATTEST_SIGNATURE)', async () => {
    expect(failures(await verify(synthesizeTdxEvidence(auth, { wrongAttestationKey: true }).evidence))).toEqual(['tdx.quote-signature:E_ATTEST_SIGNATURE']);
  });

  it('refuses REPORT_DATA without the session nonce (E_ATTEST_NONCE)', async () => {
    expect(failures(await verify(synthesizeTdxEvidence(auth, { reportData: nonce64(1) }).evidence, { nonce: nonce64(2) }))).toEqual(['tdx.nonce:E_ATTEST_NONCE']);
  });

  it('reports OutOfDate when the platform falls to a lower TCB level (E_ATTEST_TCB_STATUS), accepted only if listed', async () => {
    const { evidence } = synthesizeTdxEvidence(auth, { pceSvn: 11 });
    const collateral = synthesizeTdxCollateral(auth, { requirePceSvn: 13 });
    const r = await verify(evidence, { collateral });
    expect(r.claims.tcbStatus).toBe('OutOfDate');
    expect(failures(r)).toEqual(['tdx.tcb-status:E_ATTEST_TCB_STATUS']);
    expect((await verify(evidence, { collateral, acceptedTcbStatuses: ['UpToDate', 'OutOfDate'] })).ok).toBe(true);
  });

  it('refuses when no TCB level matches (E_ATTEST_TCB_STATUS)', async () => {
    const r = await verify(synthesizeTdxEvidence(auth, { pceSvn: 1 }).evidence, { collateral: synthesizeTdxCollateral(auth) });
    expect(failures(r)).toEqual(['tdx.tcb-status:E_ATTEST_TCB_STATUS']);
    expect(r.checks.find((c) => c.id === 'tdx.tcb-status')?.detail).toMatch(/no matching TCB level/);
  });

  it('refuses TCB info with a bad signature (E_ATTEST_COLLATERAL)', async () => {
    const r = await verify(synthesizeTdxEvidence(auth).evidence, { collateral: synthesizeTdxCollateral(auth, { badSignature: true }) });
    expect(failures(r)).toEqual(['tdx.tcb-info:E_ATTEST_COLLATERAL']);
  });

  it('refuses TCB info for another FMSPC (E_ATTEST_COLLATERAL)', async () => {
    const r = await verify(synthesizeTdxEvidence(auth).evidence, { collateral: synthesizeTdxCollateral(auth, { fmspc: '00906ed50000' }) });
    expect(failures(r)).toEqual(['tdx.tcb-info:E_ATTEST_COLLATERAL']);
  });

  it('refuses collateral past its nextUpdate (E_ATTEST_CERT_EXPIRED)', async () => {
    const r = await verify(synthesizeTdxEvidence(auth).evidence, { collateral: synthesizeTdxCollateral(auth, { nextUpdate: new Date('2029-12-01Z') }) });
    expect(failures(r)).toEqual(['tdx.tcb-info:E_ATTEST_CERT_EXPIRED', 'tdx.qe-identity:E_ATTEST_CERT_EXPIRED']);
  });

  it('refuses collateral without its issuer chain, and collateral that is not a PCS response (E_ATTEST_COLLATERAL)', async () => {
    const c = synthesizeTdxCollateral(auth);
    const noChain: TdxCollateral = { tcbInfo: c.tcbInfo, qeIdentity: c.qeIdentity };
    expect(failures(await verify(synthesizeTdxEvidence(auth).evidence, { collateral: noChain }))).toEqual(['tdx.tcb-info:E_ATTEST_COLLATERAL', 'tdx.qe-identity:E_ATTEST_COLLATERAL']);
    const junk: TdxCollateral = { ...c, tcbInfo: '{"tcbInfo":{},"signature":"00"}' };
    expect(failures(await verify(synthesizeTdxEvidence(auth).evidence, { collateral: junk }))).toEqual(['tdx.tcb-info:E_ATTEST_COLLATERAL']);
  });

  it('refuses a QE that is not the one Intel identifies (E_ATTEST_QE_IDENTITY)', async () => {
    const c = synthesizeTdxCollateral(auth);
    const r = await verify(synthesizeTdxEvidence(auth, { qeSvn: 2 }).evidence, { collateral: c });
    expect(failures(r)).toEqual(['tdx.qe-identity:E_ATTEST_QE_IDENTITY']);
  });
});

describe('parseTdxQuote', () => {
  const base = () => Uint8Array.from(synthesizeTdxEvidence(auth).evidence);
  it.each([
    ['version 3 (go-tdx-guest: byte 0x00 = 3)', (b: Uint8Array) => ((b[0] = 3), b), 'E_ATTEST_UNSUPPORTED'],
    ['attestation key type 3', (b: Uint8Array) => ((b[2] = 3), b), 'E_ATTEST_UNSUPPORTED'],
    ['an SGX TEE type', (b: Uint8Array) => ((b[4] = 0), b), 'E_ATTEST_UNSUPPORTED'],
    ['another QE vendor', (b: Uint8Array) => ((b[12] = 0), b), 'E_ATTEST_UNSUPPORTED'],
    ['a signed-data size that disagrees (go-tdx-guest: byte 0x278 = 0x10)', (b: Uint8Array) => ((b[0x278] = 0x10), b), 'E_ATTEST_MALFORMED'],
    ['a truncated buffer', (b: Uint8Array) => b.subarray(0, 1000), 'E_ATTEST_MALFORMED'],
  ])('refuses %s (%s)', (_w, mutate, code) => {
    expect(() => parseTdxQuote(mutate(base()))).toThrow(expect.objectContaining({ code }));
  });

  it('reads the TD 1.5 fields of a v5 quote', () => {
    const q = parseTdxQuote(synthesizeTdxEvidence(auth, { version: 5 }).evidence);
    expect(q.bodyType).toBe(3);
    expect(q.body.teeTcbSvn2).toHaveLength(16);
    expect(q.body.mrServiceTd).toHaveLength(48);
  });
});
