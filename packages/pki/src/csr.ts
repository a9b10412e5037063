import { createPublicKey, webcrypto, type KeyObject } from 'node:crypto';
import { isIP } from 'node:net';
import { resolve } from 'node:path';
import { PkiError } from '@flare/core';
import { openCa, saveCa } from './ca-state.js';
import { DEFAULT_VALID_DAYS, issueCertificate } from './certificate.js';
import { fingerprintOf, identityOf, normalizeSerial, parseCertificate, subjectName, type SubjectIdentity } from './identity.js';
import { assertKeyType, DEFAULT_KEY_TYPE, generateKeyPair, keyTypeOf, privateKeyPem, toCryptoKeyPair, webAlgorithm, type KeyType } from './keys.js';
import { isValidHost, participantProblem, type ParticipantType } from './project.js';
import { x509 } from './x509.js';

/** Options of {@link createCsr}. */
export interface CreateCsrOptions {
  readonly name: string;
  readonly org: string;
  readonly type: ParticipantType;
  /** Admins only. */
  readonly role?: string;
  readonly keyType?: KeyType;
  /** Servers (and listening clients): host names / IPs requested for the certificate's SAN. */
  readonly hosts?: readonly string[];
}

/** A new key and its certificate signing request. The key stays at the site. */
export interface CsrResult {
  readonly csrPem: string;
  readonly privateKey: KeyObject;
  /** PKCS#8 PEM of the private key (write it with mode 0600). */
  readonly privateKeyPem: string;
}

/**
 * Creates a key pair and a PKCS#10 request for it (distributed provisioning, step 1: at the site). The subject
 * is what the certificate will hold: CN = name, O = org, OU = type, unstructuredName = role.
 *
 * @throws PkiError E_CSR_INVALID when the name, org or role break FLARE's naming rules.
 * @example
 * ```ts
 * const { csrPem, privateKeyPem } = await createCsr({ name: 'site-3', org: 'hospital_c', type: 'client' });
 * ```
 */
export async function createCsr(options: CreateCsrOptions): Promise<CsrResult> {
  const keyType = options.keyType ?? DEFAULT_KEY_TYPE;
  assertKeyType(keyType);
  const problem = participantProblem(options.type, options.name, options.org, options.role);
  if (problem) throw new PkiError('E_CSR_INVALID', problem);
  const hosts = options.hosts ?? [];
  const badHost = hosts.find((h) => !isValidHost(h));
  if (badHost !== undefined) throw new PkiError('E_CSR_INVALID', `host '${badHost}' is neither a host name nor an IP address`);
  const pair = await generateKeyPair(keyType);
  const id: SubjectIdentity = { name: options.name, org: options.org, type: options.type, ...(options.role === undefined ? {} : { role: options.role }) };
  const csr = await x509.Pkcs10CertificateRequestGenerator.create(
    {
      name: subjectName(id),
      keys: await toCryptoKeyPair(pair),
      signingAlgorithm: webAlgorithm(keyType).signing,
      extensions: hosts.length === 0 ? [] : [new x509.SubjectAlternativeNameExtension(hosts.map((h) => ({ type: isIP(h) !== 0 ? 'ip' : 'dns', value: h })))],
    },
    webcrypto,
  );
  return { csrPem: csr.toString('pem') + '\n', privateKey: pair.privateKey, privateKeyPem: privateKeyPem(pair.privateKey) };
}

/** Options of {@link approveCsr}. */
export interface ApproveCsrOptions {
  /** The project folder holding the CA state (`<workspace>/<project>`). */
  readonly projectDir: string;
  readonly csrPem: string;
  /** The root key's passphrase (FLARE_CA_PASSPHRASE) when it is encrypted. */
  readonly passphrase?: string;
  readonly validDays?: number;
  readonly now?: Date;
  /** Issue a certificate to a name whose certificates were all revoked (default false: E_PROVISION_REVOKED). */
  readonly reissueRevoked?: boolean;
}

/** A certificate issued from a request. */
export interface ApprovedCertificate {
  readonly certPem: string;
  readonly rootCaPem: string;
  readonly identity: SubjectIdentity;
  readonly fingerprint: string;
}

/**
 * Issues a certificate for a site's request (distributed provisioning, step 2: at the CA). Checks the request's
 * signature (proof the site holds the key) and naming rules, refuses a name already held by a valid certificate
 * of another type or org, and a revoked name unless `reissueRevoked`, records the certificate in the CA state.
 *
 * @throws PkiError E_CSR_INVALID, E_CSR_NAME_TAKEN, E_PROVISION_REVOKED, E_CA_STATE_MISSING,
 *   E_CA_STATE_UNREADABLE, E_CA_PASSPHRASE.
 */
export async function approveCsr(options: ApproveCsrOptions): Promise<ApprovedCertificate> {
  let csr: x509.Pkcs10CertificateRequest;
  try {
    csr = new x509.Pkcs10CertificateRequest(options.csrPem);
  } catch (e) {
    throw new PkiError('E_CSR_INVALID', 'the request is not a parsable PKCS#10 certificate request', { cause: e });
  }
  if (!(await csr.verify(webcrypto).catch(() => false))) throw new PkiError('E_CSR_INVALID', "the request's signature does not verify: it was altered or not made with its key");
  let identity: SubjectIdentity;
  try {
    identity = identityOf(csr.subjectName);
  } catch (e) {
    throw new PkiError('E_CSR_INVALID', `the request's subject is not a FLARE-TS participant: ${e instanceof Error ? e.message : ''}`, { cause: e });
  }
  const problem = participantProblem(identity.type, identity.name, identity.org, identity.role);
  if (problem) throw new PkiError('E_CSR_INVALID', problem);
  let publicKey: KeyObject;
  try {
    publicKey = createPublicKey({ key: Buffer.from(csr.publicKey.rawData), format: 'der', type: 'spki' });
  } catch (e) {
    throw new PkiError('E_CSR_INVALID', "the request's public key cannot be read", { cause: e });
  }
  if (keyTypeOf(publicKey) === undefined) throw new PkiError('E_CSR_INVALID', 'the request key is neither ECDSA P-256 nor RSA-2048');
  const san = csr.getExtension('2.5.29.17');
  const requested = san ? new x509.SubjectAlternativeNameExtension(san.rawData).names.items.map((n) => n.value) : [];
  const badHost = requested.find((h) => !isValidHost(h));
  if (badHost !== undefined) throw new PkiError('E_CSR_INVALID', `requested host '${badHost}' is neither a host name nor an IP address`);
  const hosts = identity.type === 'admin' ? [] : identity.type === 'server' ? (requested.length > 0 ? requested : [identity.name]) : [identity.name, ...requested];

  const now = options.now ?? new Date();
  const ca = await openCa(resolve(options.projectDir), options.passphrase);
  const taken = ca.data.issued.find((r) => r.name === identity.name && r.revoked === undefined && new Date(r.notAfter) > now && (r.type !== identity.type || r.org !== identity.org));
  if (taken) throw new PkiError('E_CSR_NAME_TAKEN', `'${identity.name}' already holds a valid ${taken.type} certificate of org ${taken.org}`);
  const earlier = ca.data.issued.filter((r) => r.name === identity.name);
  if (earlier.length > 0 && earlier.every((r) => r.revoked !== undefined) && options.reissueRevoked !== true) {
    throw new PkiError('E_PROVISION_REVOKED', `'${identity.name}' was revoked: approve its request only to re-admit it on purpose (--reissue-revoked)`);
  }
  const certPem = await issueCertificate({ issuer: ca.root, subject: identity, publicKey, hosts, validDays: options.validDays ?? DEFAULT_VALID_DAYS, now });
  const { node } = parseCertificate(certPem);
  const fingerprint = fingerprintOf(node);
  ca.data.issued.push({
    serial: normalizeSerial(node.serialNumber),
    name: identity.name,
    type: identity.type,
    org: identity.org,
    ...(identity.role === undefined ? {} : { role: identity.role }),
    hosts,
    notAfter: new Date(node.validTo).toISOString(),
    fingerprint,
    certPem,
  });
  await saveCa(ca);
  return { certPem, rootCaPem: ca.root.certPem, identity, fingerprint };
}
