import type { JsonValue } from '@flare/core';
import { authorize, resolvePrivacyScope, type AuthorizationPolicy, type SitePolicies } from '@flare/policy';
import type { Authorizer } from './server-engine.js';
import type { PrivacyScope, SitePolicy } from './site-policy.js';

/**
 * A {@link SitePolicy} backed by a site's policy files as @flare/policy loads them (`loadSitePolicies`):
 * authorization.json (FLARE semantics, this site's org), privacy.json scopes, resources.json limits and the
 * component allow-list with BYOC consent. Reads the current version of each file on every decision, so a
 * reloaded policy applies to the next deployment.
 *
 * A site without privacy.json accepts only jobs that name no scope: a job asking for a scope the site never
 * defined is refused rather than run without the filters it expected.
 */
export function sitePolicyFromFiles(policies: SitePolicies, siteOrg: string): SitePolicy {
  const limits = () => policies.resources.current;
  return {
    authorize: ({ user, right, submitter }) => authorize(policies.authorization.current, { right, user, submitter: submitter ?? user, siteOrg }).allowed,
    scope: (name): PrivacyScope | undefined => {
      const privacy = policies.privacy.current;
      if (privacy === undefined) return name === undefined ? { name: '(none)', taskDataFilters: [], taskResultFilters: [] } : undefined;
      let s;
      try {
        s = resolvePrivacyScope(privacy, name);
      } catch {
        return undefined;
      }
      const spec = (f: (typeof s.taskDataFilters)[number]) => ({ name: f.name, args: (f.args ?? {}) as Record<string, JsonValue> });
      return { name: s.name, taskDataFilters: s.taskDataFilters.map(spec), taskResultFilters: s.taskResultFilters.map(spec) };
    },
    admitsComponent: (name) => policies.components.current.allow.has(name),
    get byocConsent() {
      return policies.components.current.byoc;
    },
    checkResources: (needs, running) => {
      const l = limits();
      if (running >= l.maxConcurrentJobs) return `this site runs at most ${l.maxConcurrentJobs} jobs at once`;
      if (needs.num_of_gpus > l.gpus) return `the job needs ${needs.num_of_gpus} GPUs, this site has ${l.gpus}`;
      if (needs.num_of_gpus > 0 && needs.mem_per_gpu_in_GiB > l.memPerGpuGiB) return `the job needs ${needs.mem_per_gpu_in_GiB} GiB per GPU, this site has ${l.memPerGpuGiB}`;
      if (needs.memory_MiB / 1024 > l.memoryGiB) return `the job needs ${needs.memory_MiB} MiB, this site allows ${l.memoryGiB} GiB`;
      return undefined;
    },
    get report() {
      const l = limits();
      return { num_of_gpus: l.gpus, mem_per_gpu_in_GiB: l.memPerGpuGiB, max_jobs: l.maxConcurrentJobs };
    },
  };
}

/**
 * An {@link Authorizer} for the server's admin commands from an authorization.json policy (the server's own
 * `local/authorization.json`), evaluated for the server's org. `policy` is read on every call, so a reloaded
 * file applies at once.
 */
export function authorizerFromPolicy(policy: () => AuthorizationPolicy, serverOrg: string): Authorizer {
  return ({ user, right, submitter }) => authorize(policy(), { right, user, siteOrg: serverOrg, ...(submitter === undefined ? {} : { submitter }) }).allowed;
}
