import { X509Certificate, type KeyObject } from 'node:crypto';
import { canonicalJson, isFlareError, PolicyError, type Identity, type PolicyErrorCode } from '@flare/core';
import { z } from 'zod';
import { fileDigests, MAX_JOB_FILES, MAX_JOB_PATH, privateKeyOf, sha256Hex, signBytes, unsafePath, verifyBytes } from './signature-scheme.js';

// A job, and every abort of it, is signed by the admin who submits it, with the key of their startup kit, over
// a canonical manifest bound to the project and to the job id the admin chose. Sites verify it before their own
// policy decides, so a server can schedule and relay a job but never change it or invent who submitted it.
// Manifest bytes: a domain prefix (the kit key also signs login transcripts, audit checkpoints, CSRs) and the
// RFC 8785 canonical JSON of { v, kind, project, job, signed_at, files? }.

const DOMAIN = { job: 'flare-ts job manifest v1\n', abort: 'flare-ts job abort v1\n' } as const;
const JOB_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
const MAX_CERTIFICATE = 16 * 1024;

/** The signing admin's kit material: @flare/pki's `Kit` fits as it is (`certPem`, `privateKey`). */
export interface AdminSigningKey {
  /** The admin's certificate (PEM), issued by the project root (startup/client.crt of an admin kit). */
  readonly certPem: string;
  /** The matching private key (KeyObject or PEM). */
  readonly privateKey: KeyObject | string;
}

/** A signed job, as it travels with the job to the server and on to every site. */
export interface JobSignature {
  readonly v: 1;
  readonly kind: 'job';
  readonly project: string;
  /** The job id the admin chose (a UUID, say); the server must use it. */
  readonly job: string;
  /** When the admin signed, ISO-8601 UTC. */
  readonly signedAt: string;
  /** SHA-256 (hex) of every job file by relative POSIX path: meta.json, the initial model, custom/ code. */
  readonly files: Readonly<Record<string, string>>;
  /** The signer's certificate (PEM). */
  readonly certificate: string;
  /** Base64 signature over the manifest. */
  readonly signature: string;
}

/** A signed abort of one job. */
export interface AbortSignature {
  readonly v: 1;
  readonly kind: 'abort';
  readonly project: string;
  readonly job: string;
  readonly signedAt: string;
  readonly certificate: string;
  readonly signature: string;
}

/**
 * What the project's certificate check says about a signer. @flare/pki's `verifyCertificate` result fits as it
 * is; this package does not import @flare/pki (leaves depend on core only), so the caller passes the check.
 */
export interface CertifiedSigner {
  readonly name: string;
  readonly org: string;
  /** Participant type from the certificate (OU): must be `admin`. */
  readonly type: string;
  /** Admin role from the certificate (FLARE's unstructuredName): required. */
  readonly role?: string | undefined;
  /** The certificate's public key: it must have made the signature. */
  readonly publicKey: KeyObject;
}

/**
 * Verifies a signer's certificate against the project: chain to the root, validity, revocation. Throws when it
 * does not verify. With @flare/pki:
 * `(pem) => verifyCertificate(pem, { rootCaPem: kit.rootCaPem, crl: currentCrlPem, expectedType: 'admin' })`.
 */
export type SignerCertificateCheck = (certificatePem: string) => CertifiedSigner;

/** Who signed, as the certificate says (never a message field): an admin {@link Identity} with its role. */
export type JobSigner = Identity & { readonly type: 'admin'; readonly role: string };

/** How a site (or the server) checks a signature. */
export interface JobVerifyOptions {
  /** This participant's project name (from its own kit). */
  readonly projectName: string;
  /** The job id the server says it is deploying or aborting. */
  readonly jobId: string;
  /** The project's certificate check (see {@link SignerCertificateCheck}). */
  readonly verifyCertificate: SignerCertificateCheck;
  /**
   * Signatures this process already verified (see {@link VerifiedSignatures}): one shared by the many sites of a
   * process checks a job's signature once instead of once per site. Every other check still runs for each site.
   */
  readonly verified?: VerifiedSignatures;
}

/**
 * The job signatures a process has verified, so that a job offered to many sites in one process (a simulator, a
 * load harness, a relay's sites run together) costs one signature check, not one per site. An entry is the
 * SHA-256 of exactly what the check took: the signed manifest's bytes (project, job id, signing time, and the
 * digest of every file), the signer's certificate and the signature; a hit therefore means this very signature
 * over this very manifest was verified with this certificate's key in this process, which does not depend on
 * who asks or when. What does depend on the site is never cached: the binding to its project and job id, the
 * digests of the files it received against the manifest, and the certificate against its own trust (chain,
 * validity now, revocation by the newest CRL it holds, type and role). Only successes are kept, the newest
 * `capacity` of them.
 */
export class VerifiedSignatures {
  readonly #capacity: number;
  readonly #entries = new Set<string>();
  #checks = 0;

  constructor(capacity = 64) {
    if (!Number.isSafeInteger(capacity) || capacity < 1) throw new RangeError(`"capacity" expected a positive integer, got ${capacity}`);
    this.#capacity = capacity;
  }

  /** How many signatures this cache had to verify (its misses): a job met by N sites counts once. */
  get checks(): number {
    return this.#checks;
  }

  /** @internal Whether `verify()` already succeeded for this manifest, certificate and signature; otherwise runs it, and keeps a success. */
  check(bytes: Uint8Array, certificate: string, signature: string, verify: () => boolean): boolean {
    // JSON of the three: no two different triples give the same text.
    const key = sha256Hex(new TextEncoder().encode(JSON.stringify([sha256Hex(bytes), certificate, signature])));
    if (this.#entries.has(key)) {
      // The newest use last: the oldest entry is the one dropped.
      this.#entries.delete(key);
      this.#entries.add(key);
      return true;
    }
    this.#checks++;
    if (!verify()) return false;
    this.#entries.add(key);
    if (this.#entries.size > this.#capacity) this.#entries.delete(this.#entries.values().next().value!);
    return true;
  }
}

/** A job whose signature verified. */
export interface VerifiedJob {
  readonly project: string;
  readonly job: string;
  /** The submitting admin, from the certificate. */
  readonly submitter: JobSigner;
  readonly signedAt: string;
  /** Every signed file path, sorted. */
  readonly files: readonly string[];
  /** True when the job brings code: a file under a `custom/` folder (FLARE's BYOC layout). */
  readonly byoc: boolean;
  /** SHA-256 (hex) of the signed manifest: one value naming the exact job, for audit events. */
  readonly manifestSha256: string;
}

/** An abort whose signature verified. */
export interface VerifiedAbort {
  readonly project: string;
  readonly job: string;
  /** Who asked to abort, from the certificate; whether they may is the site's authorization's decision. */
  readonly signer: JobSigner;
  readonly signedAt: string;
}

const refuse = (code: PolicyErrorCode, message: string, cause?: unknown): never => {
  throw new PolicyError(code, message, cause === undefined ? undefined : { cause });
};

const hex64 = z.string().regex(/^[0-9a-f]{64}$/);
const common = {
  v: z.literal(1),
  project: z.string().min(1).max(256),
  job: z.string().regex(JOB_ID),
  signedAt: z.iso.datetime({ precision: 3 }),
  certificate: z.string().min(1).max(MAX_CERTIFICATE),
  signature: z.base64().min(1).max(4096),
};
const jobSchema = z.strictObject({
  ...common,
  kind: z.literal('job'),
  files: z.record(z.string().min(1).max(MAX_JOB_PATH), hex64).refine((f) => Object.keys(f).length >= 1 && Object.keys(f).length <= MAX_JOB_FILES, `between 1 and ${MAX_JOB_FILES} files`),
});
const abortSchema = z.strictObject({ ...common, kind: z.literal('abort') });

function manifest(s: Omit<JobSignature, 'certificate' | 'signature'> | Omit<AbortSignature, 'certificate' | 'signature'>): Uint8Array {
  const body = { v: s.v, kind: s.kind, project: s.project, job: s.job, signed_at: s.signedAt, ...('files' in s ? { files: { ...s.files } } : {}) };
  return new TextEncoder().encode(DOMAIN[s.kind] + canonicalJson(body));
}

function checkIds(projectName: string, jobId: string): void {
  if (typeof projectName !== 'string' || projectName.length === 0 || projectName.length > 256) throw new TypeError('"projectName" expected a string of 1 to 256 characters');
  if (typeof jobId !== 'string' || !JOB_ID.test(jobId)) throw new TypeError(`"jobId" expected 1 to 128 letters, digits, '.', '_' or '-' (a UUID, say), got ${JSON.stringify(String(jobId).slice(0, 40))}`);
}

/** The job id a job or abort arrived as comes from the server: a malformed one is a coded refusal, not a TypeError. */
function checkArrivedIds(options: JobVerifyOptions): void {
  if (typeof options.jobId !== 'string' || !JOB_ID.test(options.jobId)) {
    refuse('E_POLICY_JOB_BINDING', `the job arrived under the id ${JSON.stringify(String(options.jobId).slice(0, 40))}, which no admin can have signed (1 to 128 letters, digits, '.', '_' or '-')`);
  }
  checkIds(options.projectName, options.jobId);
}

function signed(key: AdminSigningKey, unsigned: Omit<JobSignature, 'certificate' | 'signature'> | Omit<AbortSignature, 'certificate' | 'signature'>): JobSignature | AbortSignature {
  const privateKey = privateKeyOf(key.privateKey);
  const bytes = manifest(unsigned);
  const signature = signBytes(bytes, privateKey);
  let publicKey: KeyObject;
  try {
    publicKey = new X509Certificate(key.certPem).publicKey;
  } catch (cause) {
    return refuse('E_POLICY_JOB_SIGNER', 'the signing certificate is not a PEM X.509 certificate', cause);
  }
  // A kit whose key and certificate disagree would produce jobs every site refuses: say so at the source.
  if (!verifyBytes(bytes, publicKey, signature)) refuse('E_POLICY_JOB_SIGNER', 'the signing key does not belong to the signing certificate');
  return Object.freeze({ ...unsigned, certificate: key.certPem, signature });
}

/**
 * Signs a job for submission with the submitting admin's kit key: every file of the job folder (meta.json, the
 * initial model, custom/ code), the project name and the job id the admin chose. The server must deploy the job
 * under that id, with exactly these files; sites verify with {@link verifyJob}.
 *
 * @throws TypeError for a bad project name or job id; RangeError for an unsafe file path (absolute, `..`,
 *   backslash) or a job without files or with too many; PolicyError E_POLICY_JOB_SIGNER when the key does not
 *   belong to the certificate.
 * @example
 * ```ts
 * const signature = signJob(adminKit, { projectName: adminKit.project, jobId: randomUUID(), files });
 * ```
 */
export function signJob(key: AdminSigningKey, job: { readonly projectName: string; readonly jobId: string; readonly files: ReadonlyMap<string, Uint8Array>; readonly now?: Date }): JobSignature {
  checkIds(job.projectName, job.jobId);
  if (job.files.size === 0 || job.files.size > MAX_JOB_FILES) throw new RangeError(`a signed job must hold between 1 and ${MAX_JOB_FILES} files, got ${job.files.size}`);
  for (const path of job.files.keys()) {
    const bad = unsafePath(path);
    if (bad !== undefined) throw new RangeError(bad);
  }
  return signed(key, { v: 1, kind: 'job', project: job.projectName, job: job.jobId, signedAt: (job.now ?? new Date()).toISOString(), files: fileDigests(job.files) }) as JobSignature;
}

/**
 * Signs an abort of one job with the admin's kit key, bound to the project and the job id. Sites verify it
 * with {@link verifyAbort} and then decide with their own authorization (`abort_job`).
 *
 * @throws TypeError for a bad project name or job id.
 */
export function signAbort(key: AdminSigningKey, abort: { readonly projectName: string; readonly jobId: string; readonly now?: Date }): AbortSignature {
  checkIds(abort.projectName, abort.jobId);
  return signed(key, { v: 1, kind: 'abort', project: abort.projectName, job: abort.jobId, signedAt: (abort.now ?? new Date()).toISOString() }) as AbortSignature;
}

function parse<T>(schema: z.ZodType<T>, value: unknown, what: string): T {
  if (value === undefined || value === null) return refuse('E_POLICY_JOB_UNSIGNED', `the ${what} carries no signature: every job and every abort must be signed by the admin who issues it`);
  const r = schema.safeParse(value);
  if (!r.success) {
    const issue = r.error.issues[0];
    return refuse('E_POLICY_JOB_UNSIGNED', `the ${what}'s signature is malformed at ${issue?.path.join('.') || '(top)'}: ${issue?.message ?? 'invalid'}`);
  }
  return r.data;
}

function signerOf(s: { readonly certificate: string; readonly signature: string }, bytes: Uint8Array, check: SignerCertificateCheck, what: string, verified?: VerifiedSignatures): JobSigner {
  let cert: CertifiedSigner;
  try {
    cert = check(s.certificate);
  } catch (cause) {
    const why = isFlareError(cause) ? `${cause.code}: ${cause.message}` : 'it does not verify';
    return refuse('E_POLICY_JOB_SIGNER', `the ${what} is signed with a certificate this project does not trust (${why})`, cause);
  }
  if (cert.type !== 'admin') refuse('E_POLICY_JOB_SIGNER', `the ${what} is signed by ${JSON.stringify(cert.name)}, a ${JSON.stringify(cert.type)} certificate: only admins sign jobs and aborts`);
  if (typeof cert.role !== 'string' || cert.role.length === 0) refuse('E_POLICY_JOB_SIGNER', `the ${what} is signed by admin ${JSON.stringify(cert.name)}, whose certificate names no role`);
  const valid = (): boolean => verifyBytes(bytes, cert.publicKey, s.signature);
  if (!(verified === undefined ? valid() : verified.check(bytes, s.certificate, s.signature, valid))) {
    refuse('E_POLICY_JOB_TAMPERED', `the ${what}'s signature does not verify with ${JSON.stringify(cert.name)}'s certificate: it was changed after signing, or signed with another key`);
  }
  return Object.freeze({ name: cert.name, org: cert.org, type: 'admin' as const, role: cert.role! });
}

function checkBinding(s: { readonly project: string; readonly job: string }, options: JobVerifyOptions, what: string): void {
  if (s.project !== options.projectName) refuse('E_POLICY_JOB_BINDING', `the ${what} was signed for project ${JSON.stringify(s.project)}, not this project ${JSON.stringify(options.projectName)}`);
  if (s.job !== options.jobId) refuse('E_POLICY_JOB_BINDING', `the ${what} was signed for job ${JSON.stringify(s.job)}, but arrived as job ${JSON.stringify(options.jobId)}`);
}

/**
 * Verifies a job as a site received it: the signature is well formed, signed for this project and this job id,
 * by an admin certificate the project trusts (chain, validity, revocation: `verifyCertificate`), whose key
 * signed exactly the files received (none changed, added, removed or renamed). The submitter and their role
 * come from the certificate. Authorization is the caller's next step (see `admitJob`).
 *
 * Checks run in this order, each with its code: E_POLICY_JOB_UNSIGNED (missing or malformed),
 * E_POLICY_JOB_BINDING (other project or job id), E_POLICY_JOB_TAMPERED (files differ: the message names the
 * first), E_POLICY_JOB_SIGNER (certificate refused, not an admin, no role), E_POLICY_JOB_TAMPERED (bad signature).
 *
 * @example
 * ```ts
 * const job = verifyJob(deploy.signature, files, { projectName: kit.project, jobId: deploy.jobId,
 *   verifyCertificate: (pem) => verifyCertificate(pem, { rootCaPem: kit.rootCaPem, crl, expectedType: 'admin' }) });
 * job.submitter; // { name, org, type: 'admin', role } from the certificate
 * ```
 */
export function verifyJob(signature: unknown, received: ReadonlyMap<string, Uint8Array>, options: JobVerifyOptions): VerifiedJob {
  checkArrivedIds(options);
  const s = parse(jobSchema, signature, 'job');
  checkBinding(s, options, 'job');
  if (received.size > MAX_JOB_FILES) refuse('E_POLICY_JOB_TAMPERED', `the job arrived with ${received.size} files, more than any signed job holds`);
  const got = fileDigests(received);
  for (const path of Object.keys(s.files)) {
    if (!(path in got)) refuse('E_POLICY_JOB_TAMPERED', `job file ${JSON.stringify(path)} was signed but did not arrive`);
    if (got[path] !== s.files[path]) refuse('E_POLICY_JOB_TAMPERED', `job file ${JSON.stringify(path)} differs from what the submitter signed`);
  }
  for (const path of Object.keys(got)) {
    if (!(path in s.files)) refuse('E_POLICY_JOB_TAMPERED', `job file ${JSON.stringify(path.slice(0, 200))} arrived but was not signed by the submitter`);
  }
  for (const path of Object.keys(s.files)) {
    const bad = unsafePath(path);
    if (bad !== undefined) refuse('E_POLICY_JOB_TAMPERED', bad);
  }
  const bytes = manifest(s);
  const submitter = signerOf(s, bytes, options.verifyCertificate, 'job', options.verified);
  const files = Object.keys(s.files).sort();
  return Object.freeze({
    project: s.project,
    job: s.job,
    submitter,
    signedAt: s.signedAt,
    files: Object.freeze(files),
    byoc: files.some((p) => p.split('/').slice(0, -1).includes('custom')),
    manifestSha256: sha256Hex(bytes),
  });
}

/**
 * Verifies an abort: well formed, for this project and job id, signed by an admin certificate the project
 * trusts. Whether that admin may abort this job is the site's authorization's decision (`admitAbort`).
 *
 * @throws PolicyError E_POLICY_JOB_UNSIGNED, E_POLICY_JOB_BINDING, E_POLICY_JOB_SIGNER or E_POLICY_JOB_TAMPERED.
 */
export function verifyAbort(signature: unknown, options: JobVerifyOptions): VerifiedAbort {
  checkArrivedIds(options);
  const s = parse(abortSchema, signature, 'abort');
  checkBinding(s, options, 'abort');
  const signer = signerOf(s, manifest(s), options.verifyCertificate, 'abort');
  return Object.freeze({ project: s.project, job: s.job, signer, signedAt: s.signedAt });
}

/** How long after signing a job may first reach a site, and how far ahead of the site's clock its signing time may be. */
export interface JobFreshnessOptions {
  /** The longest time between signing and a site first seeing the job, in ms (a site's setting). */
  readonly maxAgeMs: number;
  /** Clock skew tolerated for a signing time in the future, in ms (default 5 minutes). */
  readonly maxSkewMs?: number;
  /** The site's clock (default now). */
  readonly now?: Date;
}

/**
 * Bounds how long a signed job stays usable: a job first seen more than `maxAgeMs` after its admin signed it
 * (the signed `signedAt`, from a verified signature) is refused, as is one signed further in the future than
 * the clock skew allows. A site calls it when it meets a job id for the first time, so that it only needs to
 * remember the ids of jobs signed within the window to refuse every replay.
 *
 * @throws PolicyError E_POLICY_JOB_EXPIRED naming the job, its signing time and the window; TypeError for a
 *   window that is not a positive number.
 * @example
 * ```ts
 * checkJobFreshness(verified.signedAt, { maxAgeMs: 7 * 24 * 3600_000 });
 * ```
 */
export function checkJobFreshness(signedAt: string, options: JobFreshnessOptions & { readonly job?: string }): void {
  const { maxAgeMs } = options;
  const maxSkewMs = options.maxSkewMs ?? 5 * 60_000;
  if (!(maxAgeMs > 0) || !(maxSkewMs >= 0)) throw new TypeError('"maxAgeMs" expected a positive number of ms and "maxSkewMs" a number >= 0');
  const now = (options.now ?? new Date()).getTime();
  const at = Date.parse(signedAt);
  const what = options.job === undefined ? 'the job' : `job ${JSON.stringify(options.job.slice(0, 128))}`;
  if (!Number.isFinite(at)) refuse('E_POLICY_JOB_EXPIRED', `${what} carries no readable signing time (${JSON.stringify(String(signedAt).slice(0, 40))})`);
  if (at - now > maxSkewMs) refuse('E_POLICY_JOB_EXPIRED', `${what} was signed at ${signedAt}, ${Math.round((at - now) / 1000)} s ahead of this site's clock (at most ${Math.round(maxSkewMs / 1000)} s allowed)`);
  if (now - at > maxAgeMs) refuse('E_POLICY_JOB_EXPIRED', `${what} was signed at ${signedAt}, ${Math.round((now - at) / 1000)} s ago: this site first runs a job at most ${Math.round(maxAgeMs / 1000)} s after its signing`);
}
