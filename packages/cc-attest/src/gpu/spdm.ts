import { AttestError } from '@flare/core';
import { hex, Reader } from '../bytes.js';

// NVIDIA GPU attestation report = SPDM 1.1 GET_MEASUREMENTS request (37 bytes) || MEASUREMENTS response
// (DMTF DSP0274 1.1, sections 10.11-10.12), as NVML nvmlDeviceGetConfComputeGpuAttestationReport returns it.
// Field handling follows NVIDIA nvtrust local_gpu_verifier spdm_msrt_{req,resp}_msg.py. The signature covers
// request || response up to the signature, a range computed from the parsed lengths (trustee's CoCo sample
// has a trailing byte, so "length - 96" would be wrong).

/** SPDM GET_MEASUREMENTS request size (version, code, param1, param2, nonce 32, slot id). */
export const SPDM_REQUEST_SIZE = 37;
/** ECDSA P-384 raw r||s. */
const SIGNATURE_SIZE = 96;

/** Opaque-data types (nvtrust OpaqueDataType). */
const OPAQUE_TYPES: Readonly<Record<number, string>> = {
  1: 'CERT_ISSUER_NAME', 2: 'CERT_AUTHORITY_KEY_IDENTIFIER', 3: 'DRIVER_VERSION', 4: 'GPU_INFO', 5: 'SKU', 6: 'VBIOS_VERSION',
  7: 'MANUFACTURER_ID', 8: 'TAMPER_DETECTION', 9: 'SMC', 10: 'VPR', 11: 'NVDEC0_STATUS', 12: 'MSRSCNT', 13: 'CPRINFO', 14: 'BOARD_ID',
  15: 'CHIP_SKU', 16: 'CHIP_SKU_MOD', 17: 'PROJECT', 18: 'PROJECT_SKU', 19: 'PROJECT_SKU_MOD', 20: 'FWID', 21: 'PROTECTED_PCIE_STATUS',
  22: 'SWITCH_PDI', 23: 'FLOORSWEPT_PORTS', 24: 'POSITION_ID', 25: 'LOCK_SWITCH_STATUS', 32: 'GPU_LINK_CONN', 33: 'SYS_ENABLE_STATUS',
  34: 'OPAQUE_DATA_VERSION', 35: 'CHIP_INFO', 36: 'FEATURE_FLAG',
};

/** One DMTF measurement block. */
export interface SpdmMeasurementBlock {
  /** The SPDM block index (1-based; RIM index i is block i+1). */
  readonly index: number;
  readonly valueType: number;
  readonly value: Uint8Array;
}

/** A parsed GET_MEASUREMENTS request and response. */
export interface SpdmEvidence {
  readonly requestVersion: number;
  /** The requester's nonce (32 bytes): where the verifier's challenge goes. */
  readonly nonce: Uint8Array;
  readonly slotId: number;
  readonly responseVersion: number;
  readonly param1: number;
  readonly param2: number;
  readonly blocks: readonly SpdmMeasurementBlock[];
  readonly responderNonce: Uint8Array;
  /** Opaque TLVs by type number (first occurrence). */
  readonly opaque: ReadonlyMap<number, Uint8Array>;
  readonly signed: Uint8Array;
  readonly signature: Uint8Array;
  readonly driverVersion: string | undefined;
  readonly vbiosVersion: string | undefined;
  readonly fwid: Uint8Array | undefined;
}

const cstring = (b: Uint8Array | undefined) => (b === undefined ? undefined : Buffer.from(b).toString('latin1').replace(/\0+$/, ''));

/** Formats VBIOS_VERSION bytes as nvidia-smi does ("96.00.9f.00.01"; nvtrust format_vbios_version). */
export function formatVbiosVersion(b: Uint8Array): string {
  // NVSwitch (LS10) reports the version as ASCII text ("96.10.73.00.01") instead of packed bytes.
  const text = Buffer.from(b).toString('latin1').replace(/\0+$/, '');
  if (/^[0-9A-Fa-f]{2}(\.[0-9A-Fa-f]{2})+$/.test(text)) return text.toLowerCase();
  if (b.length < 5) throw new AttestError('E_ATTEST_MALFORMED', 'VBIOS_VERSION is shorter than 5 bytes');
  const major = new DataView(b.buffer, b.byteOffset, 4).getUint32(0, true).toString(16).padStart(8, '0');
  return `${major.match(/../g)!.join('.')}.${b[4]!.toString(16).padStart(2, '0')}`;
}

/**
 * Parses NVIDIA GPU evidence (SPDM 1.1 GET_MEASUREMENTS request || response). Trailing bytes after the
 * signature are ignored.
 *
 * @throws AttestError E_ATTEST_MALFORMED, E_ATTEST_UNSUPPORTED
 */
export function parseSpdmEvidence(bytes: Uint8Array): SpdmEvidence {
  const r = new Reader(bytes, 'SPDM evidence');
  const requestVersion = r.u8(0);
  if (requestVersion !== 0x11 || r.u8(1) !== 0xe0) throw new AttestError('E_ATTEST_UNSUPPORTED', `not an SPDM 1.1 GET_MEASUREMENTS request (version 0x${requestVersion.toString(16)}, code 0x${r.u8(1).toString(16)})`);
  if (r.u8(2) !== 0x01) throw new AttestError('E_ATTEST_MALFORMED', 'the GET_MEASUREMENTS request did not ask for a signature');
  const o = SPDM_REQUEST_SIZE;
  const responseVersion = r.u8(o);
  if (responseVersion !== 0x11 || r.u8(o + 1) !== 0x60) throw new AttestError('E_ATTEST_UNSUPPORTED', 'not an SPDM 1.1 MEASUREMENTS response');
  const count = r.u8(o + 4);
  const recordLength = r.u24(o + 5);
  const record = new Reader(r.slice(o + 8, recordLength), 'SPDM measurement record');
  const blocks: SpdmMeasurementBlock[] = [];
  let p = 0;
  for (let i = 0; i < count; i++) {
    const index = record.u8(p);
    const spec = record.u8(p + 1);
    const size = record.u16(p + 2);
    if (spec !== 1) throw new AttestError('E_ATTEST_UNSUPPORTED', `measurement block ${index} is not in DMTF format`);
    const valueType = record.u8(p + 4);
    const valueSize = record.u16(p + 5);
    if (valueSize + 3 !== size) throw new AttestError('E_ATTEST_MALFORMED', `measurement block ${index} sizes disagree`);
    if (blocks.some((b) => b.index === index)) throw new AttestError('E_ATTEST_MALFORMED', `measurement block ${index} appears twice`);
    blocks.push({ index, valueType, value: record.slice(p + 7, valueSize) });
    p += 4 + size;
  }
  if (p !== recordLength) throw new AttestError('E_ATTEST_MALFORMED', `measurement record is ${recordLength} bytes, its blocks use ${p}`);
  let q = o + 8 + recordLength;
  const responderNonce = r.slice(q, 32);
  q += 32;
  const opaqueLength = r.u16(q);
  const opaqueBytes = new Reader(r.slice(q + 2, opaqueLength), 'SPDM opaque data');
  q += 2 + opaqueLength;
  const opaque = new Map<number, Uint8Array>();
  for (let t = 0; t < opaqueLength; ) {
    const type = opaqueBytes.u16(t);
    const len = opaqueBytes.u16(t + 2);
    const value = opaqueBytes.slice(t + 4, len);
    if (!opaque.has(type)) opaque.set(type, value);
    t += 4 + len;
  }
  const signature = r.slice(q, SIGNATURE_SIZE);
  const vbios = opaque.get(6);
  const fwid = opaque.get(20);
  return {
    requestVersion,
    nonce: r.slice(4, 32),
    slotId: r.u8(36),
    responseVersion,
    param1: r.u8(o + 2),
    param2: r.u8(o + 3),
    blocks,
    responderNonce,
    opaque,
    signed: r.slice(0, q),
    signature,
    driverVersion: cstring(opaque.get(3)),
    vbiosVersion: vbios === undefined ? undefined : formatVbiosVersion(vbios),
    fwid: fwid === undefined || fwid.length === 0 ? undefined : fwid,
  };
}

/** Opaque data as readable name -> hex (strings for the version fields). */
export function describeOpaque(e: SpdmEvidence): Record<string, string> {
  const out: Record<string, string> = Object.create(null) as Record<string, string>;
  for (const [type, value] of e.opaque) {
    const name = OPAQUE_TYPES[type] ?? `TYPE_${type}`;
    out[name] = type === 3 || (type >= 15 && type <= 19) ? (cstring(value) ?? '') : type === 6 ? formatVbiosVersion(value) : hex(value);
  }
  return out;
}
