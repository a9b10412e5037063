// @flare/cc-attest: offline verification of AMD SEV-SNP, Intel TDX and NVIDIA GPU attestation evidence, with
// attestation policy. Flat named exports only (house style).
export { verifySnpEvidence } from './snp/verify.js';
export type { SnpClaims, SnpVerifyOptions } from './snp/verify.js';
export { parseSnpReport, SNP_REPORT_SIZE } from './snp/report.js';
export type { SnpGuestPolicy, SnpReport, SnpSigningKey } from './snp/report.js';
export { decodeSnpTcb } from './snp/tcb.js';
export type { SnpProduct, SnpTcb } from './snp/tcb.js';
export { VENDOR_TRUST } from './trust.js';
export type { TrustAnchors } from './trust.js';
export type { Check, CheckStatus } from './check.js';
export type { ChainEntry } from './cert.js';
export type { EvidenceType, VerificationResult } from './result.js';
export { createCachingFetcher, VENDOR_HOSTS } from './fetcher.js';
export type { CachingFetcherOptions, CollateralFetcher } from './fetcher.js';
export type { FetchedDocument } from './fetcher.js';
export { verifyTdxEvidence } from './tdx/verify.js';
export type { TdxClaims, TdxCollateral, TdxVerifyOptions } from './tdx/verify.js';
export { parseTdxQuote, INTEL_QE_VENDOR_ID } from './tdx/quote.js';
export type { SgxReportBody, TdReportBody, TdxQuote } from './tdx/quote.js';
export { evaluateQeIdentity, evaluateTdxTcb, parseTdxQeIdentity, parseTdxTcbInfo, TDX_TCB_STATUSES } from './tdx/collateral.js';
export type { SignedCollateral, TdxQeIdentity, TdxTcbEvaluation, TdxTcbInfo, TdxTcbStatus } from './tdx/collateral.js';
export type { PckTcb } from './tdx/pck.js';
export { certificateFwid, parseGpuEvidenceBundle, verifyGpuEvidence } from './gpu/verify.js';
export type { GpuArch, GpuClaims, GpuEvidenceEntry, GpuVerifyOptions } from './gpu/verify.js';
export { formatVbiosVersion, parseSpdmEvidence, SPDM_REQUEST_SIZE } from './gpu/spdm.js';
export type { SpdmEvidence, SpdmMeasurementBlock } from './gpu/spdm.js';
export { verifyRim } from './gpu/rim.js';
export type { Rim, RimMeasurement, RimOutcome } from './gpu/rim.js';
