import { PolicyError, type FilterFactory, type JsonValue } from '@flare/core';
import { z } from 'zod';
import { policyJson } from './json-input.js';

/** Filters a site or a job may name, by registered name (the runtime registers @flare/filters-dp's and -he's). */
export type FilterRegistry = ReadonlyMap<string, FilterFactory>;

/** The two places filters run, in FLARE's terms: data coming to the site, results leaving it. */
export type FilterDirection = 'task_data' | 'task_result';

/** A validated reference to a registered filter: its factory and its arguments, already parsed by the factory's schema. */
export interface FilterSpec {
  /** The registered name as written (FLARE's `name` or `path`). */
  readonly name: string;
  /** FLARE's optional component id. */
  readonly id?: string;
  readonly factory: FilterFactory;
  /** The arguments as the factory's zod schema returned them (defaults applied). */
  readonly args: unknown;
  /** Who asked for it: the site's privacy policy or the job. */
  readonly origin: 'site' | 'job';
}

/** One privacy scope of a site: the filters that site applies to every job in this scope. */
export interface PrivacyScope {
  readonly name: string;
  /** FLARE's free-form scope properties (e.g. dataset locations), passed to the job as is. */
  readonly properties: Readonly<Record<string, JsonValue>>;
  readonly taskDataFilters: readonly FilterSpec[];
  readonly taskResultFilters: readonly FilterSpec[];
  /**
   * Whether jobs in this scope must aggregate with masking secure aggregation (`required`: the server never sees
   * one site's update; any other workflow is refused with E_POLICY_SECAGG_REQUIRED), or may (`allowed`, the
   * default). See {@link checkScopeAggregation}.
   */
  readonly secureAggregation?: 'allowed' | 'required';
  /**
   * Whether this site's own local model may leave it (e.g. for the other sites to evaluate in a cross-site
   * evaluation): true by default; false refuses with E_POLICY_LOCAL_MODEL. See {@link checkLocalModelRelease}.
   */
  readonly shareLocalModel?: boolean;
}

/** A parsed, validated privacy.json. */
export interface PrivacyPolicy {
  /** Scopes by name, in file order. */
  readonly scopes: ReadonlyMap<string, PrivacyScope>;
  /** The scope for jobs that name none; undefined when the file sets no default_scope. */
  readonly defaultScope: string | undefined;
}

/** Options of {@link parsePrivacyPolicy} and {@link parseFilterSpecs}. */
export interface FilterRegistryOptions {
  /** Every filter a policy may name, by registered name. */
  readonly registry: FilterRegistry;
}

const MAX_FILTERS = 64;
const name = z.string().min(1).max(256);

/** A filter entry: FLARE writes `{"name": ..., "args": ...}` in its sample and `{"path": ...}` in examples; both name a registered filter here. */
export const filterSpecSchema = z
  .strictObject({
    name: name.optional(),
    path: name.optional(),
    id: name.optional(),
    args: z.record(z.string(), z.unknown()).optional(),
  })
  .refine((f) => (f.name === undefined) !== (f.path === undefined), { message: 'give exactly one of "name" and "path"' });

const filterList = z.array(filterSpecSchema).max(MAX_FILTERS);

const scopeSchema = z.strictObject({
  name: z.string().min(1).max(128),
  properties: z.record(z.string(), z.json()).optional(),
  task_data_filters: filterList.optional(),
  task_result_filters: filterList.optional(),
  /** `required`: only secure aggregation (masked updates) in this scope; `allowed` (default). */
  secure_aggregation: z.enum(['allowed', 'required']).optional(),
  /** false: the site's local model never leaves it (cross-site evaluation gets a refusal); default true. */
  share_local_model: z.boolean().optional(),
});

const privacySchema = z.strictObject({
  format_version: z.union([z.literal('1.0'), z.literal(1)]).optional(),
  scopes: z.array(scopeSchema).min(1).max(256),
  default_scope: z.string().min(1).max(128).optional(),
});

const issues = (error: z.ZodError) => error.issues.map((i) => `${i.path.join('.') || '(top)'}: ${i.message}`).join('; ');

/**
 * Resolves raw filter entries against the registry and validates each one's arguments with that filter's own
 * zod schema, so a misspelt filter or argument fails when the policy or the job is loaded, not mid-job.
 * Messages name where the entry is (scope, direction, index) and the issue's path, never argument values.
 *
 * @throws PolicyError E_POLICY_FILTER_UNKNOWN (with the registered names) or E_POLICY_FILTER_ARGS.
 */
export function resolveFilterSpecs(
  entries: ReadonlyArray<z.infer<typeof filterSpecSchema>>,
  registry: FilterRegistry,
  origin: 'site' | 'job',
  where: string,
): FilterSpec[] {
  return entries.map((entry, i) => {
    const ref = (entry.name ?? entry.path)!;
    const factory = registry.get(ref);
    if (factory === undefined) {
      const known = [...registry.keys()].sort().join(', ') || '(none)';
      throw new PolicyError('E_POLICY_FILTER_UNKNOWN', `${where}[${i}]: no filter named ${JSON.stringify(ref)} is registered (registered: ${known})`);
    }
    const parsed = factory.args.safeParse(entry.args ?? {});
    if (!parsed.success) {
      throw new PolicyError('E_POLICY_FILTER_ARGS', `${where}[${i}] ${JSON.stringify(ref)}: invalid args: ${issues(parsed.error)}`);
    }
    return Object.freeze({ name: ref, ...(entry.id === undefined ? {} : { id: entry.id }), factory, args: parsed.data, origin });
  });
}

/**
 * Parses and validates a privacy.json (FLARE format: `scopes` with `task_data_filters` and
 * `task_result_filters`, and `default_scope`), given as JSON text, UTF-8 bytes or a parsed value. Every filter
 * must be registered and its args must pass its schema; scope names are unique; `default_scope`, when set,
 * must name a scope.
 *
 * @throws PolicyError E_POLICY_PRIVACY_PARSE, E_POLICY_FILTER_UNKNOWN or E_POLICY_FILTER_ARGS.
 * @example
 * ```ts
 * const privacy = parsePrivacyPolicy(readFileSync('local/privacy.json', 'utf8'), { registry });
 * const scope = resolvePrivacyScope(privacy, jobMeta.scope);
 * ```
 */
export function parsePrivacyPolicy(json: unknown, { registry }: FilterRegistryOptions): PrivacyPolicy {
  if (!(registry instanceof Map)) throw new TypeError('registry must be a Map of registered filter factories');
  const value = policyJson(json, 'E_POLICY_PRIVACY_PARSE', 'privacy policy');
  const parsed = privacySchema.safeParse(value);
  if (!parsed.success) throw new PolicyError('E_POLICY_PRIVACY_PARSE', `privacy policy: ${issues(parsed.error)}`);
  const scopes = new Map<string, PrivacyScope>();
  for (const s of parsed.data.scopes) {
    if (scopes.has(s.name)) throw new PolicyError('E_POLICY_PRIVACY_PARSE', `privacy policy: scope ${JSON.stringify(s.name)} is defined twice`);
    const where = `scope ${JSON.stringify(s.name)}`;
    scopes.set(
      s.name,
      Object.freeze({
        name: s.name,
        properties: Object.freeze({ ...(s.properties ?? {}) }) as Readonly<Record<string, JsonValue>>,
        taskDataFilters: Object.freeze(resolveFilterSpecs(s.task_data_filters ?? [], registry, 'site', `${where} task_data_filters`)),
        taskResultFilters: Object.freeze(resolveFilterSpecs(s.task_result_filters ?? [], registry, 'site', `${where} task_result_filters`)),
        secureAggregation: s.secure_aggregation ?? 'allowed',
        shareLocalModel: s.share_local_model ?? true,
      }),
    );
  }
  const defaultScope = parsed.data.default_scope;
  if (defaultScope !== undefined && !scopes.has(defaultScope)) {
    throw new PolicyError('E_POLICY_PRIVACY_PARSE', `privacy policy: default_scope ${JSON.stringify(defaultScope)} is not one of the scopes (${[...scopes.keys()].join(', ')})`);
  }
  return Object.freeze({ scopes, defaultScope });
}

/**
 * The scope a job runs in at this site: the one it names, or the site's default_scope when it names none
 * (FLARE: an empty scope means the default).
 *
 * @throws PolicyError E_POLICY_SCOPE when the job names a scope the site does not define, or names none and the site has no default.
 */
export function resolvePrivacyScope(policy: PrivacyPolicy, scope?: string | null): PrivacyScope {
  const wanted = scope === undefined || scope === null || scope === '' ? policy.defaultScope : scope;
  const known = [...policy.scopes.keys()].join(', ');
  if (wanted === undefined) throw new PolicyError('E_POLICY_SCOPE', `the job names no privacy scope and this site has no default_scope (scopes: ${known})`);
  const found = policy.scopes.get(wanted);
  if (found === undefined) throw new PolicyError('E_POLICY_SCOPE', `privacy scope ${JSON.stringify(wanted)} is not defined at this site (scopes: ${known})`);
  return found;
}

/**
 * Refuses a job whose aggregation the scope does not allow: a scope with `secure_aggregation: "required"` takes
 * only jobs whose updates the server sees masked (`secure` true). A job without a scope (a site without
 * privacy.json) is not restricted.
 *
 * @throws PolicyError E_POLICY_SECAGG_REQUIRED naming the scope and the job's workflow.
 * @example
 * ```ts
 * checkScopeAggregation(scope, { secure: definition.workflow === 'secure_aggregation', workflow: definition.workflow });
 * ```
 */
export function checkScopeAggregation(scope: PrivacyScope | undefined, job: { readonly secure: boolean; readonly workflow: string }): void {
  if (scope?.secureAggregation === 'required' && !job.secure) {
    throw new PolicyError('E_POLICY_SECAGG_REQUIRED', `privacy scope ${JSON.stringify(scope.name)} requires secure aggregation; workflow ${JSON.stringify(job.workflow.slice(0, 64))} would show the server single updates`);
  }
}

/**
 * Refuses to let the site's own local model leave it when the scope says `share_local_model: false`.
 *
 * @throws PolicyError E_POLICY_LOCAL_MODEL naming the scope.
 */
export function checkLocalModelRelease(scope: PrivacyScope | undefined): void {
  if (scope?.shareLocalModel === false) {
    throw new PolicyError('E_POLICY_LOCAL_MODEL', `privacy scope ${JSON.stringify(scope.name)} keeps this site's local model at the site (share_local_model: false)`);
  }
}
