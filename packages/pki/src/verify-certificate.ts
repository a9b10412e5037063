import { createHash, X509Certificate as NodeX509, type KeyObject } from 'node:crypto';
import { PkiError, type Identity } from '@flare/core';
import { readCertificateFields, readExtendedKeyUsage, type CertificateFields } from './certificate-fields.js';
import { crlVerifiedRoot, loadCrl, type Crl } from './crl.js';
import { identityOfAttributes, normalizeSerial, parseCertificate, type SubjectIdentity } from './identity.js';
import type { ParticipantType } from './project.js';

/** Options of {@link verifyCertificate}. */
export interface VerifyCertificateOptions {
  /** The project's root CA (from the kit's startup/rootCA.pem). */
  readonly rootCaPem: string;
  /**
   * The project's CRL. A string is parsed and its signature checked against `rootCaPem`; a `Crl` object is
   * used as it is only when `loadCrl` verified it against this same `rootCaPem`, and checked here otherwise.
   */
  readonly crl?: Crl | string;
  /** The time to check validity at (default: now). Inject it in tests. */
  readonly at?: Date;
  /** The participant name the peer claims or must have (compared with CN exactly). */
  readonly expectedName?: string;
  /** The participant type the peer must be (compared with the subject OU). */
  readonly expectedType?: ParticipantType;
}

/** What a verified certificate says about its holder. */
export interface VerifiedCertificate extends Identity {
  readonly notBefore: Date;
  readonly notAfter: Date;
  /** SHA-256 of the DER certificate, lowercase hex. */
  readonly fingerprint: string;
  /** Serial number, lowercase hex without leading zeros. */
  readonly serial: string;
  /**
   * The certificate's public key (node:crypto), e.g. to check the holder's signature without parsing the
   * certificate again (OpenSSL 3 spends about 0.1 ms decoding a key). Shared between calls: key objects are
   * immutable.
   */
  readonly publicKey: KeyObject;
}

const EKU_SERVER = '1.3.6.1.5.5.7.3.1';
const EKU_CLIENT = '1.3.6.1.5.5.7.3.2';
/** RFC 5280 4.2.1.12 id-ce-extKeyUsage. */
const EKU_OID = '2.5.29.37';

/**
 * Verifies a participant certificate against the project root, in this order: parsable, issued and signed by
 * the root, valid at `at` (root too), not revoked, of the expected type, with the expected name. Synchronous.
 *
 * Certificates are parsed with node:crypto (OpenSSL: signature, issuer match, CA flag) and a small DER reader
 * for the subject, validity and extended key usage; parsed roots and leaves, the (leaf, root) signature result
 * and verified CRLs are remembered by exact content (bounded LRU), so a repeated login costs well under a
 * tenth of a millisecond. Every check still runs on every call.
 *
 * @throws PkiError E_CERT_MALFORMED, E_CERT_UNTRUSTED, E_CERT_NOT_YET_VALID, E_CERT_EXPIRED, E_CERT_REVOKED,
 *   E_CERT_WRONG_TYPE, E_CERT_NAME_MISMATCH, E_CRL_INVALID.
 * @example
 * ```ts
 * const peer = verifyCertificate(peerPem, { rootCaPem: kit.rootCaPem, crl: kit.crlPem, expectedType: 'server', expectedName: kit.server.name });
 * ```
 */
export function verifyCertificate(certPem: string | Uint8Array, options: VerifyCertificateOptions): VerifiedCertificate {
  const at = options.at ?? new Date();
  const root = rootOf(options.rootCaPem);
  const leaf = leafOf(certPem);
  if (!root.isCa) throw new PkiError('E_CERT_MALFORMED', 'the root CA certificate is not a CA certificate (BasicConstraints CA:false)');
  if (leaf.isCa) throw new PkiError('E_CERT_UNTRUSTED', 'a CA certificate was presented as a participant certificate');
  // Issuer name and signature: checkIssued compares names and key identifiers, verify checks the signature
  // (OpenSSL, through node:crypto). The answer depends only on the two certificates' exact bytes, so it is
  // remembered per (leaf, root) pair: a site that logs in again costs no second signature check.
  let issued = leaf.issuedBy.get(root);
  if (issued === undefined) {
    issued = leaf.node.checkIssued(root.node) && leaf.node.verify(root.node.publicKey);
    leaf.issuedBy.set(root, issued);
  }
  if (!issued) throw new PkiError('E_CERT_UNTRUSTED', `the certificate of '${leaf.fields.subjectText}' was not issued by this project's root CA '${root.subject}'`);
  checkValidity(root.fields, root.subject, at, 'the root CA certificate');
  checkValidity(leaf.fields, leaf.fields.subjectText, at, 'the certificate');

  if (options.crl !== undefined) {
    // A CRL object counts as checked only if loadCrl checked it against this very root; any other (a string,
    // an unchecked CRL, one checked against another root, one built by hand) is checked here, once per content.
    const given = options.crl;
    const crl = typeof given !== 'string' && given.verified && crlVerifiedRoot(given) === options.rootCaPem ? given : verifiedCrl(typeof given === 'string' ? given : given.pem, options.rootCaPem);
    // The leaf's issuer is the root (checked above, by OpenSSL's name comparison), so the CRL must be the root's.
    if (crl.issuer !== root.subject) throw new PkiError('E_CRL_INVALID', `the CRL is from '${crl.issuer}' but the certificate was issued by '${root.subject}'`);
    const entry = crl.revoked.get(leaf.serial);
    if (entry !== undefined) {
      throw new PkiError('E_CERT_REVOKED', `the certificate of '${leaf.fields.subjectText}' (serial ${leaf.serial}) was revoked on ${entry.date.toISOString()}`);
    }
  }

  const id = leaf.identity();
  const eku = leaf.eku;
  const needed = id.type === 'server' ? [EKU_SERVER] : [EKU_CLIENT];
  if (!needed.every((u) => eku.includes(u))) throw new PkiError('E_CERT_WRONG_TYPE', `the ${id.type} certificate of '${id.name}' lacks the extended key usage a ${id.type} needs`);
  if (options.expectedType !== undefined && id.type !== options.expectedType) {
    throw new PkiError('E_CERT_WRONG_TYPE', `'${id.name}' holds a ${id.type} certificate where a ${options.expectedType} certificate is required`);
  }
  if (options.expectedName !== undefined && id.name !== options.expectedName) {
    throw new PkiError('E_CERT_NAME_MISMATCH', `the certificate is for '${id.name}', not '${options.expectedName}'`);
  }
  return {
    ...id,
    notBefore: new Date(leaf.fields.notBefore),
    notAfter: new Date(leaf.fields.notAfter),
    fingerprint: leaf.fingerprint,
    serial: leaf.serial,
    publicKey: leaf.node.publicKey,
  };
}

// Parsed certificates are kept by their exact content (the PEM text, or the DER bytes), in small LRU maps:
// a server checks the same root on every login and, when a site reconnects, the same client certificate.
// Nothing that depends on the time or on the caller's options is cached: validity, revocation, type and name
// are checked on every call. Inputs larger than any certificate are never kept.
const ROOTS_KEPT = 8;
const LEAVES_KEPT = 1024;
const LARGEST_KEPT = 16 * 1024;

interface RootEntry {
  readonly node: NodeX509;
  readonly isCa: boolean;
  /** The subject as @peculiar/x509 prints it: what loadCrl records as a CRL's issuer. */
  readonly subject: string;
  readonly fields: CertificateFields;
}

interface LeafEntry {
  readonly node: NodeX509;
  readonly isCa: boolean;
  readonly fields: CertificateFields;
  readonly fingerprint: string;
  readonly serial: string;
  readonly eku: readonly string[];
  /** The identity, or the E_CERT_MALFORMED refusal it gives (thrown where the checks reach it). */
  identity(): SubjectIdentity;
  /** Whether a root issued and signed this certificate, per root entry. */
  readonly issuedBy: WeakMap<RootEntry, boolean>;
}

const roots = new Map<string, RootEntry>();
const leaves = new Map<string, LeafEntry>();

function cacheKey(input: string | Uint8Array): string | undefined {
  if (input.length > LARGEST_KEPT) return undefined;
  return typeof input === 'string' ? input : `der:${Buffer.from(input.buffer, input.byteOffset, input.byteLength).toString('base64')}`;
}

function remember<V>(map: Map<string, V>, limit: number, key: string | undefined, make: () => V): V {
  if (key === undefined) return make();
  const hit = map.get(key);
  if (hit !== undefined) {
    // Least recently used goes first: move a hit to the end.
    map.delete(key);
    map.set(key, hit);
    return hit;
  }
  const value = make();
  if (map.size >= limit) map.delete(map.keys().next().value!);
  map.set(key, value);
  return value;
}

function rootOf(rootCaPem: string): RootEntry {
  return remember(roots, ROOTS_KEPT, cacheKey(rootCaPem), () => {
    const { node, cert } = parseCertificate(rootCaPem, 'root CA certificate');
    return { node, isCa: node.ca, subject: cert.subject, fields: fieldsOf(node.raw, 'root CA certificate') };
  });
}

function leafOf(certPem: string | Uint8Array): LeafEntry {
  return remember(leaves, LEAVES_KEPT, cacheKey(certPem), () => {
    let node: NodeX509;
    try {
      node = new NodeX509(typeof certPem === 'string' ? certPem : Buffer.from(certPem));
    } catch (e) {
      throw new PkiError('E_CERT_MALFORMED', 'the certificate is not a parsable X.509 certificate', { cause: e });
    }
    const der = node.raw;
    const fields = fieldsOf(der, 'certificate');
    let eku: string[] = [];
    const ekuExt = fields.extensions.get(EKU_OID);
    if (ekuExt !== undefined) {
      try {
        eku = readExtendedKeyUsage(ekuExt.value);
      } catch (e) {
        throw new PkiError('E_CERT_MALFORMED', 'the certificate is not a parsable X.509 certificate', { cause: e });
      }
    }
    let identity: SubjectIdentity | undefined;
    let refusal: PkiError | undefined;
    try {
      identity = identityOfAttributes(fields.subject);
    } catch (e) {
      if (!(e instanceof PkiError)) throw e;
      refusal = e;
    }
    return {
      node,
      isCa: node.ca,
      fields,
      fingerprint: createHash('sha256').update(der).digest('hex'),
      serial: normalizeSerial(node.serialNumber),
      eku,
      identity: () => {
        if (identity !== undefined) return identity;
        throw new PkiError(refusal!.code as 'E_CERT_MALFORMED', refusal!.message);
      },
      issuedBy: new WeakMap(),
    };
  });
}

function fieldsOf(der: Uint8Array, what: string): CertificateFields {
  try {
    return readCertificateFields(der);
  } catch (e) {
    throw new PkiError('E_CERT_MALFORMED', `the ${what} is not a parsable X.509 certificate`, { cause: e });
  }
}

// Logins check every peer against the same CRL: parse and verify it once per (root, CRL), not per call.
const crlCache = new Map<string, Crl>();
function verifiedCrl(pem: string, rootCaPem: string): Crl {
  const key = pem.length + rootCaPem.length > 4 * 1024 * 1024 ? undefined : `${rootCaPem}\u0000${pem}`;
  return remember(crlCache, 8, key, () => loadCrl(pem, { rootCaPem }));
}

function checkValidity(fields: CertificateFields, subject: string, at: Date, what: string): void {
  if (at.getTime() < fields.notBefore.getTime()) throw new PkiError('E_CERT_NOT_YET_VALID', `${what} of '${subject}' is valid only from ${fields.notBefore.toISOString()} (checked at ${at.toISOString()})`);
  if (at.getTime() > fields.notAfter.getTime()) throw new PkiError('E_CERT_EXPIRED', `${what} of '${subject}' expired on ${fields.notAfter.toISOString()} (checked at ${at.toISOString()})`);
}
