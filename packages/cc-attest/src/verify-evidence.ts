import { AttestError } from '@flare/core';
import type { Check } from './check.js';
import type { CollateralFetcher } from './fetcher.js';
import { verifyGpuEvidence } from './gpu/verify.js';
import { evaluatePolicy, type AttestationPolicy } from './policy.js';
import type { EvidenceType, VerificationResult } from './result.js';
import type { SnpProduct } from './snp/tcb.js';
import { verifySnpEvidence } from './snp/verify.js';
import type { TdxCollateral } from './tdx/verify.js';
import type { TdxTcbStatus } from './tdx/collateral.js';
import { verifyTdxEvidence } from './tdx/verify.js';
import type { TrustAnchors } from './trust.js';

/** Inputs of {@link verifyEvidence}: the evidence, what verifies it, and when. */
export interface VerifyEvidenceOptions {
  readonly type: EvidenceType;
  /** SNP report (or Azure HCL report), TDX quote, or SPDM request||response. */
  readonly evidence: Uint8Array;
  /** SNP: VCEK/VLEK (and optionally ASK/ASVK, ARK). GPU: the device chain, leaf first. PEM or DER. */
  readonly certificates?: ReadonlyArray<Uint8Array | string>;
  /** SNP: the ARK-signed CRL (DER). */
  readonly crl?: Uint8Array;
  /** TDX: PCS collateral. */
  readonly collateral?: TdxCollateral;
  /** GPU: driver and VBIOS RIMs (XML). */
  readonly rims?: readonly string[];
  /** The nonce expected in the evidence, normally from {@link deriveAttestationNonce}. */
  readonly nonce?: Uint8Array;
  /** Verification time (tests pin it; certificates and collateral are judged at this instant). */
  readonly at: Date;
  /** When the nonce was issued, for the policy's freshness window. */
  readonly issuedAt?: Date;
  /** The site's policy; when given, the result includes its checks and is ok only if it is met. */
  readonly policy?: AttestationPolicy;
  /** SNP: the expected product. */
  readonly product?: SnpProduct;
  /** SNP: the expected machine stepping. */
  readonly stepping?: number;
  /** TDX: statuses accepted by the `tdx.tcb-status` check (default: the policy's, else UpToDate only). */
  readonly acceptedTcbStatuses?: readonly TdxTcbStatus[];
  /** GPU: RIM indices whose mismatch is tolerated (default: the policy's, else none). */
  readonly allowedMismatchIndices?: readonly number[];
  /** Network access to vendor services, only when given. */
  readonly fetcher?: CollateralFetcher;
  /** Trust anchors (default: the pinned vendor roots). */
  readonly trust?: TrustAnchors;
}

/**
 * Verifies one piece of attestation evidence of any supported type, and applies a policy when given. It
 * does not throw for evidence that fails: the result lists every check, `ok`, and the first failure with
 * its code (malformed evidence gives a failed `<type>.parse` check). It throws only for programmer misuse.
 *
 * This is the seam the runtime gates logins, deploys and periodic checks on: derive the nonce with
 * {@link deriveAttestationNonce} from the session's exported keying material, ask the peer's attester for
 * evidence with it, and call this with the same nonce.
 *
 * @example
 * ```ts
 * const nonce = deriveAttestationNonce(ekm, { type: 'snp', attester: peerName, purpose: 'login' });
 * const result = await verifyEvidence({ type: 'snp', evidence, certificates, nonce, at: new Date(), policy });
 * if (!result.ok) throw new AttestError(result.failure!.code!, result.failure!.detail);
 * ```
 */
export async function verifyEvidence(options: VerifyEvidenceOptions): Promise<VerificationResult> {
  if (!(options.at instanceof Date) || Number.isNaN(options.at.getTime())) throw new TypeError('"at" expected a valid Date');
  if (!(options.evidence instanceof Uint8Array)) throw new TypeError('"evidence" expected a Uint8Array');
  const p = options.policy;
  const common = {
    evidence: options.evidence,
    at: options.at,
    ...(options.nonce !== undefined ? { nonce: options.nonce } : {}),
    ...(options.fetcher !== undefined ? { fetcher: options.fetcher } : {}),
    ...(options.trust !== undefined ? { trust: options.trust } : {}),
  };
  let result: VerificationResult<unknown>;
  try {
    switch (options.type) {
      case 'snp':
        result = await verifySnpEvidence({
          ...common,
          ...(options.certificates !== undefined ? { certificates: options.certificates } : {}),
          ...(options.crl !== undefined ? { crl: options.crl } : {}),
          ...(options.product !== undefined ? { product: options.product } : {}),
          ...(options.stepping !== undefined ? { stepping: options.stepping } : {}),
        });
        break;
      case 'tdx':
        result = await verifyTdxEvidence({
          ...common,
          ...(options.collateral !== undefined ? { collateral: options.collateral } : {}),
          ...(options.acceptedTcbStatuses !== undefined ? { acceptedTcbStatuses: options.acceptedTcbStatuses } : p?.tdx ? { acceptedTcbStatuses: p.tdx.acceptedTcbStatuses } : {}),
        });
        break;
      case 'gpu':
        result = await verifyGpuEvidence({
          ...common,
          certificates: options.certificates ?? [],
          ...(options.rims !== undefined ? { rims: options.rims } : {}),
          ...(options.allowedMismatchIndices !== undefined ? { allowedMismatchIndices: options.allowedMismatchIndices } : p?.gpu ? { allowedMismatchIndices: p.gpu.allowedMismatchIndices } : {}),
        });
        break;
      default:
        throw new TypeError(`"type" expected snp, tdx or gpu, got ${JSON.stringify(options.type)}`);
    }
  } catch (e) {
    if (!(e instanceof AttestError)) throw e;
    const check: Check = { id: `${options.type}.parse`, status: 'fail', code: e.code, detail: e.message };
    result = { type: options.type, ok: false, checks: [check], failure: check, claims: {}, chain: [], at: options.at.toISOString(), trust: options.trust?.label ?? 'vendor' };
  }
  if (p === undefined) return result as VerificationResult;
  const decision = evaluatePolicy(p, [result], { at: options.at, checkRequired: false, ...(options.issuedAt !== undefined ? { issuedAt: options.issuedAt } : {}) });
  const checks = [...result.checks, ...decision.checks.filter((c) => !c.id.endsWith('.verified'))];
  const failure = checks.find((c) => c.status === 'fail');
  return { ...(result as VerificationResult), ok: failure === undefined, checks, failure };
}
