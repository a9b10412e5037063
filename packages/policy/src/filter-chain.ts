import { PolicyError, type Filter, type FilterContext, type FilterEnv, type FLModel } from '@flare/core';
import { z } from 'zod';
import { policyJson } from './json-input.js';
import { filterSpecSchema, resolveFilterSpecs, type FilterDirection, type FilterRegistryOptions, type FilterSpec, type PrivacyScope } from './privacy-policy.js';

const jobFilters = z.array(filterSpecSchema).max(64);

/**
 * Parses a job's own filter list for one direction (same entry format as privacy.json), resolving each name in
 * the registry and validating its args with the filter's schema.
 *
 * @throws PolicyError E_POLICY_PRIVACY_PARSE (shape), E_POLICY_FILTER_UNKNOWN or E_POLICY_FILTER_ARGS.
 */
export function parseJobFilters(json: unknown, { registry }: FilterRegistryOptions, direction: FilterDirection = 'task_result'): FilterSpec[] {
  const parsed = jobFilters.safeParse(policyJson(json, 'E_POLICY_PRIVACY_PARSE', 'job filters'));
  if (!parsed.success) {
    throw new PolicyError('E_POLICY_PRIVACY_PARSE', `job ${direction}_filters: ${parsed.error.issues.map((i) => `${i.path.join('.') || '(top)'}: ${i.message}`).join('; ')}`);
  }
  return resolveFilterSpecs(parsed.data, registry, 'job', `job ${direction}_filters`);
}

/**
 * The filters to run for one direction: the site scope's filters first, then the job's. The job can add
 * filters but never remove or reorder the site's (FLARE's rule). With no scope (a site without privacy.json)
 * only the job's filters run.
 */
export function composeFilterChain(scope: PrivacyScope | undefined, direction: FilterDirection, job: readonly FilterSpec[] = []): readonly FilterSpec[] {
  const site = scope === undefined ? [] : direction === 'task_data' ? scope.taskDataFilters : scope.taskResultFilters;
  for (const spec of job) {
    if (spec.origin !== 'job') throw new TypeError('job filters must come from parseJobFilters (origin "job")');
  }
  return Object.freeze([...site, ...job]);
}

/**
 * Builds one {@link Filter} that runs `specs` in order, creating each filter once with its factory. Each
 * applied filter is reported through `ctx.audit` as a `filter_applied` event (FLARE logs one audit event per
 * filter) naming the filter, its origin and its position.
 *
 * @example
 * ```ts
 * const chain = createFilterChain(composeFilterChain(scope, 'task_result', jobSpecs), env);
 * const filtered = await chain.apply(update, ctx);
 * ```
 */
export function createFilterChain(specs: readonly FilterSpec[], env: FilterEnv, name = 'filter-chain'): Filter {
  const filters = specs.map((spec) => ({ spec, filter: spec.factory.create(spec.args, env) }));
  return {
    name,
    async apply(model: FLModel, ctx: FilterContext): Promise<FLModel> {
      let current = model;
      for (let i = 0; i < filters.length; i++) {
        const { spec, filter } = filters[i]!;
        ctx.signal?.throwIfAborted();
        current = await filter.apply(current, ctx);
        ctx.audit?.({
          action: 'filter_applied',
          msg: `applied ${spec.origin} filter ${spec.name} (${i + 1} of ${filters.length})`,
          job: ctx.job,
          data: { filter: spec.name, origin: spec.origin, position: i, round: ctx.round, ...(ctx.task === undefined ? {} : { task: ctx.task }) },
        });
      }
      return current;
    },
  };
}
