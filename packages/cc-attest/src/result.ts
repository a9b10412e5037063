import type { ChainEntry } from './cert.js';
import type { Check } from './check.js';

/** The evidence types this package verifies. */
export type EvidenceType = 'snp' | 'tdx' | 'gpu';

/**
 * What a verifier concluded. `ok` is true only when no check failed; `failure` is the first failed check
 * (its `code` is the reason to report). `claims` holds the parsed fields (byte strings as lowercase hex) for
 * policies and for `flare attest verify --json`; `chain` the certificates used, leaf first.
 */
export interface VerificationResult<C = Record<string, unknown>> {
  readonly type: EvidenceType;
  readonly ok: boolean;
  readonly checks: readonly Check[];
  readonly failure: Check | undefined;
  readonly claims: C;
  readonly chain: readonly ChainEntry[];
  /** The verification time that was used (ISO 8601). */
  readonly at: string;
  /** Which trust anchors were used ("vendor" for the pinned vendor roots). */
  readonly trust: string;
}
