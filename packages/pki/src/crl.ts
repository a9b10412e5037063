import { constants, verify, webcrypto, X509Certificate as NodeX509 } from 'node:crypto';
import { derChildren, derContent, derExpect, derInteger, derOid, derRaw, derReadAll, derUnsigned, DER_TAG, PkiError } from '@flare/core';
import type { CertificateAuthority } from './certificate.js';
import { crlIssuerDer, readCertificateFields } from './certificate-fields.js';
import { normalizeSerial, parseCertificate } from './identity.js';
import { keyTypeOf, toSigningCryptoKey, webAlgorithm } from './keys.js';
import { x509 } from './x509.js';

/** One revoked certificate in a {@link Crl}. */
export interface RevokedEntry {
  /** Serial number, lowercase hex without leading zeros. */
  readonly serial: string;
  readonly date: Date;
  /** RFC 5280 5.3.1 reason code, when the CRL gives one. */
  readonly reason?: number;
}

/** A parsed certificate revocation list. */
export interface Crl {
  readonly pem: string;
  /** The issuer's distinguished name, as text. */
  readonly issuer: string;
  readonly thisUpdate: Date;
  readonly nextUpdate?: Date;
  /**
   * RFC 5280 5.2.3 CRL number: grows with every CRL the root issues, so a participant can refuse an older CRL
   * (see {@link acceptNewerCrl}). Undefined when the CRL carries none (every CRL FLARE-TS issues does).
   */
  readonly crlNumber?: bigint;
  /** Revoked serials (normalized: lowercase hex, no leading zeros). */
  readonly revoked: ReadonlyMap<string, RevokedEntry>;
  /** True when loadCrl checked the signature against a root CA (the `rootCaPem` option). */
  readonly verified: boolean;
}

/** Options of {@link loadCrl}. */
export interface LoadCrlOptions {
  /** The project's root CA: when given, the CRL must be issued and signed by it (else E_CRL_INVALID). */
  readonly rootCaPem?: string;
}

const SHA256_SIGNATURES = new Set(['1.2.840.10045.4.3.2', '1.2.840.113549.1.1.11']);

/**
 * Parses a CRL from PEM or DER and, with `rootCaPem`, checks that the project root issued and signed it.
 * Always pass `rootCaPem` for a CRL that arrives from outside (a kit, the network).
 *
 * @throws PkiError E_CRL_INVALID.
 * @example
 * ```ts
 * const crl = loadCrl(kit.crlPem!, { rootCaPem: kit.rootCaPem });
 * if (isRevoked(peerCertPem, crl)) refuse();
 * ```
 */
export function loadCrl(pemOrDer: string | Uint8Array, options: LoadCrlOptions = {}): Crl {
  let der: Uint8Array;
  let parsed: x509.X509Crl;
  try {
    der = typeof pemOrDer === 'string' ? new Uint8Array(x509.PemConverter.decodeFirst(pemOrDer)) : pemOrDer;
    parsed = new x509.X509Crl(der);
  } catch (e) {
    throw new PkiError('E_CRL_INVALID', 'the CRL is not a parsable X.509 CRL', { cause: e });
  }
  const revoked = new Map<string, RevokedEntry>();
  for (const entry of parsed.entries) {
    const serial = normalizeSerial(entry.serialNumber);
    const reason = entry.reason;
    revoked.set(serial, { serial, date: entry.revocationDate, ...(reason === undefined ? {} : { reason }) });
  }
  let verified = false;
  if (options.rootCaPem !== undefined) {
    // (the root it was checked against is recorded below, so verifyCertificate can tell this root from another)
    const { node: root, cert: rootCert } = parseCertificate(options.rootCaPem, 'root CA certificate');
    if (parsed.issuer !== rootCert.subject) {
      throw new PkiError('E_CRL_INVALID', `the CRL was issued by '${parsed.issuer}', not by this project's root '${rootCert.subject}'`);
    }
    if (!verifyCrlSignature(der, root)) throw new PkiError('E_CRL_INVALID', "the CRL's signature does not verify with this project's root CA");
    verified = true;
  }
  const pem = typeof pemOrDer === 'string' ? pemOrDer : x509.PemConverter.encode(parsed.rawData, 'X509 CRL') + '\n';
  const nextUpdate = parsed.nextUpdate;
  const crlNumber = crlNumberOf(parsed);
  const crl: Crl = {
    pem,
    issuer: parsed.issuer,
    thisUpdate: parsed.thisUpdate,
    ...(nextUpdate === undefined ? {} : { nextUpdate }),
    ...(crlNumber === undefined ? {} : { crlNumber }),
    revoked,
    verified,
  };
  if (verified) verifiedAgainst.set(crl, options.rootCaPem!);
  try {
    issuerNames.set(crl, Buffer.from(crlIssuerDer(der)));
  } catch {
    // Parsed by @peculiar/x509 but not by the DER reader: isRevoked compares issuers the slower way.
  }
  return crl;
}

/** RFC 5280 5.2.3 id-ce-cRLNumber. */
const CRL_NUMBER_OID = '2.5.29.20';

// RFC 5280 5.2.3: CRLNumber ::= INTEGER (0..MAX), at most 20 octets; at most once.
function crlNumberOf(parsed: x509.X509Crl): bigint | undefined {
  const found = parsed.extensions.filter((e) => e.type === CRL_NUMBER_OID);
  if (found.length === 0) return undefined;
  if (found.length > 1) throw new PkiError('E_CRL_INVALID', "the CRL's CRL number extension appears twice");
  const value = new Uint8Array(found[0]!.value);
  let n: bigint;
  try {
    n = derUnsigned(value, derExpect(derReadAll(value), DER_TAG.INTEGER, 'a CRL number (INTEGER)'));
  } catch (e) {
    throw new PkiError('E_CRL_INVALID', "the CRL's CRL number is not a non-negative DER INTEGER", { cause: e });
  }
  if (value.length > 2 + 21) throw new PkiError('E_CRL_INVALID', "the CRL's CRL number is longer than 20 octets");
  return n;
}

// RFC 5280 5.1: CertificateList ::= SEQUENCE { tbsCertList, signatureAlgorithm, signatureValue BIT STRING }.
function verifyCrlSignature(der: Uint8Array, root: NodeX509): boolean {
  try {
    const [tbs, alg, sig] = derChildren(der, derExpect(derReadAll(der), DER_TAG.SEQUENCE, 'a CertificateList'));
    if (!tbs || !alg || !sig || sig.tag !== DER_TAG.BIT_STRING) return false;
    const oid = derOid(der, derExpect(derChildren(der, alg)[0], DER_TAG.OID, 'the signature algorithm'));
    if (!SHA256_SIGNATURES.has(oid)) return false;
    const bits = derContent(der, sig);
    if (bits[0] !== 0) return false; // unused bits must be 0 for a signature
    const signature = bits.subarray(1);
    const signed = derRaw(der, tbs);
    const key = root.publicKey;
    if (key.asymmetricKeyType === 'rsa') return verify('sha256', signed, { key, padding: constants.RSA_PKCS1_PADDING }, signature);
    return verify('sha256', signed, key, signature);
  } catch {
    return false;
  }
}

/**
 * True when the certificate's serial is in the CRL. The CRL must come from the certificate's issuer (else
 * E_CRL_INVALID: a CRL of another CA says nothing about this certificate). Checks the CRL's signature only if
 * it was loaded with `rootCaPem` (pass a string here and it is parsed without one).
 *
 * @throws PkiError E_CRL_INVALID or E_CERT_MALFORMED.
 */
export function isRevoked(cert: string | Uint8Array | NodeX509, crl: Crl | string | Uint8Array): boolean {
  const list = typeof crl === 'string' || crl instanceof Uint8Array ? loadCrl(crl) : crl;
  let node: NodeX509;
  try {
    node = cert instanceof NodeX509 ? cert : new NodeX509(typeof cert === 'string' ? cert : Buffer.from(cert));
  } catch (e) {
    throw new PkiError('E_CERT_MALFORMED', 'the certificate is not a parsable X.509 certificate', { cause: e });
  }
  // Same issuer name, byte for byte (DER), is the common case and needs no full parse; anything else is
  // compared as @peculiar/x509 prints names (RFC 4514 text), as before.
  const raw = node.raw;
  const listIssuer = issuerNames.get(list);
  let sameDer = false;
  if (listIssuer !== undefined) {
    try {
      sameDer = Buffer.from(readCertificateFields(raw).issuerDer).equals(listIssuer);
    } catch {
      sameDer = false;
    }
  }
  if (!sameDer) {
    const issuer = new x509.X509Certificate(raw).issuer;
    if (issuer !== list.issuer) throw new PkiError('E_CRL_INVALID', `the CRL is from '${list.issuer}' but the certificate was issued by '${issuer}'`);
  }
  return list.revoked.has(normalizeSerial(node.serialNumber));
}

/** The DER issuer name of each CRL loadCrl returned (kept beside the public shape, which it does not change). */
const issuerNames = new WeakMap<Crl, Buffer>();
/** The root CA (PEM) each verified CRL that loadCrl returned was checked against. */
const verifiedAgainst = new WeakMap<Crl, string>();

/** @internal The root CA PEM `crl` was verified against by {@link loadCrl}, if it was. */
export function crlVerifiedRoot(crl: Crl): string | undefined {
  return verifiedAgainst.get(crl);
}

/** Options of {@link createCrl}. */
export interface CreateCrlOptions {
  readonly issuer: CertificateAuthority;
  readonly entries: readonly RevokedEntry[];
  /** RFC 5280 5.2.3 CRL number: increases with every CRL the CA issues. */
  readonly crlNumber: number;
  readonly now?: Date;
  /** When the next CRL is due (default: 30 days later, never past the root's notAfter). */
  readonly nextUpdate?: Date;
}

/** Issues a CRL signed by the root (RFC 5280 5: v2, authority key identifier, CRL number). Returns PEM. */
export async function createCrl(options: CreateCrlOptions): Promise<string> {
  const now = options.now ?? new Date();
  const { node, cert } = parseCertificate(options.issuer.certPem, 'issuer certificate');
  const keyType = keyTypeOf(options.issuer.privateKey);
  if (keyType === undefined) throw new RangeError('issuer key must be an ECDSA P-256 or RSA-2048 private key');
  const rootEnd = new Date(node.validTo).getTime();
  const nextUpdate = options.nextUpdate ?? new Date(Math.min(now.getTime() + 30 * 86_400_000, rootEnd));
  const crl = await x509.X509CrlGenerator.create({
    issuer: cert.subjectName,
    thisUpdate: now,
    nextUpdate,
    signingKey: await toSigningCryptoKey(options.issuer.privateKey),
    signingAlgorithm: webAlgorithm(keyType).signing,
    entries: options.entries.map((e) => ({ serialNumber: e.serial.length % 2 ? `0${e.serial}` : e.serial, revocationDate: e.date, ...(e.reason === undefined ? {} : { reason: e.reason }) })),
    extensions: [
      await x509.AuthorityKeyIdentifierExtension.create(cert, false, webcrypto),
      new x509.Extension('2.5.29.20', false, derInteger(options.crlNumber)),
    ],
  });
  // RFC 7468 5: the label is "X509 CRL" (openssl reads nothing else); @peculiar/x509 writes "CRL".
  return x509.PemConverter.encode(crl.rawData, 'X509 CRL') + '\n';
}
