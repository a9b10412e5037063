import type { FilterFactory } from '@flare/core';
import { ResourceManager, parseAuthorizationPolicy, parseComponentPolicy, parsePrivacyPolicy, parseResourcePolicy, type ComponentPolicy, type PrivacyPolicy } from '@flare/policy';
import type { JobDefinition } from '../protocol/job-definition.js';
import type { FilterRegistry, SitePolicy } from '../site/policy.js';

/** The role the simulator's admin submits with; every virtual site grants it everything. */
export const SIMULATOR_ROLE = 'project_admin';

/** What a virtual site decides with, besides the defaults {@link simulatedSitePolicy} fills in. */
export interface SimulatedPolicyFiles {
  /** A site's privacy.json (parsed or raw); default: one scope, named as the job asks (or `public`), without filters. */
  readonly privacy?: unknown;
  /** A site's components.json without its `learners` section (parsed or raw); default: the job's own components. */
  readonly components?: unknown;
  /** A site's resources.json (raw); default: @flare/policy's defaults. */
  readonly resources?: unknown;
}

/**
 * The policy of one virtual site: the simulator's admin may do everything (there is no PKI to tell admins
 * apart), and the rest is a real site's policy, parsed by @flare/policy from the files given, so privacy
 * scopes, filters and the component allow-list act exactly as at a deployed site. Without files the site admits
 * the job's own learner and filters under one filterless scope.
 *
 * @throws PolicyError E_POLICY_*_PARSE naming the file's field when a given file is invalid.
 */
export function simulatedSitePolicy(definition: JobDefinition, filters: FilterRegistry, files: SimulatedPolicyFiles = {}): SitePolicy {
  const registry = filters as ReadonlyMap<string, FilterFactory>;
  const authorization = parseAuthorizationPolicy({ format_version: '1.0', permissions: { [SIMULATOR_ROLE]: 'any' } });
  const scope = definition.scope ?? 'public';
  const privacy: PrivacyPolicy = parsePrivacyPolicy(files.privacy ?? { scopes: [{ name: scope }], default_scope: scope }, { registry });
  const own = [definition.learner.name, ...definition.task_data_filters.map((f) => f.name), ...definition.task_result_filters.map((f) => f.name)];
  const components: ComponentPolicy = parseComponentPolicy(files.components ?? { format_version: '1.0', allow: [...new Set(own)], byoc: false });
  const resources = new ResourceManager(parseResourcePolicy(files.resources ?? {}));
  // No jobTrust here: simulateJob adds its own throwaway project's (without it a site refuses every job).
  return { authorization: () => authorization, privacy: () => privacy, components: () => components, resources };
}

