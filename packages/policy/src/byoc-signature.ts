import { X509Certificate, type KeyObject } from 'node:crypto';
import { canonicalJson, PolicyError } from '@flare/core';
import type { Person } from './authorize.js';
import { normalizeName } from './normalize.js';
import { fileDigests, MAX_JOB_FILES, privateKeyOf, signBytes, unsafePath, verifyBytes } from './signature-scheme.js';

// DEPRECATED: a signature over a job's files only, checked against a submitter the server names. Jobs are now
// signed whole, bound to the project and job id, with the submitter taken from the certificate (job-signature.ts,
// the same scheme). These exports remain until the runtime and the poc have moved to signJob / verifyJob.

/**
 * Code a job brings (BYOC), signed by its submitter's admin key from the startup kit.
 * @deprecated Sign the whole job with `signJob`; sites check it with `verifyJob` / `admitJob`.
 */
export interface ByocBundle {
  /** Every file of the job folder as submitted (config and code), by relative POSIX path. */
  readonly files: ReadonlyMap<string, Uint8Array>;
  /** Base64 signature over {@link byocManifest}(files), from {@link signByoc}. */
  readonly signature: string;
  /** The submitter's admin certificate (PEM), issued by the project's root CA. */
  readonly certificate: string;
}

/**
 * How a site checks a BYOC signature.
 * @deprecated Use `verifyJob`, which takes the submitter from the certificate instead of from the server.
 */
export interface ByocVerifyOptions {
  /** The job's submitter as authenticated by the server and re-checked by this site. */
  readonly submitter: Person;
  /** The project's root CA certificate (PEM) from this site's kit (startup/rootCA.pem). */
  readonly rootCa: string;
  /** Time to check validity at (default now). */
  readonly now?: Date;
  /** Revocation check by certificate serial (upper-case hex), e.g. against the project's CRL. */
  readonly isRevoked?: (serialHex: string) => boolean;
}

// Domain separation: the admin key also signs login transcripts; this prefix makes a BYOC signature useless
// anywhere else, and any other signature useless here.
const DOMAIN = 'flare-ts byoc manifest v1\n';
// TLS Web Client Authentication (RFC 5280 4.2.1.12): admin certificates are client certificates.
const CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';

const refuse = (message: string, cause?: unknown): never => {
  throw new PolicyError('E_POLICY_BYOC_SIGNATURE', message, cause === undefined ? undefined : { cause });
};

/**
 * The bytes a BYOC signature covers: a domain prefix and the canonical JSON (RFC 8785) of every file's
 * relative path and SHA-256. Changing, adding, removing or renaming any file changes them.
 *
 * @throws PolicyError E_POLICY_BYOC_SIGNATURE for an unsafe path (absolute, `..`, backslash) or too many files.
 * @deprecated The job manifest of `signJob` covers the same files and binds the project and the job id.
 */
export function byocManifest(files: ReadonlyMap<string, Uint8Array>): Uint8Array {
  if (files.size === 0 || files.size > MAX_JOB_FILES) refuse(`a signed job must hold between 1 and ${MAX_JOB_FILES} files, got ${files.size}`);
  for (const path of files.keys()) {
    const bad = unsafePath(path);
    if (bad !== undefined) refuse(bad);
  }
  return new TextEncoder().encode(DOMAIN + canonicalJson({ v: 1, files: fileDigests(files) }));
}

/**
 * Signs a job folder for submission with the submitter's admin private key (KeyObject or PEM): returns the
 * base64 signature to send with the job.
 * @deprecated Use `signJob`, which binds the signature to the project and the job id.
 */
export function signByoc(files: ReadonlyMap<string, Uint8Array>, privateKey: KeyObject | string): string {
  return signBytes(byocManifest(files), privateKeyOf(privateKey));
}

function subjectField(subject: string, field: string): string | undefined {
  for (const line of subject.split('\n')) {
    const eq = line.indexOf('=');
    if (eq > 0 && line.slice(0, eq) === field) return line.slice(eq + 1);
  }
  return undefined;
}

/**
 * Checks that a job's code was signed by its submitter: the certificate is issued by the project root CA,
 * valid now, not a CA, a client certificate, not revoked, names the submitter (CN, and O when present), and
 * its key signed exactly these files.
 *
 * @throws PolicyError E_POLICY_BYOC_SIGNATURE saying which check failed.
 * @deprecated Use `verifyJob`: the submitter and role come from the certificate, not from the server.
 */
export function verifyByocSignature(bundle: ByocBundle, options: ByocVerifyOptions): void {
  let cert: X509Certificate;
  let ca: X509Certificate;
  try {
    cert = new X509Certificate(bundle.certificate);
  } catch (cause) {
    return refuse('the job\'s signing certificate is not a PEM X.509 certificate', cause);
  }
  try {
    ca = new X509Certificate(options.rootCa);
  } catch (cause) {
    return refuse('the site\'s root CA certificate could not be read', cause);
  }
  if (!cert.checkIssued(ca) || !cert.verify(ca.publicKey)) refuse('the job\'s signing certificate was not issued by this project\'s root CA');
  const now = (options.now ?? new Date()).getTime();
  if (now < Date.parse(cert.validFrom) || now > Date.parse(cert.validTo)) refuse(`the job's signing certificate is not valid now (valid ${cert.validFrom} to ${cert.validTo})`);
  if (cert.ca) refuse('the job\'s signing certificate is a CA certificate, not an admin certificate');
  if (cert.keyUsage !== undefined && !cert.keyUsage.includes(CLIENT_AUTH)) refuse('the job\'s signing certificate is not a client (admin) certificate');
  if (options.isRevoked?.(cert.serialNumber.toUpperCase())) refuse(`the job's signing certificate (serial ${cert.serialNumber}) is revoked`);
  const cn = subjectField(cert.subject, 'CN');
  if (cn === undefined || normalizeName(cn) !== normalizeName(options.submitter.name)) {
    refuse(`the job's code is signed by ${JSON.stringify(cn ?? '(no CN)')}, not by its submitter ${JSON.stringify(options.submitter.name)}`);
  }
  const org = subjectField(cert.subject, 'O');
  if (org !== undefined && normalizeName(org) !== normalizeName(options.submitter.org)) {
    refuse(`the job's signing certificate is of org ${JSON.stringify(org)}, not the submitter's org ${JSON.stringify(options.submitter.org)}`);
  }
  if (!verifyBytes(byocManifest(bundle.files), cert.publicKey, bundle.signature)) refuse('the job\'s code signature does not match its files (changed after signing, or signed by another key)');
}
