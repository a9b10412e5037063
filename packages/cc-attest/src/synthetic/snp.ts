import { randomBytes, sign } from 'node:crypto';
import type { SnpProduct } from '../snp/tcb.js';
import { SNP_REPORT_SIZE, SNP_SIGNED_END } from '../snp/report.js';
import { AT, newKey } from './certs.js';
import { derIa5String as ia5, derInteger as int } from '@flare/core';
import { issue, type TestAuthority } from './authority.js';

/** A TCB for synthetic reports (fmc only on Turin). */
export interface SyntheticTcb {
  readonly bootloader: number;
  readonly tee: number;
  readonly snp: number;
  readonly microcode: number;
  readonly fmc?: number;
}

/** Options of {@link synthesizeSnpEvidence}; every field has a sensible default. */
export interface SnpSynthesisOptions {
  readonly product?: SnpProduct;
  readonly version?: 2 | 3 | 5;
  readonly reportData?: Uint8Array;
  readonly measurement?: Uint8Array;
  readonly hostData?: Uint8Array;
  /** GUEST_POLICY (default 0x30000: SMT allowed, reserved bit 17). */
  readonly policy?: bigint;
  readonly vmpl?: number;
  readonly guestSvn?: number;
  readonly signingKey?: 'vcek' | 'vlek';
  /** Overrides the SIGNING_KEY bits of the report without changing the certificate. */
  readonly declaredSigningKey?: 0 | 1 | 7;
  readonly maskChipKey?: boolean;
  readonly chipId?: Uint8Array;
  /** The reported, committed and launch TCB (default 3/0/8/115, plus fmc 0 on Turin). */
  readonly tcb?: SyntheticTcb;
  /** CURRENT_TCB (default: `tcb`). */
  readonly currentTcb?: SyntheticTcb;
  /** The TCB written into the VCEK (default: `tcb`). */
  readonly certTcb?: SyntheticTcb;
  /** The hwID written into the VCEK (default: the chip id; 8 bytes on Turin). */
  readonly certHwId?: Uint8Array;
  readonly certProductName?: string;
  readonly certNotAfter?: Date;
  /** Sign with a key other than the VCEK's (the signature then fails). */
  readonly wrongSigner?: boolean;
}

/** Synthetic SNP evidence: the report and the VCEK/VLEK (PEM). */
export interface SyntheticSnpEvidence {
  readonly evidence: Uint8Array;
  readonly certificates: string[];
}

function tcbBytes(t: SyntheticTcb, product: SnpProduct): Uint8Array {
  const b = new Uint8Array(8);
  if (product === 'Turin') {
    b[0] = t.fmc ?? 0;
    b[1] = t.bootloader;
    b[2] = t.tee;
    b[3] = t.snp;
  } else {
    b[0] = t.bootloader;
    b[1] = t.tee;
    b[6] = t.snp;
  }
  b[7] = t.microcode;
  return b;
}

const CPUID: Record<SnpProduct, [number, number, number]> = { Milan: [0x19, 0x01, 0x01], Genoa: [0x19, 0x11, 0x01], Turin: [0x1a, 0x02, 0x01] };

/**
 * Builds an SEV-SNP report signed by a fresh VCEK (or VLEK) that the test authority's ASK (ASVK) certifies.
 * The report layout is ABI 56860's; options make any single check fail on purpose.
 */
export function synthesizeSnpEvidence(auth: TestAuthority, o: SnpSynthesisOptions = {}): SyntheticSnpEvidence {
  const product = o.product ?? 'Milan';
  const version = o.version ?? 3;
  const kind = o.signingKey ?? 'vcek';
  const tcb = o.tcb ?? { bootloader: 3, tee: 0, snp: 8, microcode: 115, ...(product === 'Turin' ? { fmc: 0 } : {}) };
  const chipId = new Uint8Array(64);
  if (!(o.maskChipKey ?? false) && kind === 'vcek') chipId.set(o.chipId ?? randomBytes(product === 'Turin' ? 8 : 64));
  const r = new Uint8Array(SNP_REPORT_SIZE);
  const v = new DataView(r.buffer);
  v.setUint32(0x000, version, true);
  v.setUint32(0x004, o.guestSvn ?? 1, true);
  v.setBigUint64(0x008, o.policy ?? 0x30000n, true);
  v.setUint32(0x030, o.vmpl ?? 0, true);
  v.setUint32(0x034, 1, true);
  r.set(tcbBytes(o.currentTcb ?? tcb, product), 0x038);
  v.setBigUint64(0x040, 0x25n, true);
  const keyBits = o.declaredSigningKey ?? (kind === 'vcek' ? 0 : 1);
  v.setUint32(0x048, (keyBits << 2) | ((o.maskChipKey ?? false) ? 2 : 0), true);
  r.set(o.reportData ?? new Uint8Array(64), 0x050);
  r.set(o.measurement ?? new Uint8Array(48).fill(0xa5), 0x090);
  if (o.hostData) r.set(o.hostData, 0x0c0);
  r.set(randomBytes(32), 0x140);
  r.fill(0xff, 0x160, 0x180);
  r.set(tcbBytes(tcb, product), 0x180);
  if (version >= 3) r.set(CPUID[product], 0x188);
  r.set(chipId, 0x1a0);
  r.set(tcbBytes(tcb, product), 0x1e0);
  r.set([7, 55, 1], 0x1e8);
  r.set([7, 55, 1], 0x1ec);
  r.set(tcbBytes(tcb, product), 0x1f0);

  const ct = o.certTcb ?? tcb;
  const ext = (n: string, value: Uint8Array) => [`1.3.6.1.4.1.3704.1.${n}`, value] as const;
  const hw = o.certHwId ?? (product === 'Turin' ? chipId.subarray(0, 8) : chipId);
  const extensions = [
    ext('1', int(product === 'Turin' ? 1 : 0)),
    ext('2', ia5(o.certProductName ?? (product === 'Milan' ? 'Milan-B0' : product))),
    ext('3.1', int(ct.bootloader)),
    ext('3.2', int(ct.tee)),
    ext('3.3', int(ct.snp)),
    ext('3.8', int(ct.microcode)),
    ...(product === 'Turin' ? [ext('3.9', int(ct.fmc ?? 0))] : []),
    kind === 'vcek' ? ext('4', hw) : ext('5', ia5('CN=test-csp.example')),
  ];
  const issuer = kind === 'vcek' ? auth.amd[product].ask : auth.amd[product].asvk;
  const subject = [[AT.OU, 'Engineering'], [AT.C, 'US'], [AT.L, 'Santa Clara'], [AT.ST, 'CA'], [AT.O, 'Advanced Micro Devices'], [AT.CN, kind === 'vcek' ? 'SEV-VCEK' : 'SEV-VLEK']] as const;
  const cert = issue(auth, subject, 'p384', issuer, false, extensions, o.certNotAfter !== undefined ? { notAfter: o.certNotAfter } : {});
  const signer = o.wrongSigner ? newKey('p384') : cert.key;
  const sig = sign('sha384', r.subarray(0, SNP_SIGNED_END), { key: signer.privateKey, dsaEncoding: 'ieee-p1363' });
  // ABI 56860: R and S as 72-byte little-endian fields at 0x2A0 and 0x2E8.
  r.set(Uint8Array.from(sig.subarray(0, 48)).reverse(), 0x2a0);
  r.set(Uint8Array.from(sig.subarray(48, 96)).reverse(), 0x2e8);
  return { evidence: r, certificates: [cert.pem] };
}
