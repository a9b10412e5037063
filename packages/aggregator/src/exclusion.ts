/**
 * Tensors to leave out of aggregation, FLARE's `exclude_vars`: exact names, or regular expressions tested
 * against each name. Excluded tensors are ignored in every contribution and absent from the result.
 */
export type TensorExclusion = ReadonlyArray<string | RegExp>;

/** A predicate over tensor names (internal). Regular expressions are copied without the g and y flags, whose lastIndex state would make `test` alternate. */
export function excluder(exclude: TensorExclusion | undefined): (name: string) => boolean {
  if (exclude === undefined || exclude.length === 0) return () => false;
  const names = new Set<string>();
  const patterns: RegExp[] = [];
  for (const e of exclude) {
    if (typeof e === 'string') names.add(e);
    else if (e instanceof RegExp) patterns.push(new RegExp(e.source, e.flags.replace(/[gy]/g, '')));
    else throw new TypeError('"exclude" expected tensor names (strings) or RegExp objects');
  }
  return (name) => names.has(name) || patterns.some((p) => p.test(name));
}
