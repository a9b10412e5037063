// The fields of an X.509 certificate that verifyCertificate reads, decoded straight from the DER (RFC 5280
// 4.1) with the minimal reader in der.ts. @peculiar/x509 parses every field and extension into objects (about
// 1 ms per certificate here); a login needs the subject, the validity, the issuer name and one extension.
// Signatures, issuer/key-identifier matching and the CA flag stay with node:crypto (OpenSSL).

import { children, readElement, type DerElement } from './der.js';

/** One attribute of a distinguished name: its OID and its value as text. */
export interface NameAttribute {
  readonly oid: string;
  readonly value: string;
}

/** One extension (RFC 5280 4.1: extnID, critical, extnValue). */
export interface RawExtension {
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
  /** The subject as text, `CN=..., O=...` (for messages only). */
  readonly subjectText: string;
  readonly notBefore: Date;
  readonly notAfter: Date;
  /** Extensions by OID; a certificate with the same extension twice is refused (RFC 5280 4.2). */
  readonly extensions: ReadonlyMap<string, RawExtension>;
}

const TAG = { boolean: 0x01, integer: 0x02, bitString: 0x03, octetString: 0x04, oid: 0x06, sequence: 0x30, set: 0x31, utcTime: 0x17, generalizedTime: 0x18 } as const;

function need(el: DerElement | undefined, tag: number, what: string): DerElement {
  if (el === undefined || el.tag !== tag) throw new RangeError(`certificate: expected ${what}`);
  return el;
}

/** X.690 8.19: the dotted form of an OBJECT IDENTIFIER's contents. */
export function decodeOid(bytes: Uint8Array): string {
  if (bytes.length === 0 || (bytes[bytes.length - 1]! & 0x80) !== 0) throw new RangeError('certificate: malformed OID');
  const parts: number[] = [];
  let v = 0;
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i]!;
    if (v === 0 && b === 0x80) throw new RangeError('certificate: non-minimal OID arc');
    v = v * 128 + (b & 0x7f);
    if (v > Number.MAX_SAFE_INTEGER) throw new RangeError('certificate: OID arc too large');
    if (!(b & 0x80)) {
      parts.push(v);
      v = 0;
    }
  }
  const first = parts.shift()!;
  const a = first < 80 ? Math.floor(first / 40) : 2;
  return [a, first - a * 40, ...parts].join('.');
}

const utf8 = new TextDecoder('utf-8', { fatal: true });
const latin1 = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('latin1');
const hex = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');

/**
 * An attribute value as text, the way @peculiar/x509's `Name.getField` reads it (so identities read here and
 * by the provisioning code agree): the DirectoryString choices and IA5String decoded, anything else as the
 * hex of its whole encoding.
 */
function attributeValue(el: DerElement): string {
  const c = el.content;
  switch (el.tag) {
    case 0x0c: // UTF8String; invalid UTF-8 reads as Latin-1, as asn1js (under @peculiar/x509) reads it
      try {
        return utf8.decode(c);
      } catch {
        return latin1(c);
      }
    case 0x13: // PrintableString
    case 0x14: // TeletexString
    case 0x16: // IA5String
      return latin1(c);
    case 0x1e: {
      // BMPString: UCS-2, big-endian
      if (c.length % 2) throw new RangeError('certificate: odd BMPString');
      let s = '';
      for (let i = 0; i < c.length; i += 2) s += String.fromCharCode((c[i]! << 8) | c[i + 1]!);
      return s;
    }
    case 0x1c: {
      // UniversalString: UCS-4, big-endian
      if (c.length % 4) throw new RangeError('certificate: malformed UniversalString');
      let s = '';
      for (let i = 0; i < c.length; i += 4) s += String.fromCodePoint(((c[i]! << 24) | (c[i + 1]! << 16) | (c[i + 2]! << 8) | c[i + 3]!) >>> 0);
      return s;
    }
    default:
      return hex(el.raw);
  }
}

// Short names for the subject text in messages (RFC 4514 3, plus what @peculiar/x509 prints).
const SHORT: Record<string, string> = { '2.5.4.3': 'CN', '2.5.4.10': 'O', '2.5.4.11': 'OU', '2.5.4.6': 'C', '2.5.4.7': 'L', '2.5.4.8': 'ST', '0.9.2342.19200300.100.1.25': 'DC', '1.2.840.113549.1.9.1': 'E' };
const escapeValue = (v: string): string => v.replace(/([,+"\\<>;])/g, '\\$1').replace(/^([ #])/, '\\$1').replace(/ $/, '\\ ');

function readName(el: DerElement): { attributes: NameAttribute[]; text: string } {
  const attributes: NameAttribute[] = [];
  const rdns: string[] = [];
  for (const rdn of children(need(el, TAG.sequence, 'a Name'))) {
    const parts: string[] = [];
    for (const atv of children(need(rdn, TAG.set, 'a RelativeDistinguishedName'))) {
      const [type, value, extra] = children(need(atv, TAG.sequence, 'an AttributeTypeAndValue'));
      if (value === undefined || extra !== undefined) throw new RangeError('certificate: malformed AttributeTypeAndValue');
      const oid = decodeOid(need(type, TAG.oid, 'an attribute type').content);
      const text = attributeValue(value);
      attributes.push({ oid, value: text });
      parts.push(`${SHORT[oid] ?? oid}=${escapeValue(text)}`);
    }
    rdns.push(parts.join('+'));
  }
  return { attributes, text: rdns.join(', ') };
}

const digits = (s: string, from: number, n: number): number => {
  const part = s.slice(from, from + n);
  if (!/^[0-9]+$/.test(part) || part.length !== n) throw new RangeError('certificate: malformed time');
  return Number(part);
};

/** RFC 5280 4.1.2.5: UTCTime YYMMDDHHMMSSZ (YY >= 50 is 19YY) or GeneralizedTime YYYYMMDDHHMMSSZ, UTC only. */
function readTime(el: DerElement | undefined): Date {
  if (el === undefined || (el.tag !== TAG.utcTime && el.tag !== TAG.generalizedTime)) throw new RangeError('certificate: expected a time');
  const s = latin1(el.content);
  const long = el.tag === TAG.generalizedTime;
  if (s.length !== (long ? 15 : 13) || s[s.length - 1] !== 'Z') throw new RangeError('certificate: time is not in RFC 5280 form');
  let year = long ? digits(s, 0, 4) : digits(s, 0, 2);
  if (!long) year += year >= 50 ? 1900 : 2000;
  const o = long ? 4 : 2;
  const [month, day, hour, minute, second] = [digits(s, o, 2), digits(s, o + 2, 2), digits(s, o + 4, 2), digits(s, o + 6, 2), digits(s, o + 8, 2)];
  const t = Date.UTC(year, month - 1, day, hour, minute, second);
  const d = new Date(t);
  // Refuse out-of-range fields that Date.UTC would silently roll over (month 13, day 32, hour 24, ...).
  if (d.getUTCMonth() !== month - 1 || d.getUTCDate() !== day || d.getUTCHours() !== hour || d.getUTCMinutes() !== minute || second > 59) {
    throw new RangeError('certificate: time out of range');
  }
  return d;
}

/**
 * Decodes the fields of a DER certificate (RFC 5280 4.1) that verification reads.
 *
 * @throws RangeError when the DER does not have the shape of a certificate.
 */
export function readCertificateFields(der: Uint8Array): CertificateFields {
  const top = readElement(der);
  if (top.raw.length !== der.length) throw new RangeError('certificate: trailing bytes');
  const [tbs] = children(need(top, TAG.sequence, 'a Certificate'));
  const fields = children(need(tbs, TAG.sequence, 'a TBSCertificate'));
  let i = 0;
  if (fields[0]?.tag === 0xa0) i++; // [0] EXPLICIT version
  need(fields[i++], TAG.integer, 'the serial number');
  need(fields[i++], TAG.sequence, 'the signature algorithm');
  const issuer = need(fields[i++], TAG.sequence, 'the issuer');
  const validity = children(need(fields[i++], TAG.sequence, 'the validity'));
  const subject = readName(need(fields[i++], TAG.sequence, 'the subject'));
  need(fields[i++], TAG.sequence, 'the subject public key info');
  if (validity.length !== 2) throw new RangeError('certificate: malformed validity');
  const extensions = new Map<string, RawExtension>();
  for (; i < fields.length; i++) {
    const f = fields[i]!;
    if (f.tag === 0x81 || f.tag === 0x82) continue; // [1] issuerUniqueID, [2] subjectUniqueID
    if (f.tag !== 0xa3) throw new RangeError('certificate: unexpected field');
    const [list, extra] = children(f);
    if (extra !== undefined) throw new RangeError('certificate: malformed extensions');
    for (const ext of children(need(list, TAG.sequence, 'extensions'))) {
      const parts = children(need(ext, TAG.sequence, 'an extension'));
      const oid = decodeOid(need(parts[0], TAG.oid, 'an extension id').content);
      let critical = false;
      let at = 1;
      if (parts[1]?.tag === TAG.boolean) {
        critical = parts[1].content.length === 1 && parts[1].content[0] !== 0;
        at = 2;
      }
      const value = need(parts[at], TAG.octetString, 'an extension value');
      if (parts.length !== at + 1) throw new RangeError('certificate: malformed extension');
      if (extensions.has(oid)) throw new RangeError(`certificate: extension ${oid} appears twice`);
      extensions.set(oid, { critical, value: value.content });
    }
  }
  return { issuerDer: issuer.raw, subject: subject.attributes, subjectText: subject.text, notBefore: readTime(validity[0]), notAfter: readTime(validity[1]), extensions };
}

/** RFC 5280 4.2.1.12: the key purposes of an ExtendedKeyUsage extension value (SEQUENCE OF OID). */
export function readExtendedKeyUsage(value: Uint8Array): string[] {
  const top = readElement(value);
  if (top.raw.length !== value.length) throw new RangeError('certificate: trailing bytes in ExtendedKeyUsage');
  return children(need(top, TAG.sequence, 'ExtendedKeyUsage')).map((el) => decodeOid(need(el, TAG.oid, 'a key purpose').content));
}

/** The DER Name that issued a CRL (RFC 5280 5.1: the issuer field of TBSCertList), for byte comparison. */
export function crlIssuerDer(der: Uint8Array): Uint8Array {
  const [tbs] = children(need(readElement(der), TAG.sequence, 'a CertificateList'));
  const fields = children(need(tbs, TAG.sequence, 'a TBSCertList'));
  const i = fields[0]?.tag === TAG.integer ? 1 : 0; // version, present in v2 CRLs
  need(fields[i], TAG.sequence, 'the signature algorithm');
  return need(fields[i + 1], TAG.sequence, 'the CRL issuer').raw;
}
