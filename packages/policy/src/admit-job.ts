import { isFlareError, PolicyError, type AuditHook, type PolicyErrorCode } from '@flare/core';
import type { AuthorizationPolicy } from './authorization-policy.js';
import { authorize, type Person } from './authorize.js';
import type { ComponentPolicy } from './component-policy.js';
import { verifyAbort, verifyJob, type JobSigner, type SignerCertificateCheck, type VerifiedJob, type VerifiedSignatures } from './job-signature.js';

/** What a site is asked to run, as it arrived: the job id, its files, the signature, the components it names. */
export interface JobAdmissionRequest {
  /** The job id the server deploys under. */
  readonly jobId: string;
  /** Every file of the job as received (relative POSIX paths): meta.json, the initial model, custom/ code. */
  readonly files: ReadonlyMap<string, Uint8Array>;
  /** The submitting admin's {@link JobSignature} as received (unknown until verified). */
  readonly signature: unknown;
  /** Every component the job names, by registered name (learner, aggregator, workflow, filters, ...). */
  readonly components: readonly string[];
}

/** This site's policies and trust anchors, for {@link admitJob} and {@link admitAbort}. */
export interface JobAdmissionPolicy {
  readonly authorization: AuthorizationPolicy;
  readonly components: ComponentPolicy;
  /** This site's org (from its kit). */
  readonly siteOrg: string;
  /** This site's project (from its kit). */
  readonly projectName: string;
  /** The project's certificate check for admin signers (with @flare/pki: `verifyCertificate` bound to the root and CRL). */
  readonly verifyCertificate: SignerCertificateCheck;
  /** Where admissions and refusals are reported (`job_admitted`, `job_refused`, `abort_admitted`, `abort_refused`). */
  readonly audit?: AuditHook;
  /**
   * Called with the verified job as soon as its signature verified, before this site's own rights are asked: a
   * site that remembers the jobs it refused (to refuse their replay) learns here that a refusal concerns a job
   * an admin really signed.
   */
  readonly onVerified?: (job: VerifiedJob) => void;
  /** Signatures this process already verified, shared by the sites of one process (see `VerifiedSignatures`). */
  readonly verified?: VerifiedSignatures;
}

/** A successful admission. */
export interface JobAdmission {
  readonly job: string;
  /** The submitting admin, from the certificate that signed the job. */
  readonly submitter: JobSigner;
  readonly components: readonly string[];
  /** True when the job's own code (custom/ files) was admitted: signed, consented, authorized. */
  readonly byoc: boolean;
  /** SHA-256 of the signed manifest, naming the exact job in audit events across sites. */
  readonly manifestSha256: string;
  /** When the submitter signed the job (ISO-8601 UTC, from the verified signature): for `checkJobFreshness`. */
  readonly signedAt: string;
}

/** An abort this site will obey. */
export interface AbortAdmission {
  readonly job: string;
  /** Who asked, from the certificate that signed the abort. */
  readonly signer: JobSigner;
}

const person = (s: JobSigner): Person => ({ name: s.name, org: s.org, role: s.role });

/**
 * The deploy-time gate a site runs before it deploys a job. First the job's signature (see `verifyJob`): signed
 * for this project and this job id by an admin certificate the project trusts, covering exactly the files
 * received; the submitter and their role come from that certificate, never from the server. Then the site's
 * own policy: the submitter's `submit_job` right, only allow-listed components, and job-supplied code (custom/
 * files) only with the site's consent and the submitter's `byoc` right. Every outcome is an audit event.
 *
 * @throws PolicyError E_POLICY_JOB_UNSIGNED, E_POLICY_JOB_BINDING, E_POLICY_JOB_TAMPERED, E_POLICY_JOB_SIGNER,
 *   E_POLICY_DENIED, E_POLICY_COMPONENT, E_POLICY_BYOC_DISABLED or E_POLICY_BYOC_RIGHT, in that order of checking.
 */
export function admitJob(request: JobAdmissionRequest, policy: JobAdmissionPolicy): JobAdmission {
  // The id comes from the server: bounded before it reaches an audit event (verifyJob refuses a malformed one).
  const job = String(request.jobId).slice(0, 128);
  const refused = (code: PolicyErrorCode, message: string, user?: string, data: Record<string, string> = {}): never => {
    policy.audit?.({ action: 'job_refused', job, ...(user === undefined ? {} : { user }), msg: message, data: { code, ...data } });
    throw new PolicyError(code, message);
  };
  let verified;
  try {
    verified = verifyJob(request.signature, request.files, { projectName: policy.projectName, jobId: request.jobId, verifyCertificate: policy.verifyCertificate, ...(policy.verified === undefined ? {} : { verified: policy.verified }) });
  } catch (e) {
    if (isFlareError(e)) policy.audit?.({ action: 'job_refused', job, msg: `job '${job}': ${e.message}`, data: { code: e.code } });
    throw e;
  }
  policy.onVerified?.(verified);
  const { submitter } = verified;
  const where = { manifest: verified.manifestSha256 };
  const ask = (right: string) => authorize(policy.authorization, { right, user: person(submitter), submitter: person(submitter), siteOrg: policy.siteOrg });

  const submit = ask('submit_job');
  if (!submit.allowed) refused('E_POLICY_DENIED', `job '${job}': ${submit.reason} at this site (${submit.explanation})`, submitter.name, where);

  const unlisted = [...new Set(request.components)].filter((c) => !policy.components.allow.has(c));
  if (unlisted.length > 0) refused('E_POLICY_COMPONENT', `job '${job}' uses components this site does not allow: ${unlisted.map((c) => JSON.stringify(c)).join(', ')}`, submitter.name, where);

  if (verified.byoc) {
    if (!policy.components.byoc) refused('E_POLICY_BYOC_DISABLED', `job '${job}' brings its own code and this site does not accept job-supplied code`, submitter.name, where);
    const byoc = ask('byoc');
    if (!byoc.allowed) refused('E_POLICY_BYOC_RIGHT', `job '${job}' brings its own code: ${byoc.reason} at this site (${byoc.explanation})`, submitter.name, where);
  }
  const admitted: JobAdmission = Object.freeze({
    job,
    submitter,
    components: Object.freeze([...request.components]),
    byoc: verified.byoc,
    manifestSha256: verified.manifestSha256,
    signedAt: verified.signedAt,
  });
  policy.audit?.({
    action: 'job_admitted',
    job,
    user: submitter.name,
    msg: `admitted job '${job}' signed by ${submitter.role} '${submitter.name}' (${submitter.org})${admitted.byoc ? ' with its own signed code' : ''}`,
    data: { components: [...admitted.components], byoc: admitted.byoc, manifest: admitted.manifestSha256, role: submitter.role, org: submitter.org },
  });
  return admitted;
}

/**
 * The gate before a site stops a job on an abort: the abort must be signed for this project and job by an
 * admin certificate the project trusts, and the site's own policy must grant that admin `abort_job` for a job
 * of this submitter (FLARE's conditions `o:submitter`, `n:submitter` apply). An unsigned abort is never obeyed.
 *
 * @throws PolicyError E_POLICY_JOB_UNSIGNED, E_POLICY_JOB_BINDING, E_POLICY_JOB_SIGNER, E_POLICY_JOB_TAMPERED or
 *   E_POLICY_DENIED.
 */
export function admitAbort(
  request: { readonly jobId: string; readonly signature: unknown; readonly submitter: JobSigner },
  policy: Omit<JobAdmissionPolicy, 'components'>,
): AbortAdmission {
  const job = String(request.jobId).slice(0, 128);
  let signer: JobSigner;
  try {
    signer = verifyAbort(request.signature, { projectName: policy.projectName, jobId: request.jobId, verifyCertificate: policy.verifyCertificate }).signer;
  } catch (e) {
    if (isFlareError(e)) policy.audit?.({ action: 'abort_refused', job, msg: `abort of job '${job}': ${e.message}`, data: { code: e.code } });
    throw e;
  }
  const decision = authorize(policy.authorization, { right: 'abort_job', user: person(signer), submitter: person(request.submitter), siteOrg: policy.siteOrg });
  if (!decision.allowed) {
    const msg = `abort of job '${job}': ${decision.reason} at this site (${decision.explanation})`;
    policy.audit?.({ action: 'abort_refused', job, user: signer.name, msg, data: { code: 'E_POLICY_DENIED' } });
    throw new PolicyError('E_POLICY_DENIED', msg);
  }
  policy.audit?.({ action: 'abort_admitted', job, user: signer.name, msg: `abort of job '${job}' signed by ${signer.role} '${signer.name}' (${signer.org})`, data: { role: signer.role, org: signer.org } });
  return Object.freeze({ job, signer });
}
