import type { FilterEnv, FilterFactory, JsonValue, Learner, Logger } from '@flare/core';
import type { AuthorizationPolicy, ComponentPolicy, PrivacyPolicy, ResourceManager, SiteAuthenticator, SitePolicies } from '@flare/policy';
import type { z } from 'zod';
import type { JobDefinition } from '../protocol/job-definition.js';
import type { JobTrust } from '../protocol/job-trust.js';

/**
 * Everything a site decides with before a job runs there, as @flare/policy reads it from the site's own
 * `local/` folder: authorization.json, privacy.json scopes, the component allow-list with BYOC consent, and
 * the resource manager that reserves resources.json's limits per job. Each getter returns the current
 * version, so a reloaded file applies to the next deployment.
 */
export interface SitePolicy {
  readonly authorization: () => AuthorizationPolicy;
  /** undefined when the site has no privacy.json (then only jobs naming no scope are admitted). */
  readonly privacy: () => PrivacyPolicy | undefined;
  readonly components: () => ComponentPolicy;
  readonly resources: ResourceManager;
  /**
   * How this site checks the signature every job and every abort must carry (its project, the project root and
   * CRL: `jobTrustFromKit`). Without it the site refuses every job (E_POLICY_JOB_SIGNER): it cannot tell who
   * submitted them.
   */
  readonly jobTrust?: JobTrust;
  /** @deprecated Unused: job signatures are checked with {@link SitePolicy.jobTrust}. */
  readonly rootCa?: string;
  /**
   * The site's own login for submitters (local/authentication.json): every job must carry a valid token for it.
   * A getter follows a file that changes (`openSiteAuthentication(...).current`); undefined means no login.
   */
  readonly authenticator?: SiteAuthenticator | (() => SiteAuthenticator | undefined);
}

/**
 * A {@link SitePolicy} on the files @flare/policy's `loadSitePolicies` keeps loaded (and reloads), checking job
 * signatures with `jobTrust` (`jobTrustFromKit({ project: kit.project, rootCaPem: kit.rootCaPem, crl })`), and
 * the site's own login with `authenticator` when it has one.
 */
export function sitePolicyFromFiles(policies: SitePolicies, trust: { readonly jobTrust: JobTrust; readonly authenticator?: SitePolicy['authenticator'] }): SitePolicy {
  return {
    authorization: () => policies.authorization.current,
    privacy: () => policies.privacy.current,
    components: () => policies.components.current,
    resources: policies.resourceManager,
    jobTrust: trust.jobTrust,
    ...(trust.authenticator === undefined ? {} : { authenticator: trust.authenticator }),
  };
}

/** What the site reports to the server when it registers: what its resources.json gives jobs. */
export function resourceReport(policy: SitePolicy): Record<string, number> {
  const l = policy.resources.limits;
  const finite = (x: number): number => (Number.isFinite(x) ? x : -1);
  return { num_of_gpus: l.gpus, mem_per_gpu_in_GiB: l.memPerGpuGiB, max_jobs: l.maxConcurrentJobs, memory_gib: finite(l.memoryGiB) };
}

/**
 * What a site gives the learner it builds for a job: where it runs, the job, a folder for the job's files
 * (created before the learner is built, removed after the job unless the site keeps it), the job's own
 * verified code when the site admitted it, and the job's meta.
 */
export interface LearnerEnv extends FilterEnv {
  /** This site's name. */
  readonly site: string;
  /** The site's workspace. */
  readonly workspace: string;
  /** The job id. */
  readonly job: string;
  /** A folder for this job only, inside the site's workspace. */
  readonly jobWorkspace: string;
  /** Present when the job brought its own code (BYOC), signed and admitted by this site: its files are here. */
  readonly customDir?: string;
  readonly logger?: Logger;
  /** The job's definition (meta.json), as this site validated it. */
  readonly definition?: JobDefinition;
}

/** A learner registered by name at a site (e.g. `tfjs-learner`); `args` validates the job's arguments. */
export interface LearnerFactory<A = Record<string, JsonValue>> {
  readonly name: string;
  readonly args: z.ZodType<A>;
  create(args: A, env: LearnerEnv): Learner | Promise<Learner>;
}

/** Filters a site can build by registered name (privacy.json and jobs name them). */
export type FilterRegistry = ReadonlyMap<string, FilterFactory<unknown>>;
