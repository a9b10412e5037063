import { AttestError } from '@flare/core';
import { isZero, Reader } from '../bytes.js';
import { decodeSnpTcb, productFromCpuid, type SnpProduct, type SnpTcb } from './tcb.js';

// AMD SEV-SNP ATTESTATION_REPORT (SEV Secure Nested Paging Firmware ABI Specification, pub. 56860, the
// ATTESTATION_REPORT table; offsets as in google/go-sev-guest abi/abi.go ReportToProto). 1184 bytes, all
// integers little-endian; the signature covers bytes 0x000..0x29F.

/** Size of an ATTESTATION_REPORT. */
export const SNP_REPORT_SIZE = 0x4a0;
/** End of the signed range: the signature field starts here. */
export const SNP_SIGNED_END = 0x2a0;

/** GUEST_POLICY bits (ABI 56860; go-sev-guest abi.go ParseSnpPolicy). */
export interface SnpGuestPolicy {
  readonly abiMinor: number;
  readonly abiMajor: number;
  readonly smt: boolean;
  readonly migrateMa: boolean;
  readonly debug: boolean;
  readonly singleSocket: boolean;
  readonly cxlAllow: boolean;
  readonly memAes256Xts: boolean;
  readonly raplDis: boolean;
  readonly ciphertextHiding: boolean;
  readonly pageSwapDisable: boolean;
}

/** The key that signed a report, from signer info bits 2-4. */
export type SnpSigningKey = 'vcek' | 'vlek' | 'none';

/** A parsed SEV-SNP attestation report. Byte fields are views into the input buffer. */
export interface SnpReport {
  readonly version: number;
  readonly guestSvn: number;
  readonly policy: bigint;
  readonly guestPolicy: SnpGuestPolicy;
  readonly familyId: Uint8Array;
  readonly imageId: Uint8Array;
  readonly vmpl: number;
  readonly signatureAlgo: number;
  readonly currentTcbRaw: bigint;
  readonly platformInfo: bigint;
  readonly authorKeyEn: boolean;
  readonly maskChipKey: boolean;
  readonly signingKey: SnpSigningKey;
  readonly reportData: Uint8Array;
  readonly measurement: Uint8Array;
  readonly hostData: Uint8Array;
  readonly idKeyDigest: Uint8Array;
  readonly authorKeyDigest: Uint8Array;
  readonly reportId: Uint8Array;
  readonly reportIdMa: Uint8Array;
  readonly reportedTcbRaw: bigint;
  /** CPUID family, model and stepping (reports v3+; undefined in v2). */
  readonly cpuid: { readonly family: number; readonly model: number; readonly stepping: number } | undefined;
  readonly chipId: Uint8Array;
  readonly committedTcbRaw: bigint;
  readonly currentVersion: { readonly major: number; readonly minor: number; readonly build: number };
  readonly committedVersion: { readonly major: number; readonly minor: number; readonly build: number };
  readonly launchTcbRaw: bigint;
  /** Mitigation vectors (v5+; zero before). */
  readonly launchMitVector: bigint;
  readonly currentMitVector: bigint;
  /** r and s as 48-byte big-endian integers (converted from the 72-byte little-endian fields). */
  readonly signatureR: Uint8Array;
  readonly signatureS: Uint8Array;
  /** The signed bytes, report[0x000..0x2A0). */
  readonly signed: Uint8Array;
  /** The product implied by the CPUID fields, when present and known. */
  readonly cpuidProduct: SnpProduct | undefined;
}

/** Converts one 72-byte little-endian signature component to a 48-byte big-endian integer. */
function component(raw: Uint8Array, what: string): Uint8Array {
  const be = Uint8Array.from(raw).reverse();
  // ABI 56860 ECDSA signature format: 72-byte zero-extended fields; P-384 values fit in the low 48 bytes.
  if (!isZero(be.subarray(0, 24))) throw new AttestError('E_ATTEST_MALFORMED', `SNP report signature ${what} exceeds 384 bits`);
  return be.subarray(24);
}

/**
 * Parses an SEV-SNP ATTESTATION_REPORT (versions 2 to 5; Milan, Genoa and Turin). Unknown PLATFORM_INFO bits
 * are tolerated (the real Turin report sets bit 6); reserved must-be-zero fields are refused.
 *
 * @throws AttestError E_ATTEST_MALFORMED (size, MBZ fields), E_ATTEST_UNSUPPORTED (version, algorithm)
 */
export function parseSnpReport(bytes: Uint8Array): SnpReport {
  if (bytes.length !== SNP_REPORT_SIZE) {
    throw new AttestError('E_ATTEST_MALFORMED', `an SNP report is ${SNP_REPORT_SIZE} bytes, got ${bytes.length}`);
  }
  const r = new Reader(bytes, 'SNP report');
  const version = r.u32(0x000);
  if (version < 2 || version > 5) throw new AttestError('E_ATTEST_UNSUPPORTED', `SNP report version ${version} (supported: 2 to 5)`);
  const policy = r.u64(0x008);
  const bit = (n: number) => ((policy >> BigInt(n)) & 1n) === 1n;
  // Bit 17 is reserved and must be one; bits 26-63 must be zero (go-sev-guest ParseSnpPolicy).
  if (!bit(17)) throw new AttestError('E_ATTEST_MALFORMED', 'SNP guest policy bit 17 (reserved, must be 1) is clear');
  if (policy >> 26n !== 0n) throw new AttestError('E_ATTEST_MALFORMED', 'SNP guest policy has must-be-zero bits 26-63 set');
  const signatureAlgo = r.u32(0x034);
  if (signatureAlgo !== 1) throw new AttestError('E_ATTEST_UNSUPPORTED', `SNP signature algorithm ${signatureAlgo} (only 1, ECDSA P-384 with SHA-384)`);
  const signer = r.u32(0x048);
  if (signer >>> 5 !== 0) throw new AttestError('E_ATTEST_MALFORMED', 'SNP signer info has must-be-zero bits 5-31 set');
  const keyBits = (signer >>> 2) & 7;
  if (keyBits !== 0 && keyBits !== 1 && keyBits !== 7) throw new AttestError('E_ATTEST_MALFORMED', `SNP signing key ${keyBits} is reserved`);
  const mbz = (from: number, to: number) => {
    if (!isZero(r.slice(from, to - from))) throw new AttestError('E_ATTEST_MALFORMED', `SNP report reserved bytes 0x${from.toString(16)}..0x${(to - 1).toString(16)} are not zero`);
  };
  mbz(0x04c, 0x050);
  mbz(version >= 3 ? 0x18b : 0x188, 0x1a0);
  if (version < 5) mbz(0x1f8, 0x208);
  mbz(0x208, SNP_SIGNED_END);
  mbz(0x330, SNP_REPORT_SIZE);
  const cpuid = version >= 3 ? { family: r.u8(0x188), model: r.u8(0x189), stepping: r.u8(0x18a) } : undefined;
  return {
    version,
    guestSvn: r.u32(0x004),
    policy,
    guestPolicy: {
      abiMinor: Number(policy & 0xffn),
      abiMajor: Number((policy >> 8n) & 0xffn),
      smt: bit(16),
      migrateMa: bit(18),
      debug: bit(19),
      singleSocket: bit(20),
      cxlAllow: bit(21),
      memAes256Xts: bit(22),
      raplDis: bit(23),
      ciphertextHiding: bit(24),
      pageSwapDisable: bit(25),
    },
    familyId: r.slice(0x010, 16),
    imageId: r.slice(0x020, 16),
    vmpl: r.u32(0x030),
    signatureAlgo,
    currentTcbRaw: r.u64(0x038),
    platformInfo: r.u64(0x040),
    authorKeyEn: (signer & 1) === 1,
    maskChipKey: (signer & 2) === 2,
    signingKey: keyBits === 0 ? 'vcek' : keyBits === 1 ? 'vlek' : 'none',
    reportData: r.slice(0x050, 64),
    measurement: r.slice(0x090, 48),
    hostData: r.slice(0x0c0, 32),
    idKeyDigest: r.slice(0x0e0, 48),
    authorKeyDigest: r.slice(0x110, 48),
    reportId: r.slice(0x140, 32),
    reportIdMa: r.slice(0x160, 32),
    reportedTcbRaw: r.u64(0x180),
    cpuid,
    chipId: r.slice(0x1a0, 64),
    committedTcbRaw: r.u64(0x1e0),
    currentVersion: { build: r.u8(0x1e8), minor: r.u8(0x1e9), major: r.u8(0x1ea) },
    committedVersion: { build: r.u8(0x1ec), minor: r.u8(0x1ed), major: r.u8(0x1ee) },
    launchTcbRaw: r.u64(0x1f0),
    launchMitVector: r.u64(0x1f8),
    currentMitVector: r.u64(0x200),
    signatureR: component(r.slice(0x2a0, 72), 'R'),
    signatureS: component(r.slice(0x2e8, 72), 'S'),
    signed: r.slice(0, SNP_SIGNED_END),
    cpuidProduct: cpuid === undefined ? undefined : productFromCpuid(cpuid.family, cpuid.model),
  };
}

/** The four TCB fields of a report decoded for `product`. */
export function reportTcbs(report: SnpReport, product: SnpProduct): { current: SnpTcb; reported: SnpTcb; committed: SnpTcb; launch: SnpTcb } {
  return {
    current: decodeSnpTcb(report.currentTcbRaw, product),
    reported: decodeSnpTcb(report.reportedTcbRaw, product),
    committed: decodeSnpTcb(report.committedTcbRaw, product),
    launch: decodeSnpTcb(report.launchTcbRaw, product),
  };
}
