import { toNamePattern, type NamePattern } from '@flare/core';

/**
 * Tensors to leave out of aggregation, FLARE's `exclude_vars`: exact names, or patterns tested against each
 * name (a RegExp, a pattern string from a job compiled by core's `compileNamePattern`, or a compiled
 * pattern). Excluded tensors are ignored in every contribution and absent from the result.
 */
export type TensorExclusion = ReadonlyArray<string | RegExp | NamePattern>;

/**
 * A predicate over tensor names (internal). Every pattern, RegExp objects included, is matched by core's
 * linear-time matcher (`toNamePattern`): tensor names come from sites, patterns may come from jobs, and a
 * backtracking engine could be stalled by the pair. RegExp flags other than g, y and u are refused.
 */
export function excluder(exclude: TensorExclusion | undefined): (name: string) => boolean {
  if (exclude === undefined || exclude.length === 0) return () => false;
  const names = new Set<string>();
  const patterns: NamePattern[] = [];
  for (const e of exclude) {
    if (typeof e === 'string') names.add(e);
    else if (e instanceof RegExp || (typeof e === 'object' && e !== null && typeof (e as NamePattern).test === 'function')) patterns.push(toNamePattern(e));
    else throw new TypeError('"exclude" expected tensor names (strings), RegExp objects or compiled name patterns');
  }
  return (name) => names.has(name) || patterns.some((p) => p.test(name));
}
