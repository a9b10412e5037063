// The fields of an X.509 certificate that verifyCertificate reads, decoded straight from the DER (RFC 5280
// 4.1) with @flare/core's strict DER reader. @peculiar/x509 parses every field and extension into objects
// (about 1 ms per certificate here); a login needs the subject, the validity and one extension. Signatures,
// issuer/key-identifier matching and the CA flag stay with node:crypto (OpenSSL). The reader walks offsets in
// the one input buffer (no views per element, a few microseconds per certificate) and refuses anything that
// is not DER (E_CODEC_DER), which callers report as a malformed certificate.
import { derBoolean, derChildren, derExpect, derOid, derRead, derReadAll, derTime, DER_TAG, type DerNode } from '@flare/core';

/** One attribute of a distinguished name: its OID and its value as text. */
interface NameAttribute {
  readonly oid: string;
  readonly value: string;
}

/** One extension (RFC 5280 4.1: extnID, critical, extnValue). */
interface RawExtension {
  readonly critical: boolean;
  /** The contents of the extnValue OCTET STRING (the DER of the extension's own value). */
  readonly value: Uint8Array;
}

/** The decoded TBSCertificate fields verifyCertificate needs. */
export interface CertificateFields {
  /** The issuer Name, whole DER element (compared byte for byte with a CRL's issuer). */
  readonly issuerDer: Uint8Array;
  /** The subject's attributes in order, RDN by RDN. */
  readonly subject: readonly NameAttribute[];
  /** The subject as text, `CN=..., O=...` (for messages only; built on first use). */
  readonly subjectText: string;
  readonly notBefore: Date;
  readonly notAfter: Date;
  /** Extensions by OID; a certificate with the same extension twice is refused (RFC 5280 4.2). */
  readonly extensions: ReadonlyMap<string, RawExtension>;
}

const fail = (what: string): never => {
  throw new RangeError(`certificate: ${what}`);
};

const utf8 = new TextDecoder('utf-8', { fatal: true });
const latin1 = (buf: Uint8Array, from: number, to: number): string => Buffer.from(buf.buffer, buf.byteOffset + from, to - from).toString('latin1');
const hex = (buf: Uint8Array, from: number, to: number): string => Buffer.from(buf.buffer, buf.byteOffset + from, to - from).toString('hex');

/**
 * An attribute value as text, the way @peculiar/x509's `Name.getField` reads it (so identities read here and
 * by the provisioning code agree): the DirectoryString choices and IA5String decoded, anything else as the
 * hex of its whole encoding.
 */
function attributeValue(buf: Uint8Array, el: DerNode): string {
  const { body, end } = el;
  switch (el.tag) {
    case 0x0c: // UTF8String; invalid UTF-8 reads as Latin-1, as asn1js (under @peculiar/x509) reads it
      try {
        return utf8.decode(buf.subarray(body, end));
      } catch {
        return latin1(buf, body, end);
      }
    case 0x13: // PrintableString
    case 0x14: // TeletexString
    case 0x16: // IA5String
      return latin1(buf, body, end);
    case 0x1e: {
      // BMPString: UCS-2, big-endian
      if ((end - body) % 2) fail('odd BMPString');
      let s = '';
      for (let i = body; i < end; i += 2) s += String.fromCharCode((buf[i]! << 8) | buf[i + 1]!);
      return s;
    }
    case 0x1c: {
      // UniversalString: UCS-4, big-endian
      if ((end - body) % 4) fail('malformed UniversalString');
      let s = '';
      for (let i = body; i < end; i += 4) s += String.fromCodePoint(((buf[i]! << 24) | (buf[i + 1]! << 16) | (buf[i + 2]! << 8) | buf[i + 3]!) >>> 0);
      return s;
    }
    default:
      return hex(buf, el.start, end);
  }
}

// Short names for the subject text in messages (RFC 4514 3, plus what @peculiar/x509 prints).
const SHORT: Readonly<Record<string, string>> = { '2.5.4.3': 'CN', '2.5.4.10': 'O', '2.5.4.11': 'OU', '2.5.4.6': 'C', '2.5.4.7': 'L', '2.5.4.8': 'ST', '0.9.2342.19200300.100.1.25': 'DC', '1.2.840.113549.1.9.1': 'E' };
const escapeValue = (v: string): string => v.replace(/([,+"\\<>;])/g, '\\$1').replace(/^([ #])/, '\\$1').replace(/ $/, '\\ ');

/** The attributes of a Name, with the RDN each belongs to (for the text form). */
function readName(buf: Uint8Array, name: DerNode): Array<NameAttribute & { readonly rdn: number }> {
  const attributes: Array<NameAttribute & { rdn: number }> = [];
  const rdns = derChildren(buf, derExpect(name, DER_TAG.SEQUENCE, 'a Name'));
  for (let r = 0; r < rdns.length; r++) {
    for (const atv of derChildren(buf, derExpect(rdns[r], DER_TAG.SET, 'a RelativeDistinguishedName'))) {
      const parts = derChildren(buf, derExpect(atv, DER_TAG.SEQUENCE, 'an AttributeTypeAndValue'));
      if (parts.length !== 2) fail('malformed AttributeTypeAndValue');
      attributes.push({ oid: derOid(buf, derExpect(parts[0], DER_TAG.OID, 'an attribute type')), value: attributeValue(buf, parts[1]!), rdn: r });
    }
  }
  return attributes;
}

function nameText(attributes: ReadonlyArray<NameAttribute & { readonly rdn: number }>): string {
  let out = '';
  attributes.forEach((a, i) => {
    if (i > 0) out += a.rdn === attributes[i - 1]!.rdn ? '+' : ', ';
    out += `${SHORT[a.oid] ?? a.oid}=${escapeValue(a.value)}`;
  });
  return out;
}

/**
 * Decodes the fields of a DER certificate (RFC 5280 4.1) that verification reads.
 *
 * @throws RangeError when the DER does not have the shape of a certificate.
 */
export function readCertificateFields(der: Uint8Array): CertificateFields {
  const top = derReadAll(der);
  const tbs = derChildren(der, derExpect(top, DER_TAG.SEQUENCE, 'a Certificate'))[0];
  const fields = derChildren(der, derExpect(tbs, DER_TAG.SEQUENCE, 'a TBSCertificate'));
  let i = 0;
  if (fields[0]?.tag === 0xa0) i++; // [0] EXPLICIT version
  derExpect(fields[i++], DER_TAG.INTEGER, 'the serial number');
  derExpect(fields[i++], DER_TAG.SEQUENCE, 'the signature algorithm');
  const issuer = derExpect(fields[i++], DER_TAG.SEQUENCE, 'the issuer');
  const validity = derChildren(der, derExpect(fields[i++], DER_TAG.SEQUENCE, 'the validity'));
  const subject = readName(der, derExpect(fields[i++], DER_TAG.SEQUENCE, 'the subject'));
  derExpect(fields[i++], DER_TAG.SEQUENCE, 'the subject public key info');
  if (validity.length !== 2) fail('malformed validity');
  const extensions = new Map<string, RawExtension>();
  for (; i < fields.length; i++) {
    const f = fields[i]!;
    if (f.tag === 0x81 || f.tag === 0x82) continue; // [1] issuerUniqueID, [2] subjectUniqueID
    if (f.tag !== 0xa3) fail('unexpected field');
    const wrapped = derChildren(der, f);
    if (wrapped.length !== 1) fail('malformed extensions');
    for (const ext of derChildren(der, derExpect(wrapped[0], DER_TAG.SEQUENCE, 'extensions'))) {
      const parts = derChildren(der, derExpect(ext, DER_TAG.SEQUENCE, 'an extension'));
      const oid = derOid(der, derExpect(parts[0], DER_TAG.OID, 'an extension id'));
      let critical = false;
      let at = 1;
      if (parts[1]?.tag === DER_TAG.BOOLEAN) {
        critical = derBoolean(der, parts[1]);
        at = 2;
      }
      const value = derExpect(parts[at], DER_TAG.OCTET_STRING, 'an extension value');
      if (parts.length !== at + 1) fail('malformed extension');
      if (extensions.has(oid)) fail(`extension ${oid} appears twice`);
      extensions.set(oid, { critical, value: der.subarray(value.body, value.end) });
    }
  }
  const notBefore = derTime(der, validity[0]);
  const notAfter = derTime(der, validity[1]);
  let text: string | undefined;
  return {
    get issuerDer() {
      return der.subarray(issuer.start, issuer.end);
    },
    subject: subject.map(({ oid, value }) => ({ oid, value })),
    get subjectText() {
      return (text ??= nameText(subject));
    },
    notBefore,
    notAfter,
    extensions,
  };
}

/** RFC 5280 4.2.1.12: the key purposes of an ExtendedKeyUsage extension value (SEQUENCE OF OID). */
export function readExtendedKeyUsage(value: Uint8Array): string[] {
  const top = derReadAll(value);
  return derChildren(value, derExpect(top, DER_TAG.SEQUENCE, 'ExtendedKeyUsage')).map((el) => derOid(value, derExpect(el, DER_TAG.OID, 'a key purpose')));
}

/** The DER Name that issued a CRL (RFC 5280 5.1: the issuer field of TBSCertList), for byte comparison. */
export function crlIssuerDer(der: Uint8Array): Uint8Array {
  const tbs = derChildren(der, derExpect(derRead(der), DER_TAG.SEQUENCE, 'a CertificateList'))[0];
  const fields = derChildren(der, derExpect(tbs, DER_TAG.SEQUENCE, 'a TBSCertList'));
  const i = fields[0]?.tag === DER_TAG.INTEGER ? 1 : 0; // version, present in v2 CRLs
  derExpect(fields[i], DER_TAG.SEQUENCE, 'the signature algorithm');
  const issuer = derExpect(fields[i + 1], DER_TAG.SEQUENCE, 'the CRL issuer');
  return der.subarray(issuer.start, issuer.end);
}
