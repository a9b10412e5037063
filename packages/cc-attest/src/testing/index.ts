// @flare/cc-attest/testing: synthetic evidence and a test attester, for tests and for `flare poc --attest
// test`. Evidence made here is signed by a test authority, never by a vendor: a verifier trusts it only when
// it is handed that authority's roots INSTEAD of the pinned vendor roots. Never use it in production.

export { TestAttester, testMeasurement } from '../attesters/test-attester.js';
export type { TestAttesterOptions } from '../attesters/test-attester.js';
export { createTestAuthority, loadTestAuthority, serializeTestAuthority } from '../synthetic/authority.js';
export type { Issued, TestAuthority, TestAuthorityOptions } from '../synthetic/authority.js';
export type { SigningKey } from '../synthetic/certs.js';
export { synthesizeSnpEvidence } from '../synthetic/snp.js';
export type { SnpSynthesisOptions, SyntheticSnpEvidence, SyntheticTcb } from '../synthetic/snp.js';
export { synthesizeTdxCollateral, synthesizeTdxEvidence, SYNTHETIC_QE_MRSIGNER } from '../synthetic/tdx.js';
export type { TdxCollateralSynthesisOptions, TdxSynthesisOptions } from '../synthetic/tdx.js';
export { defaultGpuMeasurements, synthesizeGpuEvidence, synthesizeRim } from '../synthetic/gpu.js';
export type { GpuSynthesisOptions, RimSynthesisOptions } from '../synthetic/gpu.js';
