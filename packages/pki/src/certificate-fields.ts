// The fields of an X.509 certificate that verifyCertificate reads, decoded straight from the DER (RFC 5280
// 4.1, ITU-T X.690 8.1). @peculiar/x509 parses every field and extension into objects (about 1 ms per
// certificate here); a login needs the subject, the validity and one extension. Signatures, issuer/key-identifier
// matching and the CA flag stay with node:crypto (OpenSSL). The reader walks offsets in the one input buffer
// (no views per element, a few microseconds per certificate) and refuses anything that is not DER-shaped.

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
  /** The subject as text, `CN=..., O=...` (for messages only; built on first use). */
  readonly subjectText: string;
  readonly notBefore: Date;
  readonly notAfter: Date;
  /** Extensions by OID; a certificate with the same extension twice is refused (RFC 5280 4.2). */
  readonly extensions: ReadonlyMap<string, RawExtension>;
}

const TAG = { boolean: 0x01, integer: 0x02, octetString: 0x04, oid: 0x06, sequence: 0x30, set: 0x31, utcTime: 0x17, generalizedTime: 0x18 } as const;

/** A DER element by offsets into the input: tag, where its contents start and end. */
interface El {
  readonly tag: number;
  readonly start: number;
  readonly body: number;
  readonly end: number;
}

const fail = (what: string): never => {
  throw new RangeError(`certificate: ${what}`);
};

/** X.690 8.1.2-8.1.3: one element at `at`, which must end by `limit`; definite, minimal lengths only. */
function readAt(buf: Uint8Array, at: number, limit: number): El {
  if (at + 2 > limit) fail('truncated header');
  const tag = buf[at]!;
  if ((tag & 0x1f) === 0x1f) fail('multi-byte tag');
  let len = buf[at + 1]!;
  let body = at + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 4) fail('unsupported length');
    if (body + n > limit) fail('truncated length');
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + buf[body + i]!;
    if (len < 128 || (n > 1 && buf[body] === 0)) fail('non-minimal length');
    body += n;
  }
  if (body + len > limit) fail('truncated contents');
  return { tag, start: at, body, end: body + len };
}

/** The children of a constructed element. */
function childrenOf(buf: Uint8Array, parent: El): El[] {
  const out: El[] = [];
  for (let at = parent.body; at < parent.end; ) {
    const child = readAt(buf, at, parent.end);
    out.push(child);
    at = child.end;
  }
  return out;
}

function need(el: El | undefined, tag: number, what: string): El {
  if (el === undefined || el.tag !== tag) fail(`expected ${what}`);
  return el!;
}

/** X.690 8.19: the dotted form of an OBJECT IDENTIFIER's contents. */
function oidAt(buf: Uint8Array, el: El): string {
  if (el.end === el.body || (buf[el.end - 1]! & 0x80) !== 0) fail('malformed OID');
  let out = '';
  let v = 0;
  let first = true;
  for (let i = el.body; i < el.end; i++) {
    const b = buf[i]!;
    if (v === 0 && b === 0x80) fail('non-minimal OID arc');
    v = v * 128 + (b & 0x7f);
    if (v > Number.MAX_SAFE_INTEGER) fail('OID arc too large');
    if (!(b & 0x80)) {
      if (first) {
        const a = v < 80 ? Math.floor(v / 40) : 2;
        out = `${a}.${v - a * 40}`;
        first = false;
      } else out += `.${v}`;
      v = 0;
    }
  }
  return out;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });
const latin1 = (buf: Uint8Array, from: number, to: number): string => Buffer.from(buf.buffer, buf.byteOffset + from, to - from).toString('latin1');
const hex = (buf: Uint8Array, from: number, to: number): string => Buffer.from(buf.buffer, buf.byteOffset + from, to - from).toString('hex');

/**
 * An attribute value as text, the way @peculiar/x509's `Name.getField` reads it (so identities read here and
 * by the provisioning code agree): the DirectoryString choices and IA5String decoded, anything else as the
 * hex of its whole encoding.
 */
function attributeValue(buf: Uint8Array, el: El): string {
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
function readName(buf: Uint8Array, name: El): Array<NameAttribute & { readonly rdn: number }> {
  const attributes: Array<NameAttribute & { rdn: number }> = [];
  const rdns = childrenOf(buf, need(name, TAG.sequence, 'a Name'));
  for (let r = 0; r < rdns.length; r++) {
    for (const atv of childrenOf(buf, need(rdns[r], TAG.set, 'a RelativeDistinguishedName'))) {
      const parts = childrenOf(buf, need(atv, TAG.sequence, 'an AttributeTypeAndValue'));
      if (parts.length !== 2) fail('malformed AttributeTypeAndValue');
      attributes.push({ oid: oidAt(buf, need(parts[0], TAG.oid, 'an attribute type')), value: attributeValue(buf, parts[1]!), rdn: r });
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

/** Two ASCII digits at `i` as a number (no sign, no spaces: X.680 time values are digits only). */
function two(buf: Uint8Array, i: number): number {
  const a = buf[i]! - 0x30;
  const b = buf[i + 1]! - 0x30;
  if (a < 0 || a > 9 || b < 0 || b > 9) fail('malformed time');
  return a * 10 + b;
}

/** RFC 5280 4.1.2.5: UTCTime YYMMDDHHMMSSZ (YY >= 50 is 19YY) or GeneralizedTime YYYYMMDDHHMMSSZ, UTC only. */
function readTime(buf: Uint8Array, el: El | undefined): Date {
  if (el === undefined || (el.tag !== TAG.utcTime && el.tag !== TAG.generalizedTime)) return fail('expected a time');
  const long = el.tag === TAG.generalizedTime;
  const { body, end } = el;
  if (end - body !== (long ? 15 : 13) || buf[end - 1] !== 0x5a /* Z */) fail('time is not in RFC 5280 form');
  let year = long ? two(buf, body) * 100 + two(buf, body + 2) : two(buf, body);
  if (!long) year += year >= 50 ? 1900 : 2000;
  const o = body + (long ? 4 : 2);
  const [month, day, hour, minute, second] = [two(buf, o), two(buf, o + 2), two(buf, o + 4), two(buf, o + 6), two(buf, o + 8)];
  const d = new Date(Date.UTC(year, month - 1, day, hour, minute, second));
  // Refuse out-of-range fields that Date.UTC would silently roll over (month 13, day 32, hour 24, ...).
  if (d.getUTCFullYear() !== year || d.getUTCMonth() !== month - 1 || d.getUTCDate() !== day || d.getUTCHours() !== hour || d.getUTCMinutes() !== minute || second > 59) {
    fail('time out of range');
  }
  return d;
}

/**
 * Decodes the fields of a DER certificate (RFC 5280 4.1) that verification reads.
 *
 * @throws RangeError when the DER does not have the shape of a certificate.
 */
export function readCertificateFields(der: Uint8Array): CertificateFields {
  const top = readAt(der, 0, der.length);
  if (top.end !== der.length) fail('trailing bytes');
  const tbs = childrenOf(der, need(top, TAG.sequence, 'a Certificate'))[0];
  const fields = childrenOf(der, need(tbs, TAG.sequence, 'a TBSCertificate'));
  let i = 0;
  if (fields[0]?.tag === 0xa0) i++; // [0] EXPLICIT version
  need(fields[i++], TAG.integer, 'the serial number');
  need(fields[i++], TAG.sequence, 'the signature algorithm');
  const issuer = need(fields[i++], TAG.sequence, 'the issuer');
  const validity = childrenOf(der, need(fields[i++], TAG.sequence, 'the validity'));
  const subject = readName(der, need(fields[i++], TAG.sequence, 'the subject'));
  need(fields[i++], TAG.sequence, 'the subject public key info');
  if (validity.length !== 2) fail('malformed validity');
  const extensions = new Map<string, RawExtension>();
  for (; i < fields.length; i++) {
    const f = fields[i]!;
    if (f.tag === 0x81 || f.tag === 0x82) continue; // [1] issuerUniqueID, [2] subjectUniqueID
    if (f.tag !== 0xa3) fail('unexpected field');
    const wrapped = childrenOf(der, f);
    if (wrapped.length !== 1) fail('malformed extensions');
    for (const ext of childrenOf(der, need(wrapped[0], TAG.sequence, 'extensions'))) {
      const parts = childrenOf(der, need(ext, TAG.sequence, 'an extension'));
      const oid = oidAt(der, need(parts[0], TAG.oid, 'an extension id'));
      let critical = false;
      let at = 1;
      if (parts[1]?.tag === TAG.boolean) {
        critical = parts[1].end - parts[1].body === 1 && der[parts[1].body] !== 0;
        at = 2;
      }
      const value = need(parts[at], TAG.octetString, 'an extension value');
      if (parts.length !== at + 1) fail('malformed extension');
      if (extensions.has(oid)) fail(`extension ${oid} appears twice`);
      extensions.set(oid, { critical, value: der.subarray(value.body, value.end) });
    }
  }
  const notBefore = readTime(der, validity[0]);
  const notAfter = readTime(der, validity[1]);
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
  const top = readAt(value, 0, value.length);
  if (top.end !== value.length) fail('trailing bytes in ExtendedKeyUsage');
  return childrenOf(value, need(top, TAG.sequence, 'ExtendedKeyUsage')).map((el) => oidAt(value, need(el, TAG.oid, 'a key purpose')));
}

/** The DER Name that issued a CRL (RFC 5280 5.1: the issuer field of TBSCertList), for byte comparison. */
export function crlIssuerDer(der: Uint8Array): Uint8Array {
  const tbs = childrenOf(der, need(readAt(der, 0, der.length), TAG.sequence, 'a CertificateList'))[0];
  const fields = childrenOf(der, need(tbs, TAG.sequence, 'a TBSCertList'));
  const i = fields[0]?.tag === TAG.integer ? 1 : 0; // version, present in v2 CRLs
  need(fields[i], TAG.sequence, 'the signature algorithm');
  const issuer = need(fields[i + 1], TAG.sequence, 'the CRL issuer');
  return der.subarray(issuer.start, issuer.end);
}
