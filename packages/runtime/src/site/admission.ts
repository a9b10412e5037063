import { PolicyError, type AuditHook, type Filter, type FilterEnv, type FilterFactory, type Identity } from '@flare/core';
import { VerifiedSignatures, admitJob, checkJobFreshness, checkScopeAggregation, composeFilterChain, createFilterChain, parseJobFilters, parseResourceRequest, resolvePrivacyScope, type FilterSpec, type JobSigner, type PrivacyScope, type Reservation, type VerifiedJob } from '@flare/policy';
import { signedJobFiles, type JobBundle } from '../protocol/bundle.js';
import type { JobDefinition } from '../protocol/job-definition.js';
import { receivedSignature } from '../protocol/job-trust.js';
import { SECURE_AGGREGATION } from '../workflows/secure-aggregation.js';
import type { FilterRegistry, SitePolicy } from './policy.js';

/** What a site asks @flare/policy before it builds a job. */
export interface AdmissionRequest {
  readonly job: string;
  readonly definition: JobDefinition;
  /** The job as it arrived: meta.json, the initial model, custom/ files and the submitter's signature over them. */
  readonly bundle: JobBundle;
  /**
   * Who the server says submitted the job: never trusted. The submitter is the signing certificate's holder;
   * a server naming someone else is refused (it changed the job's story).
   */
  readonly claimed?: Pick<Identity, 'name' | 'org'>;
  /**
   * When set, the signing time must fall within this window of now (`checkJobFreshness`, E_POLICY_JOB_EXPIRED):
   * a site sets it for a job id it meets for the first time.
   */
  readonly freshness?: { readonly maxAgeMs: number; readonly now?: Date };
  /** Called as soon as the signature verified, with the signing time and manifest digest (before this site's rights are asked). */
  readonly onVerified?: (job: { readonly signedAt: string; readonly manifest: string }) => void;
}

/** A job this site admitted: its scope, its filter specs and the resources reserved for it. */
export interface Admission {
  /** The privacy scope the job runs in (undefined for a site without privacy.json and a job naming none). */
  readonly scope: PrivacyScope | undefined;
  readonly dataFilters: readonly FilterSpec[];
  readonly resultFilters: readonly FilterSpec[];
  readonly reservation: Reservation;
  /** True when the job's own code was admitted (signed by the submitter, consented, authorized). */
  readonly byoc: boolean;
  /** The submitting admin, from the certificate that signed the job (never from the server). */
  readonly submitter: JobSigner;
  /** SHA-256 of the signed manifest: names the exact job in audit events across sites. */
  readonly manifest: string;
  /** When the submitter signed the job (from the verified signature). */
  readonly signedAt: string;
}

/**
 * The job signatures this process verified, shared by every site it runs: a worker of the scale bench or a
 * simulator offered one job for thousands of sites checks its signature once. Sound for any number of sites and
 * trusts: a hit is this exact signature over this exact manifest with this certificate's key; each site still
 * checks the files it received, the binding, and the certificate against its own root and CRL (@flare/policy's
 * `VerifiedSignatures`).
 */
export const VERIFIED_JOB_SIGNATURES = new VerifiedSignatures();

/** Filters that must run where encryption needs them, whatever order the scope and the job list them in. */
const DECRYPT_FIRST = 'he-decrypt';
/** The filter that encrypts an update (@flare/filters-he): last in a result chain; an aggregating relay cannot sum what it produces. */
export const ENCRYPT_LAST = 'he-encrypt';

/**
 * Decides whether this site runs a job, with @flare/policy's own decisions and codes, in this order: the
 * submitter's signature over the whole job (meta.json, the initial model, custom/ files; bound to this project
 * and the job id; the signer's certificate chains to the project root and is not revoked), then the signer's
 * `submit_job` right, the component allow-list and BYOC (consent, the `byoc` right), all by `admitJob`; the
 * server's claim about the submitter must name the signer; the signing time within the site's window for a job
 * met for the first time (`checkJobFreshness`); the privacy scope (`resolvePrivacyScope`); the
 * job's own filters against the site's registry (`parseJobFilters`); the scope's rule on secure aggregation
 * (`checkScopeAggregation`); and a reservation of what the job asks of resources.json
 * (`ResourceManager.reserve`, which also bounds its wall time).
 *
 * @throws PolicyError E_POLICY_JOB_UNSIGNED, E_POLICY_JOB_BINDING, E_POLICY_JOB_TAMPERED, E_POLICY_JOB_SIGNER,
 *   E_POLICY_JOB_EXPIRED,
 *   E_POLICY_DENIED, E_POLICY_COMPONENT, E_POLICY_BYOC_*, E_POLICY_SCOPE, E_POLICY_SECAGG_REQUIRED,
 *   E_POLICY_FILTER_UNKNOWN, E_POLICY_FILTER_ARGS, E_POLICY_RESOURCES_EXCEEDED, E_POLICY_RESOURCES_BUSY.
 */
export function admit(req: AdmissionRequest, policy: SitePolicy, site: { readonly name?: string; readonly org: string }, registry: FilterRegistry, audit?: AuditHook): Admission {
  const def = req.definition;
  const components = [def.learner.name, ...def.task_data_filters.map((f) => f.name), ...def.task_result_filters.map((f) => f.name)];
  // Every refusal names this site and who the server claimed submitted the job (the site's own audit log).
  const claimed = req.claimed === undefined ? {} : { claimed_submitter: `${req.claimed.name} (${req.claimed.org})` };
  const hook: AuditHook | undefined = audit === undefined ? undefined : (e) => audit({ ...e, data: { ...e.data, ...(site.name === undefined ? {} : { site: site.name }), ...claimed } });
  const trust = policy.jobTrust;
  if (trust === undefined) {
    const message = `job '${req.job}': this site has no project trust to verify job signatures with (give its policy the kit's project and root: jobTrustFromKit)`;
    hook?.({ action: 'job_refused', job: req.job, msg: message, data: { code: 'E_POLICY_JOB_SIGNER' } });
    throw new PolicyError('E_POLICY_JOB_SIGNER', message);
  }
  const admitted = admitJob(
    { jobId: req.job, files: signedJobFiles(req.bundle), signature: receivedSignature(req.bundle.signature), components },
    {
      authorization: policy.authorization(),
      components: policy.components(),
      siteOrg: site.org,
      projectName: trust.project,
      verifyCertificate: trust.verifyCertificate,
      verified: VERIFIED_JOB_SIGNATURES,
      ...(hook === undefined ? {} : { audit: hook }),
      ...(req.onVerified === undefined ? {} : { onVerified: (v: VerifiedJob) => req.onVerified!({ signedAt: v.signedAt, manifest: v.manifestSha256 }) }),
    },
  );
  const signer = admitted.submitter;
  if (req.claimed !== undefined && (req.claimed.name !== signer.name || req.claimed.org !== signer.org)) {
    const message = `job '${req.job}': the server names ${JSON.stringify(req.claimed.name)} (${req.claimed.org}) as its submitter, but it is signed by ${JSON.stringify(signer.name)} (${signer.org})`;
    hook?.({ action: 'job_refused', job: req.job, user: req.claimed.name, msg: message, data: { code: 'E_POLICY_JOB_TAMPERED', signer: signer.name } });
    throw new PolicyError('E_POLICY_JOB_TAMPERED', message);
  }
  if (req.freshness !== undefined) {
    try {
      checkJobFreshness(admitted.signedAt, { ...req.freshness, job: req.job });
    } catch (e) {
      hook?.({ action: 'job_refused', job: req.job, user: signer.name, msg: e instanceof Error ? e.message : String(e), data: { code: 'E_POLICY_JOB_EXPIRED', signed_at: admitted.signedAt } });
      throw e;
    }
  }
  const privacy = policy.privacy();
  let scope: PrivacyScope | undefined;
  if (privacy !== undefined) scope = resolvePrivacyScope(privacy, def.scope);
  else if (def.scope !== undefined) throw new PolicyError('E_POLICY_SCOPE', `privacy scope ${JSON.stringify(def.scope)} is not defined at this site (it has no privacy.json)`);
  // A scope may demand that the server only ever sees masked updates.
  checkScopeAggregation(scope, { secure: def.workflow === SECURE_AGGREGATION, workflow: def.workflow });
  const reg = registry as ReadonlyMap<string, FilterFactory>;
  const jobData = parseJobFilters(def.task_data_filters, { registry: reg }, 'task_data');
  const jobResult = parseJobFilters(def.task_result_filters, { registry: reg }, 'task_result');
  // HE: decryption is the first thing done to a model that arrives and encryption the last before one
  // leaves, wherever the site's scope and the job list them: a filter after he-encrypt would work on
  // ciphertext bytes, and one before he-decrypt on an unreadable model.
  const data = composeFilterChain(scope, 'task_data', jobData);
  const result = composeFilterChain(scope, 'task_result', jobResult);
  const dataFilters = [...data.filter((f) => f.name === DECRYPT_FIRST), ...data.filter((f) => f.name !== DECRYPT_FIRST)];
  const resultFilters = [...result.filter((f) => f.name !== ENCRYPT_LAST), ...result.filter((f) => f.name === ENCRYPT_LAST)];
  const r = def.resources;
  const request = parseResourceRequest({ num_of_gpus: r.num_of_gpus, mem_per_gpu_in_GiB: r.mem_per_gpu_in_GiB, memory_gib: r.memory_MiB / 1024, ...(r.wall_time_s === undefined ? {} : { wall_time_s: r.wall_time_s }) });
  const reservation = policy.resources.reserve(req.job, request);
  return { scope, dataFilters, resultFilters, reservation, byoc: admitted.byoc, submitter: signer, manifest: admitted.manifestSha256, signedAt: admitted.signedAt };
}

/** The two filter chains of an admitted job, each filter built once for the job (@flare/policy's `createFilterChain`). */
export function buildChains(a: Admission, env: FilterEnv): { readonly data: Filter; readonly result: Filter } {
  return { data: createFilterChain(a.dataFilters, env, 'task-data'), result: createFilterChain(a.resultFilters, env, 'task-result') };
}
