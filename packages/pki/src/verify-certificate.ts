import { PkiError } from '@flare/core';
import { isRevoked, loadCrl, type Crl } from './crl.js';
import { fingerprintOf, identityOf, normalizeSerial, parseCertificate } from './identity.js';
import type { ParticipantType } from './project.js';
import { x509 } from './x509.js';

/** Options of {@link verifyCertificate}. */
export interface VerifyCertificateOptions {
  /** The project's root CA (from the kit's startup/rootCA.pem). */
  readonly rootCaPem: string;
  /** The project's CRL; a string is parsed and its signature checked against `rootCaPem`. */
  readonly crl?: Crl | string;
  /** The time to check validity at (default: now). Inject it in tests. */
  readonly at?: Date;
  /** The participant name the peer claims or must have (compared with CN exactly). */
  readonly expectedName?: string;
  /** The participant type the peer must be (compared with the subject OU). */
  readonly expectedType?: ParticipantType;
}

/** What a verified certificate says about its holder. */
export interface VerifiedCertificate {
  readonly name: string;
  readonly org: string;
  readonly type: ParticipantType;
  readonly role?: string;
  readonly notBefore: Date;
  readonly notAfter: Date;
  /** SHA-256 of the DER certificate, lowercase hex. */
  readonly fingerprint: string;
  /** Serial number, lowercase hex without leading zeros. */
  readonly serial: string;
}

const EKU_SERVER = '1.3.6.1.5.5.7.3.1';
const EKU_CLIENT = '1.3.6.1.5.5.7.3.2';

/**
 * Verifies a participant certificate against the project root, in this order: parsable, issued and signed by
 * the root, valid at `at` (root too), not revoked, of the expected type, with the expected name. Synchronous.
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
  const root = parseCertificate(options.rootCaPem, 'root CA certificate');
  const leaf = parseCertificate(certPem);
  if (!root.node.ca) throw new PkiError('E_CERT_MALFORMED', 'the root CA certificate is not a CA certificate (BasicConstraints CA:false)');
  if (leaf.node.ca) throw new PkiError('E_CERT_UNTRUSTED', 'a CA certificate was presented as a participant certificate');
  // Issuer name and signature: checkIssued compares names and key identifiers, verify checks the signature.
  if (!leaf.node.checkIssued(root.node) || !leaf.node.verify(root.node.publicKey)) {
    throw new PkiError('E_CERT_UNTRUSTED', `the certificate of '${leaf.cert.subject}' was not issued by this project's root CA '${root.cert.subject}'`);
  }
  checkValidity(root.cert, at, 'the root CA certificate');
  checkValidity(leaf.cert, at, 'the certificate');

  if (options.crl !== undefined) {
    const crl = typeof options.crl === 'string' || !options.crl.verified ? verifiedCrl(typeof options.crl === 'string' ? options.crl : options.crl.pem, options.rootCaPem) : options.crl;
    if (isRevoked(leaf.node, crl)) {
      const entry = crl.revoked.get(normalizeSerial(leaf.node.serialNumber));
      throw new PkiError('E_CERT_REVOKED', `the certificate of '${leaf.cert.subject}' (serial ${normalizeSerial(leaf.node.serialNumber)}) was revoked on ${entry?.date.toISOString() ?? 'an unknown date'}`);
    }
  }

  const id = identityOf(leaf.cert.subjectName);
  const eku = leaf.cert.getExtension(x509.ExtendedKeyUsageExtension)?.usages.map(String) ?? [];
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
    notBefore: leaf.cert.notBefore,
    notAfter: leaf.cert.notAfter,
    fingerprint: fingerprintOf(leaf.node),
    serial: normalizeSerial(leaf.node.serialNumber),
  };
}

// Logins check every peer against the same CRL: parse and verify it once per (CRL, root), not per call.
const crlCache = new Map<string, Crl>();
function verifiedCrl(pem: string, rootCaPem: string): Crl {
  const key = `${rootCaPem}\u0000${pem}`;
  let crl = crlCache.get(key);
  if (!crl) {
    crl = loadCrl(pem, { rootCaPem });
    if (crlCache.size >= 8) crlCache.delete(crlCache.keys().next().value!);
    crlCache.set(key, crl);
  }
  return crl;
}

function checkValidity(cert: x509.X509Certificate, at: Date, what: string): void {
  if (at.getTime() < cert.notBefore.getTime()) throw new PkiError('E_CERT_NOT_YET_VALID', `${what} of '${cert.subject}' is valid only from ${cert.notBefore.toISOString()} (checked at ${at.toISOString()})`);
  if (at.getTime() > cert.notAfter.getTime()) throw new PkiError('E_CERT_EXPIRED', `${what} of '${cert.subject}' expired on ${cert.notAfter.toISOString()} (checked at ${at.toISOString()})`);
}
