import { AttestError } from '@flare/core';
import { hex, Reader } from '../bytes.js';

// Intel TDX DCAP ECDSA quote, versions 4 and 5 ("Intel TDX DCAP Quoting Library API", quote format appendix;
// offsets as in google/go-tdx-guest abi/abi.go). All integers little-endian. Parsed by declared sizes, so
// zero-padded provider buffers (5006 or 8000 bytes) and trailing bytes are tolerated.

const HEADER = 48;
const TDX10_BODY = 584;
const TDX15_BODY = 648;
const QE_REPORT = 384;
/** Intel's QE vendor id (939a7233-f79c-4ca9-940a-0db3957f0607). */
export const INTEL_QE_VENDOR_ID = '939a7233f79c4ca9940a0db3957f0607';

/** The TD report body of a quote (TDX 1.0 fields; TDX 1.5 adds the last two). */
export interface TdReportBody {
  readonly teeTcbSvn: Uint8Array;
  readonly mrSeam: Uint8Array;
  readonly mrSignerSeam: Uint8Array;
  readonly seamAttributes: Uint8Array;
  readonly tdAttributes: Uint8Array;
  readonly xfam: Uint8Array;
  readonly mrTd: Uint8Array;
  readonly mrConfigId: Uint8Array;
  readonly mrOwner: Uint8Array;
  readonly mrOwnerConfig: Uint8Array;
  readonly rtmrs: readonly [Uint8Array, Uint8Array, Uint8Array, Uint8Array];
  readonly reportData: Uint8Array;
  readonly teeTcbSvn2?: Uint8Array;
  readonly mrServiceTd?: Uint8Array;
}

/** An SGX REPORT body (the quoting enclave's report). */
export interface SgxReportBody {
  readonly raw: Uint8Array;
  readonly cpuSvn: Uint8Array;
  readonly miscSelect: number;
  readonly attributes: Uint8Array;
  readonly mrEnclave: Uint8Array;
  readonly mrSigner: Uint8Array;
  readonly isvProdId: number;
  readonly isvSvn: number;
  readonly reportData: Uint8Array;
}

/** A parsed TDX quote. Byte fields are views into the input. */
export interface TdxQuote {
  readonly version: 4 | 5;
  readonly attestationKeyType: number;
  readonly teeType: number;
  readonly qeSvn: number;
  readonly pceSvn: number;
  readonly qeVendorId: Uint8Array;
  readonly userData: Uint8Array;
  /** v5 body type: 2 = TDX 1.0, 3 = TDX 1.5 (v4 quotes are TDX 1.0). */
  readonly bodyType: 2 | 3;
  readonly body: TdReportBody;
  /** Header, [v5 descriptor] and body: the bytes the quote signature covers. */
  readonly signed: Uint8Array;
  /** ECDSA P-256 signature, r||s big-endian. */
  readonly signature: Uint8Array;
  /** The attestation public key, raw X||Y (P-256). */
  readonly attestationKey: Uint8Array;
  readonly qeReport: SgxReportBody;
  readonly qeReportSignature: Uint8Array;
  readonly qeAuthData: Uint8Array;
  /** PEM text of the PCK chain (leaf, PCK CA, root). */
  readonly pckChainPem: string;
  /** Bytes of the buffer the quote actually used (the rest is padding). */
  readonly usedLength: number;
}

function body(r: Reader, o: number, size: number): TdReportBody {
  const s = (off: number, n: number) => r.slice(o + off, n);
  return {
    teeTcbSvn: s(0, 16),
    mrSeam: s(16, 48),
    mrSignerSeam: s(64, 48),
    seamAttributes: s(112, 8),
    tdAttributes: s(120, 8),
    xfam: s(128, 8),
    mrTd: s(136, 48),
    mrConfigId: s(184, 48),
    mrOwner: s(232, 48),
    mrOwnerConfig: s(280, 48),
    rtmrs: [s(328, 48), s(376, 48), s(424, 48), s(472, 48)],
    reportData: s(520, 64),
    ...(size === TDX15_BODY ? { teeTcbSvn2: s(584, 16), mrServiceTd: s(600, 48) } : {}),
  };
}

/** Parses an SGX REPORT body (384 bytes). */
function parseSgxReportBody(raw: Uint8Array): SgxReportBody {
  const r = new Reader(raw, 'QE report');
  r.need(0, QE_REPORT);
  return {
    raw,
    cpuSvn: r.slice(0x00, 16),
    miscSelect: r.u32(0x10),
    attributes: r.slice(0x30, 16),
    mrEnclave: r.slice(0x40, 32),
    mrSigner: r.slice(0x80, 32),
    isvProdId: r.u16(0x100),
    isvSvn: r.u16(0x102),
    reportData: r.slice(0x140, 64),
  };
}

/**
 * Parses a TDX quote v4 or v5 by its declared sizes.
 *
 * @throws AttestError E_ATTEST_MALFORMED (sizes inconsistent, truncated), E_ATTEST_UNSUPPORTED (version, key
 * type, TEE type, certification data type, QE vendor)
 */
export function parseTdxQuote(bytes: Uint8Array): TdxQuote {
  const r = new Reader(bytes, 'TDX quote');
  const version = r.u16(0);
  if (version !== 4 && version !== 5) throw new AttestError('E_ATTEST_UNSUPPORTED', `TDX quote version ${version} (supported: 4 and 5)`);
  const attestationKeyType = r.u16(2);
  if (attestationKeyType !== 2) throw new AttestError('E_ATTEST_UNSUPPORTED', `attestation key type ${attestationKeyType} (only 2, ECDSA-256 with P-256)`);
  const teeType = r.u32(4);
  if (teeType !== 0x81) throw new AttestError('E_ATTEST_UNSUPPORTED', `TEE type 0x${teeType.toString(16)} is not TDX (0x81)`);
  const qeVendorId = r.slice(12, 16);
  if (hex(qeVendorId) !== INTEL_QE_VENDOR_ID) throw new AttestError('E_ATTEST_UNSUPPORTED', 'QE vendor id is not Intel');
  let bodyOffset = HEADER;
  let bodySize = TDX10_BODY;
  let bodyType: 2 | 3 = 2;
  if (version === 5) {
    const type = r.u16(HEADER);
    const size = r.u32(HEADER + 2);
    if (!((type === 2 && size === TDX10_BODY) || (type === 3 && size === TDX15_BODY))) {
      throw new AttestError('E_ATTEST_UNSUPPORTED', `TDX quote v5 body type ${type} of ${size} bytes (supported: 2/584 and 3/648)`);
    }
    bodyType = type;
    bodySize = size;
    bodyOffset = HEADER + 6;
  }
  const signedEnd = bodyOffset + bodySize;
  const sigLen = r.u32(signedEnd);
  const sd = signedEnd + 4;
  r.need(sd, sigLen);
  const sig = new Reader(r.slice(sd, sigLen), 'TDX quote signature data');
  const certType = sig.u16(128);
  const certSize = sig.u32(130);
  if (certType !== 6) throw new AttestError('E_ATTEST_UNSUPPORTED', `certification data type ${certType} (only 6, QE report certification data)`);
  if (134 + certSize !== sigLen) throw new AttestError('E_ATTEST_MALFORMED', `signature data size ${sigLen} does not match its certification data (${134 + certSize})`);
  const cd = new Reader(sig.slice(134, certSize), 'QE certification data');
  const authLen = cd.u16(QE_REPORT + 64);
  const inner = QE_REPORT + 64 + 2 + authLen;
  const innerType = cd.u16(inner);
  const innerSize = cd.u32(inner + 2);
  if (innerType !== 5) throw new AttestError('E_ATTEST_UNSUPPORTED', `inner certification data type ${innerType} (only 5, PCK certificate chain)`);
  if (inner + 6 + innerSize !== certSize) throw new AttestError('E_ATTEST_MALFORMED', `certification data size ${certSize} does not match its contents (${inner + 6 + innerSize})`);
  return {
    version,
    attestationKeyType,
    teeType,
    qeSvn: r.u16(8),
    pceSvn: r.u16(10),
    qeVendorId,
    userData: r.slice(28, 20),
    bodyType,
    body: body(r, bodyOffset, bodySize),
    signed: r.slice(0, signedEnd),
    signature: sig.slice(0, 64),
    attestationKey: sig.slice(64, 64),
    qeReport: parseSgxReportBody(cd.slice(0, QE_REPORT)),
    qeReportSignature: cd.slice(QE_REPORT, 64),
    qeAuthData: cd.slice(QE_REPORT + 66, authLen),
    pckChainPem: Buffer.from(cd.slice(inner + 6, innerSize)).toString('latin1'),
    usedLength: sd + sigLen,
  };
}
