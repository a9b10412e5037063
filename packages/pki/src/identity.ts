import { createHash, X509Certificate as NodeX509 } from 'node:crypto';
import { PARTICIPANT_TYPES, PkiError, type Identity, type ParticipantType } from '@flare/core';
import { x509 } from './x509.js';

// Where a FLARE-TS certificate keeps who it belongs to. CN and O and (admins) unstructuredName are FLARE's
// own (nvflare/lighter/impl/cert.py); OU = participant type is ours, so a client certificate can never pass
// as a server's (FLARE cannot tell them apart).
export const OID = {
  commonName: '2.5.4.3',
  organization: '2.5.4.10',
  organizationalUnit: '2.5.4.11',
  /** PKCS #9 unstructuredName (RFC 2985 5.4.2): FLARE puts the admin role here. */
  unstructuredName: '1.2.840.113549.1.9.2',
} as const;

const TYPES = new Set<string>(PARTICIPANT_TYPES);

/** Who a leaf certificate or request names: FLARE's CN/O/role and our participant type (@flare/core's one {@link Identity} shape). */
export type SubjectIdentity = Identity;

/** The subject of a FLARE-TS leaf: CN = name, O = org, OU = participant type, unstructuredName = admin role. */
export function subjectName(id: SubjectIdentity): x509.JsonName {
  const name: x509.JsonName = [{ [OID.commonName]: [id.name] }, { [OID.organization]: [id.org] }, { [OID.organizationalUnit]: [id.type] }];
  if (id.role !== undefined) name.push({ [OID.unstructuredName]: [id.role] });
  return name;
}

/** What identityOf reads from a name: every value of one attribute type. */
type FieldReader = Pick<x509.Name, 'getField'>;

function single(name: FieldReader, oid: string, what: string, required: boolean): string | undefined {
  const values = name.getField(oid);
  if (values.length > 1) throw new PkiError('E_CERT_MALFORMED', `the subject has ${values.length} ${what} values; exactly one is allowed`);
  if (values.length === 0 && required) throw new PkiError('E_CERT_MALFORMED', `the subject has no ${what}`);
  return values[0];
}

/** Reads the identity from a subject name; refuses duplicates and a missing or unknown type. */
export function identityOf(name: FieldReader): SubjectIdentity {
  const cn = single(name, OID.commonName, 'common name (CN)', true)!;
  const org = single(name, OID.organization, 'organization (O)', true)!;
  const type = single(name, OID.organizationalUnit, 'participant type (OU)', true)!;
  if (!TYPES.has(type)) throw new PkiError('E_CERT_MALFORMED', `the subject OU '${type}' is not a participant type (server, client, admin, relay)`);
  const role = single(name, OID.unstructuredName, 'role (unstructuredName)', false);
  return { name: cn, org, type: type as ParticipantType, ...(role === undefined ? {} : { role }) };
}

/**
 * The same reading as {@link identityOf}, from decoded name attributes (certificate-fields.ts): every value of
 * an OID across all RDNs counts, as in @peculiar/x509's `Name.getField`.
 */
export function identityOfAttributes(attributes: readonly { readonly oid: string; readonly value: string }[]): SubjectIdentity {
  return identityOf({ getField: (oid: string) => attributes.filter((a) => a.oid === oid).map((a) => a.value) });
}

/** Parses a PEM (or DER) certificate with both parsers: node's for signatures and dates, x509's for names. */
export function parseCertificate(pemOrDer: string | Uint8Array, what = 'certificate'): { node: NodeX509; cert: x509.X509Certificate } {
  try {
    const node = new NodeX509(typeof pemOrDer === 'string' ? pemOrDer : Buffer.from(pemOrDer));
    return { node, cert: new x509.X509Certificate(node.raw) };
  } catch (e) {
    throw new PkiError('E_CERT_MALFORMED', `the ${what} is not a parsable X.509 certificate`, { cause: e });
  }
}

/** SHA-256 of the DER certificate, lowercase hex: the fingerprint FLARE-TS shows and logs. */
export function fingerprintOf(node: NodeX509): string {
  return createHash('sha256').update(node.raw).digest('hex');
}

/** A serial number as lowercase hex without leading zeros, so node's and x509's spellings compare equal. */
export function normalizeSerial(serial: string): string {
  const s = serial.replace(/[^0-9a-fA-F]/g, '').toLowerCase().replace(/^0+/, '');
  return s === '' ? '0' : s;
}
