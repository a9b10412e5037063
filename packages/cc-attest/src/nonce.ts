import { hkdfSync } from 'node:crypto';
import type { EvidenceType } from './result.js';

/** The exporter label the runtime passes to @flare/auth's `session.exportKeyingMaterial(label, 64)`. */
export const ATTESTATION_EXPORTER_LABEL = 'flare attestation';
/** Bytes of keying material {@link deriveAttestationNonce} expects. */
export const ATTESTATION_EXPORTER_LENGTH = 64;

/** Who is attesting, for {@link deriveAttestationNonce}. */
export interface NonceContext {
  /** The evidence type: SNP and TDX take 64 bytes of REPORT_DATA, the GPU's SPDM request nonce 32. */
  readonly type: EvidenceType;
  /** The authenticated name of the participant producing the evidence (its certificate CN). */
  readonly attester: string;
  /** Distinguishes several attestations in one session (e.g. "login", "deploy:job-7", "periodic:3"). */
  readonly purpose?: string;
}

/**
 * Derives the nonce that goes into REPORT_DATA (SNP, TDX) or the SPDM request (GPU) from keying material
 * exported from the authenticated session, so evidence is bound to that session and to the participant
 * that produced it: evidence replayed from another session, relayed by another peer, or reflected back to
 * the peer that produced it carries a different nonce and fails the `*.nonce` check (E_ATTEST_NONCE).
 * FLARE's own nonce was random and not bound to the authenticated name; this closes that gap.
 *
 * HKDF-SHA512 (RFC 5869) with the exported keying material as input key material and an info string naming
 * the type, attester and purpose (each length-prefixed so no two contexts share an encoding).
 * Both sides compute it: the attester to request evidence, the verifier to check it.
 *
 * @param keyingMaterial 64 bytes from `session.exportKeyingMaterial('flare attestation', 64)` of @flare/auth
 *   (the same value on both ends of the session; never sent on the wire).
 * @returns 64 bytes for snp and tdx, 32 bytes for gpu.
 * @example
 * ```ts
 * const ekm = session.exportKeyingMaterial(ATTESTATION_EXPORTER_LABEL, ATTESTATION_EXPORTER_LENGTH);
 * const nonce = deriveAttestationNonce(ekm, { type: 'snp', attester: 'site-1', purpose: 'login' });
 * ```
 */
export function deriveAttestationNonce(keyingMaterial: Uint8Array, context: NonceContext): Uint8Array {
  if (!(keyingMaterial instanceof Uint8Array) || keyingMaterial.length < 32) {
    throw new RangeError(`"keyingMaterial" expected at least 32 bytes of exported keying material, got ${keyingMaterial?.length}`);
  }
  if (typeof context.attester !== 'string' || context.attester.length === 0) throw new TypeError('"attester" expected the authenticated participant name');
  const field = (s: string) => {
    const b = Buffer.from(s, 'utf8');
    const len = Buffer.alloc(2);
    len.writeUInt16BE(b.length);
    return Buffer.concat([len, b]);
  };
  const info = Buffer.concat([Buffer.from('flare-ts attestation nonce v1', 'latin1'), field(context.type), field(context.attester), field(context.purpose ?? '')]);
  return new Uint8Array(hkdfSync('sha512', keyingMaterial, new Uint8Array(0), info, context.type === 'gpu' ? 32 : 64));
}
