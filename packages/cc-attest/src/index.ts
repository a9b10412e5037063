// @flare/cc-attest: offline verification of AMD SEV-SNP, Intel TDX and NVIDIA GPU attestation evidence
// against pinned vendor roots, attestation policy, session-bound nonces, attesters and the kit builder.
// Flat named exports only (house style).

// One entry point for every evidence type, and the policy.
export { verifyEvidence } from './verify-evidence.js';
export type { VerifyEvidenceOptions } from './verify-evidence.js';
export { AttestationPolicySchema, evaluatePolicy, parseAttestationPolicy } from './policy.js';
export type { AttestationPolicy, AttestationPolicyInput, PolicyContext, PolicyDecision } from './policy.js';
export { ATTESTATION_EXPORTER_LABEL, ATTESTATION_EXPORTER_LENGTH, deriveAttestationNonce } from './nonce.js';
export { produceSessionEvidence, verifySessionEvidence } from './session.js';
export type { SessionBinding, SessionVerdict, SessionVerification } from './session.js';
export type { NonceContext } from './nonce.js';
export type { Check, CheckStatus } from './check.js';
export type { ChainEntry } from './cert.js';
export type { EvidenceType, VerificationResult } from './result.js';

// Trust anchors.
export { VENDOR_TRUST } from './trust.js';
export type { TrustAnchors } from './trust.js';
export {
  AMD_ARK_GENOA,
  AMD_ARK_MILAN,
  AMD_ARK_TURIN,
  AMD_ASK_GENOA,
  AMD_ASK_MILAN,
  AMD_ASK_TURIN,
  AMD_ASVK_GENOA,
  AMD_ASVK_MILAN,
  AMD_ASVK_TURIN,
  INTEL_SGX_ROOT_CA,
  NVIDIA_DEVICE_IDENTITY_CA,
  NVIDIA_RIM_ROOT_CA,
} from './roots.js';
export type { PinnedCertificate } from './roots.js';
export { clearCertificateCache } from './cert.js';

// AMD SEV-SNP.
export { verifySnpEvidence } from './snp/verify.js';
export type { SnpClaims, SnpVerifyOptions } from './snp/verify.js';
export { parseSnpReport, SNP_REPORT_SIZE } from './snp/report.js';
export type { SnpGuestPolicy, SnpReport, SnpSigningKey } from './snp/report.js';
export { decodeSnpTcb } from './snp/tcb.js';
export type { SnpProduct, SnpTcb } from './snp/tcb.js';

// Intel TDX.
export { verifyTdxEvidence } from './tdx/verify.js';
export type { TdxClaims, TdxCollateral, TdxVerifyOptions } from './tdx/verify.js';
export { INTEL_QE_VENDOR_ID, parseTdxQuote } from './tdx/quote.js';
export type { SgxReportBody, TdReportBody, TdxQuote } from './tdx/quote.js';
export { evaluateQeIdentity, evaluateTdxTcb, parseTdxQeIdentity, parseTdxTcbInfo, TDX_TCB_STATUSES } from './tdx/collateral.js';
export type { SignedCollateral, TdxQeIdentity, TdxTcbEvaluation, TdxTcbInfo, TdxTcbStatus } from './tdx/collateral.js';
export type { PckTcb } from './tdx/pck.js';

// NVIDIA GPU.
export { certificateFwid, parseGpuEvidenceBundle, verifyGpuEvidence } from './gpu/verify.js';
export type { GpuArch, GpuClaims, GpuEvidenceEntry, GpuVerifyOptions } from './gpu/verify.js';
export { formatVbiosVersion, parseSpdmEvidence, SPDM_REQUEST_SIZE } from './gpu/spdm.js';
export type { SpdmEvidence, SpdmMeasurementBlock } from './gpu/spdm.js';
export { verifyRim } from './gpu/rim.js';
export type { Rim, RimMeasurement, RimOutcome } from './gpu/rim.js';

// Network access (only when asked).
export { createCachingFetcher, VENDOR_HOSTS } from './fetcher.js';
export type { CachingFetcherOptions, CollateralFetcher, FetchedDocument, FetchResponse } from './fetcher.js';

// Attesters.
export { AttestationEvidenceWire, encodeAttestationEvidence, parseAttestationEvidence } from './attesters/attester.js';
export type { AttestationEvidence, AttestationEvidenceJson, Attester } from './attesters/attester.js';
export { ConfigfsTsmAttester, parseSnpCertTable } from './attesters/configfs-tsm.js';
export type { ConfigfsTsmOptions, TsmFileSystem } from './attesters/configfs-tsm.js';
export { ExternalCommandAttester } from './attesters/external-command.js';
export type { ExternalCommandOptions } from './attesters/external-command.js';
// Test attester and synthetic evidence: the `@flare/cc-attest/testing` subpath.

// Provisioning.
export { ATTESTATION_POLICY_KIT_PATH, attestationPolicyKitBuilder, CC_BUILDER_PATHS } from './kit-builder.js';
export { attestationPolicyOverride, loadAttestationPolicy, resolveAttestationPolicy } from './policy-file.js';
export { assertAtLeastAsStrict, STRICTNESS_RULES } from './strictness.js';
