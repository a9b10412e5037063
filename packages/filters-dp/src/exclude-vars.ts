import { type Filter, type FilterContext, type FLModel, type Tensor } from '@flare/core';

/** Options of {@link excludeVars}: exactly one of `names` and `pattern`. */
export type ExcludeVarsOptions =
  | { readonly names: readonly string[]; readonly pattern?: undefined; readonly kinds?: ReadonlyArray<FLModel['kind']> }
  | { readonly pattern: string | RegExp; readonly names?: undefined; readonly kinds?: ReadonlyArray<FLModel['kind']> };

/** Longest regular expression accepted: patterns come from policy files and job definitions. */
export const MAX_EXCLUDE_PATTERN = 1024;

/**
 * FLARE's ExcludeVars: removes the tensors named in `names`, or those whose name the regular expression `pattern`
 * matches anywhere (Python's `re.search`; JavaScript syntax, compiled with the `u` flag so malformed escapes are
 * refused). The remaining tensors are passed on as they are (shared with the input, not copied, never mutated).
 *
 * NOT A PRIVACY GUARANTEE by itself: it withholds whole tensors (for example an embedding of rare tokens, or
 * integer batch-norm counters that DP filters cannot noise); what is sent is unchanged. Differences from FLARE:
 * an empty configuration is refused instead of silently filtering nothing.
 *
 * @throws RangeError for an empty list, an empty, too long or invalid pattern.
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
    const source = typeof options.pattern === 'string' ? options.pattern : options.pattern.source;
    if (source.length === 0 || source.length > MAX_EXCLUDE_PATTERN) {
      throw new RangeError(`"pattern" expected a regular expression of 1 to ${MAX_EXCLUDE_PATTERN} characters`);
    }
    // A fresh RegExp without the g and y flags: RegExp.test is stateful with them.
    const flags = typeof options.pattern === 'string' ? 'u' : options.pattern.flags.replace(/[gy]/g, '');
    let re: RegExp;
    try {
      re = new RegExp(source, flags);
    } catch (e) {
      throw new RangeError(`"pattern" is not a valid regular expression: ${(e as Error).message}`);
    }
    match = (name) => re.test(name);
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
