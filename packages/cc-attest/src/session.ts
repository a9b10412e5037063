import { AttestError } from '@flare/core';
import type { AttestationEvidence, Attester } from './attesters/attester.js';
import type { Check } from './check.js';
import type { CollateralFetcher } from './fetcher.js';
import { deriveAttestationNonce } from './nonce.js';
import { evaluatePolicy, type AttestationPolicy, type PolicyDecision } from './policy.js';
import type { VerificationResult } from './result.js';
import type { TdxCollateral } from './tdx/verify.js';
import type { TrustAnchors } from './trust.js';
import { verifyEvidence } from './verify-evidence.js';

// The two halves of an attestation exchange inside an authenticated session, for @flare/runtime: the attesting
// side produces evidence bound to the session, the verifying side checks it against its own policy. The
// runtime only carries `AttestationEvidence` (its wire form: encodeAttestationEvidence /
// parseAttestationEvidence) and decides what to do with the decision (refuse, stop, audit).

/** What both sides agree on without sending it: the session's exported keying material and the purpose. */
export interface SessionBinding {
  /** 64 bytes from `session.exportKeyingMaterial(ATTESTATION_EXPORTER_LABEL, ATTESTATION_EXPORTER_LENGTH)`. */
  readonly keyingMaterial: Uint8Array;
  /** Why evidence is asked for: "login", "deploy:<job id>", "periodic:<n>". Both sides must use the same. */
  readonly purpose: string;
}

/**
 * Attesting side: runs each attester with the nonce derived for (session, own authenticated name, purpose,
 * type) and returns all evidence to send.
 *
 * @param self this participant's authenticated name (its certificate CN), as the peer knows it.
 * @throws AttestError E_ATTEST_ATTESTER when an attester fails
 */
export async function produceSessionEvidence(attesters: ReadonlyArray<Attester & { readonly type?: string }>, binding: SessionBinding & { readonly self: string; readonly types: ReadonlyArray<'snp' | 'tdx' | 'gpu'> }): Promise<AttestationEvidence[]> {
  const out: AttestationEvidence[] = [];
  for (const type of binding.types) {
    const nonce = deriveAttestationNonce(binding.keyingMaterial, { type, attester: binding.self, purpose: binding.purpose });
    const candidates = attesters.filter((a) => a.type === undefined || a.type === type);
    let produced = false;
    for (const a of candidates) {
      const evidence = (await a.collect(nonce)).filter((e) => e.type === type);
      if (evidence.length > 0) {
        out.push(...evidence);
        produced = true;
        break;
      }
    }
    if (!produced) throw new AttestError('E_ATTEST_ATTESTER', `no attester produced ${type} evidence`);
  }
  return out;
}

/** Inputs of {@link verifySessionEvidence}. */
export interface SessionVerification extends SessionBinding {
  /** The peer's authenticated name (from its certificate and session, never from a message field). */
  readonly peer: string;
  readonly evidence: readonly AttestationEvidence[];
  readonly policy: AttestationPolicy;
  readonly at: Date;
  /** When this side asked for the evidence (the policy's freshness window starts here). */
  readonly issuedAt: Date;
  /** TDX collateral this site keeps (PCS TCB info, QE identity, issuer chain, CRLs). */
  readonly tdxCollateral?: TdxCollateral;
  readonly fetcher?: CollateralFetcher;
  /** Test authority trust for `flare poc --attest test`; the pinned vendor roots otherwise. */
  readonly trust?: TrustAnchors;
}

/** The verifying side's conclusion: every result, the policy decision, and the reason to report when refused. */
export interface SessionVerdict {
  readonly ok: boolean;
  readonly results: readonly VerificationResult[];
  readonly decision: PolicyDecision;
  /** The first failed check (verification or policy), with its code: what to refuse with and audit. */
  readonly failure: Check | undefined;
}

/**
 * Verifying side: checks each piece of the peer's evidence with the nonce derived for (session, peer name,
 * purpose, type), then applies this site's policy (required types, rules, freshness). Never throws for bad
 * evidence: refuse when `ok` is false, with `failure.code` and `failure.detail` in the audit event.
 *
 * @example
 * ```ts
 * const verdict = await verifySessionEvidence({ keyingMaterial: ekm, purpose: 'login', peer: 'site-1',
 *   evidence: received.map(parseAttestationEvidence), policy, at: new Date(), issuedAt });
 * if (!verdict.ok) throw new AttestError(verdict.failure!.code!, `site-1: ${verdict.failure!.detail}`);
 * ```
 */
export async function verifySessionEvidence(v: SessionVerification): Promise<SessionVerdict> {
  const results: VerificationResult[] = [];
  for (const e of v.evidence.slice(0, 64)) {
    results.push(
      await verifyEvidence({
        type: e.type,
        evidence: e.evidence,
        certificates: e.certificates,
        nonce: deriveAttestationNonce(v.keyingMaterial, { type: e.type, attester: v.peer, purpose: v.purpose }),
        at: v.at,
        ...(e.rims !== undefined ? { rims: e.rims } : {}),
        ...(e.type === 'tdx' && v.tdxCollateral !== undefined ? { collateral: v.tdxCollateral } : {}),
        ...(v.fetcher !== undefined ? { fetcher: v.fetcher } : {}),
        ...(v.trust !== undefined ? { trust: v.trust } : {}),
        ...(v.policy.tdx ? { acceptedTcbStatuses: v.policy.tdx.acceptedTcbStatuses } : {}),
        ...(v.policy.gpu ? { allowedMismatchIndices: v.policy.gpu.allowedMismatchIndices } : {}),
      }),
    );
  }
  const decision = evaluatePolicy(v.policy, results, { at: v.at, issuedAt: v.issuedAt });
  const failure = decision.failure;
  return { ok: decision.ok, results, decision, failure };
}
