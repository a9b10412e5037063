import { NAME_PATTERN_LIMITS, toNamePattern, type Filter, type FilterContext, type FLModel, type NamePattern, type Tensor } from '@flare/core';

/** Options of {@link excludeVars}: exactly one of `names` and `pattern`. */
export type ExcludeVarsOptions =
  | { readonly names: readonly string[]; readonly pattern?: undefined; readonly kinds?: ReadonlyArray<FLModel['kind']> }
  | { readonly pattern: string | RegExp | NamePattern; readonly names?: undefined; readonly kinds?: ReadonlyArray<FLModel['kind']> };

/** Longest pattern accepted: patterns come from policy files and job definitions. */
export const MAX_EXCLUDE_PATTERN = NAME_PATTERN_LIMITS.maxSource;

/**
 * FLARE's ExcludeVars: removes the tensors named in `names`, or those whose name `pattern` matches anywhere
 * (Python's `re.search`). Patterns use @flare/core's tensor-name syntax (`compileNamePattern`: JavaScript
 * regular expressions without backreferences and lookaround), matched in time linear in the name whatever the
 * pattern, so a pattern from a job cannot stall the site. The remaining tensors are passed on as they are
 * (shared with the input, not copied, never mutated).
 *
 * NOT A PRIVACY GUARANTEE by itself: it withholds whole tensors (for example an embedding of rare tokens, or
 * integer batch-norm counters that DP filters cannot noise); what is sent is unchanged. Differences from FLARE:
 * an empty configuration is refused instead of silently filtering nothing.
 *
 * @throws ModelError E_MODEL_NAME_PATTERN for a pattern outside the supported syntax; RangeError for an empty
 *   list of names or unsupported RegExp flags.
 * @example
 * ```ts
 * const filter = excludeVars({ pattern: '(^|\\.)num_batches_tracked$' });
 * ```
 */
export function excludeVars(options: ExcludeVarsOptions): Filter {
  let match: (name: string) => boolean;
  if (options.names !== undefined) {
    if (options.pattern !== undefined) throw new RangeError('give exactly one of "names" and "pattern"');
    if (!Array.isArray(options.names) || options.names.length === 0 || options.names.some((n) => typeof n !== 'string')) {
      throw new RangeError('"names" expected a non-empty list of tensor names');
    }
    const set = new Set(options.names);
    match = (name) => set.has(name);
  } else if (options.pattern !== undefined) {
    const pattern = toNamePattern(options.pattern);
    match = (name) => pattern.test(name);
  } else {
    throw new RangeError('give exactly one of "names" and "pattern"');
  }
  const kinds = new Set(options.kinds ?? ['diff', 'full']);

  function apply(m: FLModel, ctx: FilterContext): FLModel {
    if (!kinds.has(m.kind)) return m;
    const params = new Map<string, Tensor>();
    const excluded: string[] = [];
    for (const [name, t] of m.params) {
      if (match(name)) excluded.push(name);
      else params.set(name, t);
    }
    ctx.audit?.({
      action: 'vars_excluded',
      job: ctx.job,
      msg: `exclude-vars: removed ${excluded.length} of ${m.params.size} tensors`,
      data: { filter: 'exclude-vars', round: ctx.round, excluded: excluded.length, remaining: params.size },
    });
    const result: FLModel = { params, kind: m.kind, meta: structuredClone(m.meta) };
    if (m.metrics !== undefined) result.metrics = { ...m.metrics };
    return result;
  }

  return Object.freeze({ name: 'exclude-vars', apply });
}
