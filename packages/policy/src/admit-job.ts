import { PolicyError, type AuditHook } from '@flare/core';
import type { AuthorizationPolicy } from './authorization-policy.js';
import { authorize, type Person } from './authorize.js';
import { verifyByocSignature, type ByocBundle } from './byoc-signature.js';
import type { ComponentPolicy } from './component-policy.js';

/** What a site is asked to run, at deploy time. */
export interface JobAdmissionRequest {
  readonly job: string;
  /** The submitter as authenticated by the server (the site re-checks their rights). */
  readonly submitter: Person;
  /** Every component the job names, by registered name (learner, aggregator, workflow, filters, ...). */
  readonly components: readonly string[];
  /** Present when the job brings its own code. */
  readonly byoc?: ByocBundle;
}

/** This site's policies and trust anchors for {@link admitJob}. */
export interface JobAdmissionPolicy {
  readonly authorization: AuthorizationPolicy;
  readonly components: ComponentPolicy;
  /** This site's org (from its kit). */
  readonly siteOrg: string;
  /** The project's root CA (PEM), to check BYOC signing certificates. */
  readonly rootCa: string;
  readonly now?: Date;
  readonly isRevoked?: (serialHex: string) => boolean;
  /** Where admissions and refusals are reported (`job_admitted`, `job_refused`). */
  readonly audit?: AuditHook;
}

/** A successful admission. */
export interface JobAdmission {
  readonly job: string;
  readonly components: readonly string[];
  /** True when the job's own code was admitted (signed, consented, authorized). */
  readonly byoc: boolean;
}

/**
 * The deploy-time gate a client engine runs before it deploys a job: the site re-checks the submitter's
 * `submit_job` right under its own policy (the server cannot override a site), admits only components on its
 * allow-list, and admits job-supplied code only with the site's consent, the submitter's `byoc` right and a
 * valid signature by the submitter's admin certificate.
 *
 * @throws PolicyError E_POLICY_DENIED, E_POLICY_COMPONENT, E_POLICY_BYOC_DISABLED, E_POLICY_BYOC_RIGHT or
 * E_POLICY_BYOC_SIGNATURE, in that order of checking.
 */
export function admitJob(request: JobAdmissionRequest, policy: JobAdmissionPolicy): JobAdmission {
  const { job, submitter } = request;
  const refuse = (code: 'E_POLICY_DENIED' | 'E_POLICY_COMPONENT' | 'E_POLICY_BYOC_DISABLED' | 'E_POLICY_BYOC_RIGHT', message: string): never => {
    policy.audit?.({ action: 'job_refused', job, user: submitter.name, msg: message, data: { code } });
    throw new PolicyError(code, message);
  };
  const ask = (right: string) => authorize(policy.authorization, { right, user: submitter, submitter, siteOrg: policy.siteOrg });

  const submit = ask('submit_job');
  if (!submit.allowed) refuse('E_POLICY_DENIED', `job '${job}': ${submit.reason} at this site (${submit.explanation})`);

  const unlisted = [...new Set(request.components)].filter((c) => !policy.components.allow.has(c));
  if (unlisted.length > 0) refuse('E_POLICY_COMPONENT', `job '${job}' uses components this site does not allow: ${unlisted.map((c) => JSON.stringify(c)).join(', ')}`);

  if (request.byoc !== undefined) {
    if (!policy.components.byoc) refuse('E_POLICY_BYOC_DISABLED', `job '${job}' brings its own code and this site does not accept job-supplied code`);
    const byoc = ask('byoc');
    if (!byoc.allowed) refuse('E_POLICY_BYOC_RIGHT', `job '${job}' brings its own code: ${byoc.reason} at this site (${byoc.explanation})`);
    try {
      verifyByocSignature(request.byoc, {
        submitter,
        rootCa: policy.rootCa,
        ...(policy.now === undefined ? {} : { now: policy.now }),
        ...(policy.isRevoked === undefined ? {} : { isRevoked: policy.isRevoked }),
      });
    } catch (e) {
      if (e instanceof PolicyError) policy.audit?.({ action: 'job_refused', job, user: submitter.name, msg: `job '${job}': ${e.message}`, data: { code: e.code } });
      throw e;
    }
  }
  const admitted = { job, components: Object.freeze([...request.components]), byoc: request.byoc !== undefined };
  policy.audit?.({
    action: 'job_admitted',
    job,
    user: submitter.name,
    msg: `admitted job '${job}' submitted by '${submitter.name}'${admitted.byoc ? ' with its own signed code' : ''}`,
    data: { components: [...admitted.components], byoc: admitted.byoc },
  });
  return Object.freeze(admitted);
}
