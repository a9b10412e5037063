import { AttestError } from '@flare/core';
import { z } from 'zod';
import type { EvidenceType } from '../result.js';

/**
 * Evidence as an attester produces it and as the runtime ships it to the verifying peer: the raw evidence
 * and what is needed to verify it offline (certificates, RIMs).
 */
export interface AttestationEvidence {
  readonly type: EvidenceType;
  readonly evidence: Uint8Array;
  /** PEM certificates: SNP VCEK/VLEK (and ASK/ARK when known), GPU device chain leaf first; none for TDX. */
  readonly certificates: readonly string[];
  /** GPU driver and VBIOS RIMs (XML), when the attester has them. */
  readonly rims?: readonly string[];
  /** Versions reported by the driver (GPU), compared with the evidence. */
  readonly reported?: { readonly driverVersion?: string; readonly vbiosVersion?: string };
}

/**
 * Produces evidence about the local platform bound to a nonce: the configfs-tsm attester (SNP, TDX), the
 * external-command attester (GPUs through the vendor tool) and the test attester (synthetic evidence).
 */
export interface Attester {
  /** A label for logs and audit events (e.g. "configfs-tsm", "external:nvidia-gpu", "test:snp"). */
  readonly name: string;
  /**
   * Evidence with `nonce` inside (REPORT_DATA for SNP and TDX, 64 bytes; the SPDM nonce for GPUs, 32 bytes).
   * One entry per device (a machine with 8 GPUs returns 8).
   * @throws AttestError E_ATTEST_ATTESTER
   */
  collect(nonce: Uint8Array, options?: { readonly signal?: AbortSignal }): Promise<AttestationEvidence[]>;
}

const MAX_EVIDENCE = 64 * 1024;
const MAX_CERTS = 32 * 1024;

// One or more PEM certificates (a GPU chain travels as one bundle). The base64 class excludes '-', so the
// pattern runs in linear time.
const pem = z.string().max(MAX_CERTS).regex(/^\s*(?:-----BEGIN CERTIFICATE-----[A-Za-z0-9+/=\s]+-----END CERTIFICATE-----\s*)+$/, 'expected PEM certificates');
const base64 = z.string().max(Math.ceil(MAX_EVIDENCE / 3) * 4 + 4).regex(/^[A-Za-z0-9+/]*={0,2}$/, 'expected base64');

/** The wire form of {@link AttestationEvidence} (JSON): evidence as base64, every size bounded. */
export const AttestationEvidenceWire = z.strictObject({
  type: z.enum(['snp', 'tdx', 'gpu']),
  evidence: base64,
  certificates: z.array(pem).max(8),
  rims: z.array(z.string().max(1 << 20)).max(4).optional(),
  reported: z.strictObject({ driverVersion: z.string().max(64).optional(), vbiosVersion: z.string().max(64).optional() }).optional(),
});
/** The JSON shape of {@link AttestationEvidenceWire}. */
export type AttestationEvidenceJson = z.input<typeof AttestationEvidenceWire>;

/** Converts evidence to its JSON wire form. */
export function encodeAttestationEvidence(e: AttestationEvidence): AttestationEvidenceJson {
  return {
    type: e.type,
    evidence: Buffer.from(e.evidence).toString('base64'),
    certificates: [...e.certificates],
    ...(e.rims !== undefined ? { rims: [...e.rims] } : {}),
    ...(e.reported !== undefined ? { reported: { ...e.reported } } : {}),
  };
}

/**
 * Validates evidence received from a peer (unknown until parsed): refuses unknown fields and oversized
 * values before decoding anything. @throws AttestError E_ATTEST_MALFORMED
 */
export function parseAttestationEvidence(value: unknown): AttestationEvidence {
  const parsed = AttestationEvidenceWire.safeParse(value);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new AttestError('E_ATTEST_MALFORMED', `attestation evidence field "${issue.path.join('.') || '(root)'}": ${issue.message}`);
  }
  const d = parsed.data;
  return {
    type: d.type,
    evidence: new Uint8Array(Buffer.from(d.evidence, 'base64')),
    certificates: d.certificates,
    ...(d.rims !== undefined ? { rims: d.rims } : {}),
    ...(d.reported !== undefined ? { reported: Object.fromEntries(Object.entries(d.reported).filter(([, v]) => v !== undefined)) } : {}),
  };
}
