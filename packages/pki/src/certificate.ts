import { randomBytes, webcrypto, type KeyObject } from 'node:crypto';
import { isIP } from 'node:net';
import { PkiError } from '@flare/core';
import { parseCertificate, subjectName, type SubjectIdentity, OID } from './identity.js';
import { assertKeyType, DEFAULT_KEY_TYPE, generateKeyPair, keyTypeOf, toSigningCryptoKey, webAlgorithm, type KeyType } from './keys.js';
import { MAX_COMMON_NAME } from './project.js';
import { x509 } from './x509.js';

const DAY_MS = 86_400_000;
/** FLARE's default validity for roots and leaves (nvflare/lighter/impl/cert.py): 360 days. */
export const DEFAULT_VALID_DAYS = 360;
// notBefore is set one hour in the past so a peer whose clock is a little behind still accepts a fresh
// certificate (the same margin public CAs use).
const BACKDATE_MS = 3_600_000;

/** A certificate authority able to sign: its certificate and its private key. */
export interface CertificateAuthority {
  readonly certPem: string;
  readonly privateKey: KeyObject;
}

/** A new root CA: certificate, key and key type. */
export interface RootCa extends CertificateAuthority {
  readonly keyType: KeyType;
}

/** Options of {@link createRootCa}. */
export interface CreateRootCaOptions {
  /** The root's CN: the project name (FLARE truncates it to 63 characters; so does loadProject). */
  readonly commonName: string;
  readonly keyType?: KeyType;
  /** Days of validity (default 360, FLARE's CertBuilder root_valid_days). */
  readonly validDays?: number;
  readonly now?: Date;
}

/**
 * Creates a self-signed project root CA: CN = project name, BasicConstraints CA:true (critical), KeyUsage
 * keyCertSign + cRLSign (critical), subject key identifier.
 *
 * @example
 * ```ts
 * const root = await createRootCa({ commonName: 'example_project' });
 * ```
 */
export async function createRootCa(options: CreateRootCaOptions): Promise<RootCa> {
  const keyType = options.keyType ?? DEFAULT_KEY_TYPE;
  assertKeyType(keyType);
  const validDays = options.validDays ?? DEFAULT_VALID_DAYS;
  if (!Number.isInteger(validDays) || validDays < 1) throw new RangeError(`"validDays" expected a positive integer, got ${validDays}`);
  if (options.commonName.length === 0 || options.commonName.length > MAX_COMMON_NAME) {
    throw new PkiError('E_CERT_CN_TOO_LONG', `root CA common name has ${options.commonName.length} characters; it must have 1 to ${MAX_COMMON_NAME}`);
  }
  const now = options.now ?? new Date();
  const pair = await generateKeyPair(keyType);
  const signingKey = await toSigningCryptoKey(pair.privateKey);
  const spki = pair.publicKey.export({ type: 'spki', format: 'der' });
  const publicKey = new x509.PublicKey(spki);
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: randomSerial(),
    subject: [{ [OID.commonName]: [options.commonName] }],
    issuer: [{ [OID.commonName]: [options.commonName] }],
    notBefore: new Date(now.getTime() - BACKDATE_MS),
    notAfter: new Date(now.getTime() + validDays * DAY_MS),
    publicKey: spki,
    signingKey,
    signingAlgorithm: webAlgorithm(keyType).signing,
    extensions: [
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign | x509.KeyUsageFlags.digitalSignature, true),
      await x509.SubjectKeyIdentifierExtension.create(publicKey, false, webcrypto),
    ],
  });
  return { certPem: cert.toString('pem') + '\n', privateKey: pair.privateKey, keyType };
}

/** Options of {@link issueCertificate}. */
export interface IssueCertificateOptions {
  /** The root CA that signs. */
  readonly issuer: CertificateAuthority;
  /** Who the certificate is for: CN = name, O = org, OU = type, unstructuredName = role (admins). */
  readonly subject: SubjectIdentity;
  /** The participant's public key (its private key never reaches the CA in distributed provisioning). */
  readonly publicKey: KeyObject;
  /**
   * Subject alternative names: IP addresses become IP entries, anything else DNS entries. Default: the server
   * gets its name; clients and relays DNS:<name> (as FLARE does); admins rfc822Name <name> (their name is an
   * email address).
   */
  readonly hosts?: readonly string[];
  /** Days of validity (default 360); the certificate never outlives its issuer. */
  readonly validDays?: number;
  readonly now?: Date;
}

/**
 * Issues a leaf certificate for a participant: BasicConstraints CA:false, KeyUsage (digitalSignature, plus
 * keyEncipherment for RSA keys), ExtendedKeyUsage by type (server: serverAuth+clientAuth; client/relay:
 * clientAuth+serverAuth; admin: clientAuth), SAN, subject and authority key identifiers. Returns PEM.
 *
 * @throws PkiError E_CERT_CN_TOO_LONG for a name over 64 characters, E_CERT_EXPIRED when the issuer has expired.
 * @example
 * ```ts
 * const pem = await issueCertificate({ issuer: root, subject: { name: 'site-1', org: 'nvidia', type: 'client' }, publicKey });
 * ```
 */
export async function issueCertificate(options: IssueCertificateOptions): Promise<string> {
  const { subject } = options;
  if (subject.name.length === 0 || subject.name.length > MAX_COMMON_NAME) {
    throw new PkiError('E_CERT_CN_TOO_LONG', `participant name has ${subject.name.length} characters; a certificate common name holds 1 to ${MAX_COMMON_NAME}`);
  }
  const keyType = keyTypeOf(options.publicKey);
  if (keyType === undefined) throw new PkiError('E_CERT_MALFORMED', 'the public key is neither ECDSA P-256 nor RSA-2048');
  const issuerType = keyTypeOf(options.issuer.privateKey);
  if (issuerType === undefined) throw new RangeError('issuer key must be an ECDSA P-256 or RSA-2048 private key');
  const validDays = options.validDays ?? DEFAULT_VALID_DAYS;
  if (!Number.isInteger(validDays) || validDays < 1) throw new RangeError(`"validDays" expected a positive integer, got ${validDays}`);
  const now = options.now ?? new Date();
  const { node: issuerNode, cert: issuerCert, aki } = await issuerOf(options.issuer.certPem);
  const issuerEnd = new Date(issuerNode.validTo);
  if (issuerEnd.getTime() <= now.getTime()) throw new PkiError('E_CERT_EXPIRED', `the root CA expired on ${issuerEnd.toISOString()}: it can issue no certificate`);
  // A leaf never outlives its root (FLARE does the same): clamp notAfter to the issuer's.
  const notAfter = new Date(Math.min(now.getTime() + validDays * DAY_MS, issuerEnd.getTime()));
  const spki = options.publicKey.export({ type: 'spki', format: 'der' });

  const eku =
    subject.type === 'server'
      ? [x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]
      : subject.type === 'admin'
        ? [x509.ExtendedKeyUsage.clientAuth]
        : [x509.ExtendedKeyUsage.clientAuth, x509.ExtendedKeyUsage.serverAuth];
  // RFC 5280 4.2.1.3; keyEncipherment only matters for RSA key transport (TLS 1.2 RSA suites).
  const usage = x509.KeyUsageFlags.digitalSignature | (keyType === 'rsa-2048' ? x509.KeyUsageFlags.keyEncipherment : 0);
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: randomSerial(),
    subject: subjectName(subject),
    issuer: issuerCert.subjectName,
    notBefore: new Date(now.getTime() - BACKDATE_MS),
    notAfter,
    publicKey: spki,
    signingKey: await toSigningCryptoKey(options.issuer.privateKey),
    signingAlgorithm: webAlgorithm(issuerType).signing,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(usage, true),
      new x509.ExtendedKeyUsageExtension(eku, false),
      new x509.SubjectAlternativeNameExtension(sanEntries(subject, options.hosts), false),
      await x509.SubjectKeyIdentifierExtension.create(new x509.PublicKey(spki), false, webcrypto),
      aki,
    ],
  });
  return cert.toString('pem') + '\n';
}

// The issuer's parsed certificate and authority key identifier, once per issuer (a few ms each otherwise).
const issuers = new Map<string, Promise<{ node: ReturnType<typeof parseCertificate>['node']; cert: x509.X509Certificate; aki: x509.AuthorityKeyIdentifierExtension }>>();
function issuerOf(certPem: string): Promise<{ node: ReturnType<typeof parseCertificate>['node']; cert: x509.X509Certificate; aki: x509.AuthorityKeyIdentifierExtension }> {
  let entry = issuers.get(certPem);
  if (!entry) {
    const parsed = parseCertificate(certPem, 'issuer certificate');
    entry = x509.AuthorityKeyIdentifierExtension.create(parsed.cert, false, webcrypto).then((aki) => ({ ...parsed, aki }));
    if (issuers.size >= 16) issuers.delete(issuers.keys().next().value!);
    issuers.set(certPem, entry);
  }
  return entry;
}

function sanEntries(subject: SubjectIdentity, hosts: readonly string[] | undefined): x509.JsonGeneralName[] {
  if (hosts === undefined || hosts.length === 0) {
    return subject.type === 'admin' ? [{ type: 'email', value: subject.name }] : [{ type: 'dns', value: subject.name }];
  }
  const unique = [...new Set(hosts)];
  return unique.map((h) => (isIP(h) !== 0 ? { type: 'ip', value: h } : { type: 'dns', value: h }));
}

/** 16 random bytes (RFC 5280 4.1.2.2: positive, at most 20 octets), high bit cleared so it stays positive. */
function randomSerial(): string {
  const b = randomBytes(16);
  b[0] = (b[0]! & 0x7f) | 0x10;
  return b.toString('hex');
}

/** Generates a key of the given type and issues its certificate in one step (central provisioning). */
export async function issueWithNewKey(
  issuer: CertificateAuthority,
  subject: SubjectIdentity,
  opts: { keyType: KeyType; hosts?: readonly string[]; validDays?: number; now?: Date },
): Promise<{ certPem: string; privateKey: KeyObject }> {
  const pair = await generateKeyPair(opts.keyType);
  const certPem = await issueCertificate({
    issuer,
    subject,
    publicKey: pair.publicKey,
    ...(opts.hosts === undefined ? {} : { hosts: opts.hosts }),
    ...(opts.validDays === undefined ? {} : { validDays: opts.validDays }),
    ...(opts.now === undefined ? {} : { now: opts.now }),
  });
  return { certPem, privateKey: pair.privateKey };
}
