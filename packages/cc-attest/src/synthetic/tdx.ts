import { createHash, randomBytes, sign } from 'node:crypto';
import { INTEL_QE_VENDOR_ID } from '../tdx/quote.js';
import type { TdxTcbStatus } from '../tdx/collateral.js';
import { AT, newKey } from './certs.js';
import { derInteger as int, derOctetString as octets, derOidEncode as oid, derSequence as seq } from '@flare/core';
import { issue, type TestAuthority } from './authority.js';

/** Options of {@link synthesizeTdxEvidence}. */
export interface TdxSynthesisOptions {
  readonly version?: 4 | 5;
  readonly reportData?: Uint8Array;
  readonly mrTd?: Uint8Array;
  readonly rtmrs?: readonly Uint8Array[];
  /** TD_ATTRIBUTES (default 0; bit 0 = DEBUG). */
  readonly tdAttributes?: bigint;
  readonly teeTcbSvn?: Uint8Array;
  readonly fmspc?: string;
  readonly pceSvn?: number;
  readonly sgxComponents?: readonly number[];
  readonly qeSvn?: number;
  /** Break the QE binding (REPORT_DATA of the QE report not hashing the attestation key). */
  readonly breakQeBinding?: boolean;
  /** Sign the quote with a key other than the attestation key. */
  readonly wrongAttestationKey?: boolean;
  /** Sign the QE report with a key other than the PCK key. */
  readonly wrongPckSigner?: boolean;
  readonly pckNotAfter?: Date;
  /** Bytes of zero padding after the quote (providers return 5006- or 8000-byte buffers). */
  readonly padding?: number;
}

const u16 = (n: number) => new Uint8Array([n & 0xff, n >> 8]);
const u32 = (n: number) => new Uint8Array([n & 0xff, (n >> 8) & 0xff, (n >> 16) & 0xff, n >>> 24]);
const cat = (...p: Uint8Array[]) => new Uint8Array(Buffer.concat(p));

/** The QE MRSIGNER of synthetic quotes. */
export const SYNTHETIC_QE_MRSIGNER = 'dc9e2a7c6f948f17474e34a7fc43ed030f7c1563f1babddf6340c82e0e54a8c5';

/** Builds a TDX quote (v4, or v5 with a TDX 1.5 body) whose PCK chain ends at the test authority's Intel root. */
export function synthesizeTdxEvidence(auth: TestAuthority, o: TdxSynthesisOptions = {}): { evidence: Uint8Array } {
  const version = o.version ?? 4;
  const header = new Uint8Array(48);
  header.set(u16(version), 0);
  header.set(u16(2), 2);
  header.set(u32(0x81), 4);
  header.set(Buffer.from(INTEL_QE_VENDOR_ID, 'hex'), 12);
  const size = version === 5 ? 648 : 584;
  const body = new Uint8Array(size);
  body.set(o.teeTcbSvn ?? Uint8Array.from([5, 0, 2, ...new Array<number>(13).fill(0)]), 0);
  new DataView(body.buffer).setBigUint64(120, o.tdAttributes ?? 0n, true);
  body.set(o.mrTd ?? new Uint8Array(48).fill(0x11), 136);
  (o.rtmrs ?? []).forEach((m, i) => body.set(m, 328 + 48 * i));
  body.set(o.reportData ?? new Uint8Array(64), 520);
  const signed = version === 5 ? cat(header, u16(3), u32(size), body) : cat(header, body);

  const attKey = newKey('p256');
  const jwk = attKey.publicKey.export({ format: 'jwk' }) as { x: string; y: string };
  const attPub = cat(Buffer.from(jwk.x, 'base64url'), Buffer.from(jwk.y, 'base64url'));
  const quoteSig = sign('sha256', signed, { key: (o.wrongAttestationKey ? newKey('p256') : attKey).privateKey, dsaEncoding: 'ieee-p1363' });

  // PCK leaf with the SGX extension (1.2.840.113741.1.13.1).
  const SGX = '1.2.840.113741.1.13.1';
  const comps = o.sgxComponents ?? [2, 2, 7, 7, 4, 1, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0];
  const tcb = seq(
    ...comps.map((c, i) => seq(oid(`${SGX}.2.${i + 1}`), int(c))),
    seq(oid(`${SGX}.2.17`), int(o.pceSvn ?? 13)),
    seq(oid(`${SGX}.2.18`), octets(Uint8Array.from(comps))),
  );
  const sgxExt = seq(
    seq(oid(`${SGX}.1`), octets(randomBytes(16))),
    seq(oid(`${SGX}.2`), tcb),
    seq(oid(`${SGX}.3`), octets(new Uint8Array([0, 0]))),
    seq(oid(`${SGX}.4`), octets(Buffer.from(o.fmspc ?? '00a06d080000', 'hex'))),
  );
  const pck = issue(auth, [[AT.CN, 'Intel SGX PCK Certificate'], [AT.O, 'Intel Corporation'], [AT.C, 'US']], 'p256', auth.intel.pckCa, false, [[SGX, sgxExt]], o.pckNotAfter !== undefined ? { notAfter: o.pckNotAfter } : {});

  const authData = randomBytes(32);
  const qe = new Uint8Array(384);
  qe.set(Buffer.from(SYNTHETIC_QE_MRSIGNER, 'hex'), 0x80);
  qe[0x30] = 0x11; // ATTRIBUTES as Intel's TD_QE identity expects under its mask
  qe.set(u16(2), 0x100);
  qe.set(u16(o.qeSvn ?? 8), 0x102);
  const binding = createHash('sha256').update(attPub).update(authData).digest();
  if (o.breakQeBinding) binding[0]! ^= 1;
  qe.set(binding, 0x140);
  const qeSig = sign('sha256', qe, { key: (o.wrongPckSigner ? newKey('p256') : pck.key).privateKey, dsaEncoding: 'ieee-p1363' });
  const pem = new Uint8Array(Buffer.from(pck.pem + auth.intel.pckCa.pem + auth.intel.root.pem, 'latin1'));
  const certData = cat(qe, qeSig, u16(authData.length), authData, u16(5), u32(pem.length), pem);
  const sigData = cat(quoteSig, attPub, u16(6), u32(certData.length), certData);
  return { evidence: cat(signed, u32(sigData.length), sigData, new Uint8Array(o.padding ?? 0)) };
}

/** Options of {@link synthesizeTdxCollateral}. */
export interface TdxCollateralSynthesisOptions {
  readonly fmspc?: string;
  readonly status?: TdxTcbStatus;
  /** Require a higher PCESVN at the first level so the quote falls to a second, OutOfDate level. */
  readonly requirePceSvn?: number;
  readonly issueDate?: Date;
  readonly nextUpdate?: Date;
  /** Corrupt the TCB info signature. */
  readonly badSignature?: boolean;
}

/** Signed TCB info and QE identity for synthetic quotes, with the test TCB signing chain. */
export function synthesizeTdxCollateral(auth: TestAuthority, o: TdxCollateralSynthesisOptions = {}): { tcbInfo: string; qeIdentity: string; tcbInfoIssuerChain: string } {
  const issueDate = (o.issueDate ?? new Date('2025-01-01T00:00:00Z')).toISOString().replace('.000', '');
  const nextUpdate = (o.nextUpdate ?? new Date('2039-01-01T00:00:00Z')).toISOString().replace('.000', '');
  const svns = (list: number[]) => list.map((svn) => ({ svn }));
  const level = (pcesvn: number, status: TdxTcbStatus) => ({
    tcb: { sgxtcbcomponents: svns([2, 2, 2, 2, 2, 1, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0]), pcesvn, tdxtcbcomponents: svns([5, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]) },
    tcbDate: '2024-03-13T00:00:00Z',
    tcbStatus: status,
  });
  const zero96 = '0'.repeat(96);
  const tcbInfo = {
    id: 'TDX',
    version: 3,
    issueDate,
    nextUpdate,
    fmspc: (o.fmspc ?? '00a06d080000').toUpperCase(),
    pceId: '0000',
    tcbType: 0,
    tcbEvaluationDataNumber: 17,
    tdxModule: { mrsigner: zero96, attributes: '0000000000000000', attributesMask: 'FFFFFFFFFFFFFFFF' },
    tcbLevels: o.requirePceSvn !== undefined ? [level(o.requirePceSvn, 'UpToDate'), level(5, o.status ?? 'OutOfDate')] : [level(5, o.status ?? 'UpToDate')],
  };
  const qeIdentity = {
    id: 'TD_QE',
    version: 2,
    issueDate,
    nextUpdate,
    tcbEvaluationDataNumber: 17,
    miscselect: '00000000',
    miscselectMask: 'FFFFFFFF',
    attributes: '11000000000000000000000000000000',
    attributesMask: 'FBFFFFFFFFFFFFFF0000000000000000',
    mrsigner: SYNTHETIC_QE_MRSIGNER.toUpperCase(),
    isvprodid: 2,
    tcbLevels: [{ tcb: { isvsvn: 4 }, tcbDate: '2024-03-13T00:00:00Z', tcbStatus: 'UpToDate' }],
  };
  const signed = (member: string, value: object, corrupt = false) => {
    const raw = JSON.stringify(value);
    const sig = sign('sha256', Buffer.from(raw), { key: auth.intel.tcbSigning.key.privateKey, dsaEncoding: 'ieee-p1363' });
    if (corrupt) sig[5]! ^= 1;
    return `{"${member}":${raw},"signature":"${sig.toString('hex')}"}`;
  };
  return {
    tcbInfo: signed('tcbInfo', tcbInfo, o.badSignature),
    qeIdentity: signed('enclaveIdentity', qeIdentity),
    tcbInfoIssuerChain: auth.intel.tcbSigning.pem + auth.intel.root.pem,
  };
}
