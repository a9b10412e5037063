import { AttestError } from '@flare/core';
import { OID, type ParsedCertificate } from '../cert.js';
import { children, readTlv, TAG, uint } from '../der.js';
import type { SnpProduct } from './tcb.js';

// VCEK / VLEK certificate profile (AMD "VCEK Certificate and KDS Interface Specification", pub. 57230;
// go-sev-guest kds/kds.go OIDs at lines 41-72).

const AMD = '1.3.6.1.4.1.3704.1';

/** The AMD extensions of a VCEK or VLEK certificate. */
export interface AmdKeyCertificate {
  readonly kind: 'vcek' | 'vlek';
  readonly structVersion: number | undefined;
  /** productName as written ("Milan-B0", "Genoa", "Turin", "Milan"). */
  readonly productName: string;
  readonly product: SnpProduct;
  readonly tcb: { readonly bootloader: number; readonly tee: number; readonly snp: number; readonly microcode: number; readonly fmc?: number };
  /** The hardware id (64 bytes; 8 on Turin). VCEK only. */
  readonly hwId: Uint8Array | undefined;
  /** Which encoding the hwID used: raw bytes (what KDS issues) or a nested OCTET STRING. */
  readonly hwIdEncoding: 'raw' | 'octet-string' | undefined;
  /** CSP_ID (VLEK only), e.g. "CN=cc-us-east-2.amazonaws.com". */
  readonly cspId: string | undefined;
}

function integerExt(value: Uint8Array | undefined, what: string): number | undefined {
  if (value === undefined) return undefined;
  const t = readTlv(value);
  if (t.tag !== TAG.INTEGER || t.end !== value.length) throw new AttestError('E_ATTEST_CERT_PROFILE', `VCEK extension ${what} is not a DER INTEGER`);
  return uint(t.value);
}

function stringExt(value: Uint8Array | undefined): string | undefined {
  if (value === undefined) return undefined;
  const t = readTlv(value);
  if ((t.tag !== TAG.IA5 && t.tag !== TAG.UTF8 && t.tag !== TAG.PRINTABLE) || t.end !== value.length) {
    throw new AttestError('E_ATTEST_CERT_PROFILE', 'VCEK string extension is not an IA5String');
  }
  return Buffer.from(t.value).toString('latin1');
}

/**
 * Reads the hwID: KDS puts the raw 64 (Turin: 8) bytes directly in the extnValue; go-sev-guest and snpguest
 * also accept a nested OCTET STRING (`04 40 ...`). Decided by length, so raw bytes that happen to start with
 * 0x04 are not misread.
 */
function hwIdExt(value: Uint8Array | undefined): { id: Uint8Array; encoding: 'raw' | 'octet-string' } | undefined {
  if (value === undefined) return undefined;
  if (value.length === 64 || value.length === 8) return { id: value, encoding: 'raw' };
  if ((value.length === 66 || value.length === 10) && value[0] === TAG.OCTET_STRING && value[1] === value.length - 2) {
    return { id: value.subarray(2), encoding: 'octet-string' };
  }
  throw new AttestError('E_ATTEST_CERT_PROFILE', `VCEK hwID extension has ${value.length} bytes (expected 64, 8 or a nested OCTET STRING of them)`);
}

/** The product family from a VCEK productName ("Milan-B0" -> Milan). */
function productFromName(name: string): SnpProduct | undefined {
  const base = name.split('-')[0];
  return base === 'Milan' || base === 'Genoa' || base === 'Turin' ? base : undefined;
}

/**
 * Checks the KDS profile of a VCEK/VLEK (go-sev-guest validateKDSCertificateProductNonspecific: X.509 v3,
 * RSASSA-PSS SHA-384 signature, ECDSA P-384 key, AMD subject) and reads its extensions.
 *
 * @throws AttestError E_ATTEST_CERT_PROFILE
 */
export function readAmdKeyCertificate(cert: ParsedCertificate): AmdKeyCertificate {
  const fail = (what: string): never => {
    throw new AttestError('E_ATTEST_CERT_PROFILE', `AMD ${what}`);
  };
  const cn = /(?:^|, )CN=([^,]+)/.exec(cert.subject)?.[1];
  const kind = cn === 'SEV-VCEK' ? 'vcek' : cn === 'SEV-VLEK' ? 'vlek' : fail(`key certificate has CN ${JSON.stringify(cn)} (expected SEV-VCEK or SEV-VLEK)`);
  if (cert.version !== 3) fail(`${kind.toUpperCase()} is not X.509 v3`);
  checkAmdPss(cert, kind.toUpperCase());
  if (cert.keyAlg !== OID.ecPublicKey || cert.curve !== OID.p384) fail(`${kind.toUpperCase()} key is not ECDSA P-384`);
  if (!cert.subject.includes('O=Advanced Micro Devices')) fail(`${kind.toUpperCase()} subject is not Advanced Micro Devices`);
  const ext = (n: string) => cert.extensions.get(`${AMD}.${n}`);
  const productName = stringExt(ext('2')) ?? fail(`${kind.toUpperCase()} has no productName extension`);
  const product = productFromName(productName) ?? fail(`${kind.toUpperCase()} product ${JSON.stringify(productName)} is not Milan, Genoa or Turin`);
  const need = (n: string, what: string) => integerExt(ext(n), what) ?? fail(`${kind.toUpperCase()} has no ${what} extension`);
  const fmc = integerExt(ext('3.9'), 'fmcSPL');
  const hw = hwIdExt(ext('4'));
  const cspId = stringExt(ext('5'));
  if (hw !== undefined && cspId !== undefined) fail('key certificate carries both hwID and CSP_ID');
  if (kind === 'vcek' && hw === undefined) fail('VCEK has no hwID extension');
  if (kind === 'vlek' && cspId === undefined) fail('VLEK has no CSP_ID extension');
  if (product === 'Turin' && fmc === undefined) fail('Turin VCEK has no fmcSPL extension');
  const tcb = { bootloader: need('3.1', 'blSPL'), tee: need('3.2', 'teeSPL'), snp: need('3.3', 'snpSPL'), microcode: need('3.8', 'ucodeSPL') };
  return {
    kind,
    structVersion: integerExt(ext('1'), 'structVersion'),
    productName,
    product,
    tcb: product === 'Turin' ? { ...tcb, fmc: fmc! } : tcb,
    hwId: hw?.id,
    hwIdEncoding: hw?.encoding,
    cspId,
  };
}

/** RSASSA-PSS with SHA-384, MGF1-SHA-384, salt 48: the only signature algorithm of AMD's ARK, ASK, ASVK, VCEK and VLEK. */
export function checkAmdPss(cert: ParsedCertificate, what: string): void {
  if (cert.sigAlg !== OID.rsassaPss || cert.sigAlgParams === undefined) {
    throw new AttestError('E_ATTEST_CERT_PROFILE', `AMD ${what} is not signed with RSASSA-PSS`);
  }
  // RSASSA-PSS-params (RFC 4055 3.1): [0] hash, [1] maskGen, [2] saltLength, [3] trailerField.
  const params = children(readTlv(cert.sigAlgParams).value);
  const hashOid = params[0]?.tag === 0xa0 ? children(children(params[0].value)[0]?.value ?? new Uint8Array())[0] : undefined;
  const salt = params.find((p) => p.tag === 0xa2);
  const ok = hashOid !== undefined && Buffer.from(hashOid.value).equals(Buffer.from([0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02])) && salt !== undefined && uint(readTlv(salt.value).value) === 48;
  if (!ok) throw new AttestError('E_ATTEST_CERT_PROFILE', `AMD ${what} is not signed with RSASSA-PSS SHA-384, salt 48`);
}
